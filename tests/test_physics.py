"""Physics the decks must show; each assertion could fail if a deck were wrong."""

import numpy as np
import pytest

from cimlut.characterize import WorkerPool, run
from cimlut.circuits import CELLS


def tb(cell, name):
    return next(t for t in CELLS[cell].testbenches if t.name == name)


@pytest.fixture(scope="module")
def pool():
    with WorkerPool(2) as p:
        yield p


def test_rram_loop_is_pinched_and_shows_set_and_reset():
    r = run(tb("rram_1t1r", "iv").deck())
    v, i, gap = r["v(bl)"], r["v(icell)"], r["v(x1.xr.gap)"]
    peak = np.max(np.abs(i))
    near0 = np.abs(v) < 0.01
    assert near0.sum() > 10
    assert np.max(np.abs(i[near0])) < 0.01 * peak          # pinched at the origin
    assert abs(r.measures["i_v0"]) < 1e-6 * peak
    m = r.measures
    assert m["gap_set"] < 0.3 < 1.5 < m["gap_reset"]        # SET shrinks, RESET regrows
    assert m["iread_dn"] > 10 * m["iread_up"] > 0           # LRS after SET at +vread
    assert m["imin"] < -0.1 * peak                          # RESET branch carries current
    half = len(v) // 2
    assert np.min(gap[:half]) < 0.3 and gap[-1] > 1.5


def test_rram_read_is_odd_and_monotonic():
    r = run(tb("rram_1t1r", "read").deck())
    v, i = r.scale.values, r["v(icell)"]
    assert np.all(np.diff(i) > 0)
    assert np.interp(0.0, v, i) == pytest.approx(0.0, abs=1e-12)
    assert np.interp(-0.1, v, i) == pytest.approx(-np.interp(0.1, v, i), rel=0.05)


def test_gaincell_hold_decays_monotonically():
    r = run(tb("gaincell_2t", "hold").deck())
    t, v = r.scale.values, r["v(sn)"]
    after = t > 1e-6
    assert np.all(np.diff(v[after]) <= 1e-9)
    m = r.measures
    assert m["v10u"] > m["v100u"] > m["v1m"] > m["v2m"] > 0
    # the device's own leak, not ngspice's gmin: with the default 1e-12 S across the
    # junctions sn fell from 0.67 V to 0.16 V in 2 ms; the devices alone leave ~0.64 V
    assert m["v2m"] > 0.5


def test_gaincell_hold_decays_faster_when_hot():
    cold = run(tb("gaincell_2t", "hold").deck()).measures["v1m"]
    hot = run(tb("gaincell_2t", "hold").deck(temp=85)).measures["v1m"]
    assert hot < cold


def test_gaincell_write_transfer_is_monotonic(pool):
    t = tb("gaincell_2t", "write")
    res = pool.map([t.deck(params={"vwrite": v}) for v in (0.0, 0.3, 0.6, 0.9)])
    stored = [r.measures["vstored"] for r in res]
    assert np.all(np.diff(stored) > 0.1)
    assert stored[-1] < 0.9                                   # the pass gate loses some


def test_gaincell_read_charge_grows_with_stored_voltage_and_pulse_width(pool):
    t = tb("gaincell_2t", "read")
    grid = [(v, w) for v in (0.45, 0.6, 0.75, 0.9) for w in (5e-9, 15e-9)]
    res = pool.map([t.deck(params={"vstore": v, "tpw": w}) for v, w in grid])
    q = {k: r.measures["qread"] for k, r in zip(grid, res)}
    for w in (5e-9, 15e-9):
        series = [q[(v, w)] for v in (0.45, 0.6, 0.75, 0.9)]
        assert np.all(np.diff(series) > 0)
    for v in (0.6, 0.75, 0.9):
        assert q[(v, 15e-9)] / q[(v, 5e-9)] == pytest.approx(3.0, rel=0.05)


def test_pulse_width_is_linear_in_charge_and_saturates_at_tmax(pool):
    t = tb("charge_to_pulse", "transfer")
    tmax = next(p.default for p in t.params if p.name == "tmax")
    qs = np.array([10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 120, 140]) * 1e-15
    sat = np.array([160, 180, 200]) * 1e-15        # 10 uA x 15 ns = 150 fC saturates
    res = pool.map([t.deck(params={"qin": q}) for q in np.concatenate([qs, sat])])
    w = np.array([r.measures["tpulse"] for r in res])
    lin, top = w[: len(qs)], w[len(qs):]
    assert np.all(lin < 0.95 * tmax) and np.all(np.diff(lin) > 0)
    fit = np.polyfit(qs, lin, 1)
    inl = np.max(np.abs(lin - np.polyval(fit, qs))) / tmax
    assert inl < 0.01, f"INL {inl:.3%} of full scale"
    assert np.all(np.abs(top - tmax) < 0.01 * tmax)
    assert 1 / fit[0] == pytest.approx(10e-6, rel=0.01)      # the sink's documented current
    zero = run(t.deck(params={"qin": 0.0})).measures["tpulse"]
    assert zero == 0.0                                      # no pulse: 0, not a failed .meas
