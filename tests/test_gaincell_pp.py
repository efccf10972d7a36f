"""The push-pull gain cell (gaincell_pp): the physics its decks must show, its goldens'
sensitivity, its shipped tables against the 2T baseline, and cells chosen by name in the
simulator. Every bound is a measurement (tt, 27 C, this ngspice) with a margin, stated beside
it; none could pass for a cell that does not multiply."""

import shutil

import h5py
import numpy as np
import pytest

from cimlut.characterize import WorkerPool, golden, run
from cimlut.circuits import CELLS
from cimlut.models import HardwareConfig
from cimlut.models.gaincell import CellTablesError, GainCellDevice, get_arrays
from cimlut.paths import data_dir

PP = CELLS["gaincell_pp"]
TB = {t.name: t for t in PP.testbenches}
LV = PP.levels


@pytest.fixture(scope="module")
def pool():
    with WorkerPool(2) as p:
        yield p


@pytest.fixture(scope="module")
def mid_stored():
    """What writing the mid-level stores (feed-through moves it below vmid)."""
    return run(TB["write"].deck(params={"vwrite": LV.vmid})).measures["vstored"]


def _inl(x, y) -> float:
    """Max deviation from the least-squares line, as a fraction of the span of y."""
    fit = np.polyval(np.polyfit(x, y, 1), x)
    return float(np.max(np.abs(y - fit)) / (y.max() - y.min()))


# ------------------------------------------------------------------ decks
def test_read_charge_is_monotonic_signed_odd_and_linear(pool, mid_stored):
    """15 ns read over +/-0.45 V about the stored mid-level (0.877 V), 75 mV steps. Measured:
    Q(mid) 0.01% of the span, oddness |Q(m+d) + Q(m-d)| <= 7.8% of the span (the pull-down
    side is stronger at the top), INL 3.0% (+/-0.45 V) and 0.89% (+/-0.225 V)."""
    d = np.arange(-6, 7) * 0.075
    v = mid_stored + d
    res = pool.map([TB["read"].deck(params={"vstore": float(x), "tpw": 15e-9}) for x in v])
    q = np.array([r.measures["qread"] for r in res])
    span = q[-1] - q[0]
    assert np.all(np.diff(q) > 0)                          # monotonic in the stored voltage
    assert q[0] < 0 < q[-1]                                # signed: no reference column needed
    assert abs(q[6]) < 0.01 * span                         # the mid-level reads ~0
    odd = np.abs(q[:6] + q[::-1][:6]) / span
    assert odd.max() < 0.10, f"odd within {odd.max():.2%} of the span"
    assert _inl(v, q) < 0.04, f"INL {_inl(v, q):.2%} over +/-0.45 V"
    mid = np.abs(d) <= 0.225 + 1e-9
    assert _inl(v[mid], q[mid]) < 0.015, f"INL {_inl(v[mid], q[mid]):.2%} over +/-0.225 V"


def test_read_charge_is_proportional_to_pulse_width(pool, mid_stored):
    """Q(15 ns) / Q(5 ns) measured 2.98 and 2.99 at mid -/+ 0.3 V (edges add a little)."""
    grid = [(mid_stored + s, w) for s in (-0.3, 0.3) for w in (5e-9, 15e-9)]
    q = [r.measures["qread"] for r in
         pool.map([TB["read"].deck(params={"vstore": v, "tpw": w}) for v, w in grid])]
    assert q[1] / q[0] == pytest.approx(3.0, rel=0.02)
    assert q[3] / q[2] == pytest.approx(3.0, rel=0.02)


def test_transmission_gate_writes_nearly_rail_to_rail(pool):
    """Measured stored/written: 0.407/0.45, 0.637/0.675, 0.877/0.9, 1.117/1.125, 1.354/1.35 V:
    at most 44 mV off (feed-through), where the 2T's nFET pass gate loses 0.15 V at 0.9 V."""
    vw = np.linspace(LV.vwrite_lo, LV.vwrite_hi, 5)
    vs = np.array([r.measures["vstored"] for r in
                   pool.map([TB["write"].deck(params={"vwrite": float(x)}) for x in vw])])
    assert np.all(np.diff(vs) > 0.2)
    assert np.max(np.abs(vs - vw)) < 0.06, vs


def test_retention_drifts_towards_the_mid_level_and_the_top_faster_hot(pool):
    """With the write bit line parked at the mid-level both gate devices see a negative gate
    drive. Measured over 2 ms: 0.45 V rises 8.9 mV (27 C) / 8.4 mV (85 C); 1.35 V holds to
    < 0.1 mV at 27 C and falls 0.17 mV at 85 C. The low end is NOT faster hot (its leak is
    slightly smaller at 85 C), so only the top level is checked for that; a 1024-token window
    at 65 ns/token (67 us) moves either end by < 0.5 mV."""
    cases = [(v, t) for v in (LV.vwrite_lo, LV.vwrite_hi) for t in (27, 85)]
    res = pool.map([TB["hold"].deck(params={"vinit": v}, temp=t) for v, t in cases])
    m = {c: r.measures for c, r in zip(cases, res)}
    for (v0, t), r in zip(cases, res):
        tr, vs = r.scale.values, r["v(sn)"]
        towards = np.sign(LV.vmid - v0)
        assert np.all(towards * np.diff(vs[tr > 1e-6]) >= -1e-7)        # monotonic, towards mid
        assert abs(m[(v0, t)]["v2m"] - v0) < 0.02
        assert abs(m[(v0, t)]["v100u"] - v0) < 1e-3
    lo, hi = LV.vwrite_lo, LV.vwrite_hi
    assert m[(lo, 27)]["v2m"] > lo + 1e-3                               # it does leak
    assert hi - m[(hi, 85)]["v2m"] > hi - m[(hi, 27)]["v2m"]             # top: faster hot


@pytest.mark.parametrize("tb,param", [("hold", "cs"), ("hold", "lwp"), ("write", "wwn"),
                                      ("read", "cs"), ("read", "wrp")])
def test_one_percent_device_change_fails_its_golden(tb, param):
    """The write transfer hardly depends on cs (the read gates add ~14 fF), so its golden is
    checked against the write nFET's width, the device that sets its feed-through."""
    default = next(p.default for p in PP.params if p.name == param)
    report = golden.check_testbench(TB[tb], params={param: default * 1.01})
    assert not report.passed, report.format()


# ------------------------------------------------------------------ shipped tables
def _read_at(cell: str, corner="tt", temperature=27.0):
    """(stored range of the write table, vstore axis, qread at the longest pulse)."""
    with h5py.File(data_dir() / "tables" / f"{cell}.h5") as f:
        ci = [c.decode() if isinstance(c, bytes) else c for c in f["write/corner"][()]].index(corner)
        ti = list(f["write/temperature"][()]).index(temperature)
        vst = f["write/vstored"][ci, ti]
        ri = list(f["read/temperature"][()]).index(temperature)
        v = f["read/vstore"][()]
        q = f["read/qread"][ci, ri, :, -1]
    return (float(vst.min()), float(vst.max())), v, q


def _middle_half_inl(cell: str) -> float:
    (lo, hi), v, q = _read_at(cell)
    a, b = lo + 0.25 * (hi - lo), lo + 0.75 * (hi - lo)
    x = np.linspace(a, b, 41)
    return _inl(x, np.interp(x, v, q))


def test_shipped_tables_multiply_linearly_and_the_2t_does_not():
    """Issue 8: the new cell's multiply, from its shipped tables at tt/27 C and the longest
    pulse, is within 5% of full scale of its best straight line over the middle half of the
    stored range its write table produces (measured 1.15% over 0.643-1.117 V); the 2T cell
    measures 61.8% this way (0.103-0.533 V; the issue quotes 55%)."""
    assert _middle_half_inl("gaincell_pp") < 0.05
    assert _middle_half_inl("gaincell_2t") > 0.30


# ------------------------------------------------------------------ cells by name
def test_cells_by_name_take_levels_and_sign_from_their_tables():
    pp = GainCellDevice(HardwareConfig(kv_cell="gaincell_pp")).levels
    t2 = GainCellDevice(HardwareConfig(kv_cell="gaincell_2t")).levels
    assert (pp.lo, pp.hi, pp.mid, pp.signed_product) == (LV.vwrite_lo, LV.vwrite_hi, LV.vmid, "push_pull")
    lv2 = CELLS["gaincell_2t"].levels
    assert (t2.lo, t2.hi, t2.mid, t2.signed_product) == (lv2.vwrite_lo, lv2.vwrite_hi, lv2.vmid,
                                                         "reference_column")
    ar = get_arrays(HardwareConfig(kv_cell="gaincell_pp", window=64, decay=False))
    assert not ar.has_reference and ar.ewrite_ref == 0 and float(ar.ev_ref.abs().max()) == 0
    assert ar.vw_levels[0] == LV.vwrite_lo and ar.vw_levels[-1] == LV.vwrite_hi
    assert ar.offset == pytest.approx(0.5) and ar.g_lin > 0


def _folder(tmp_path, edit=None):
    """A tables folder with the shipped readout table and a copy of gaincell_pp.h5 under the
    name `mycell.h5`, edited by `edit(h5py.File)`."""
    src = data_dir() / "tables"
    shutil.copy(src / "charge_to_pulse.h5", tmp_path / "charge_to_pulse.h5")
    shutil.copy(src / "gaincell_pp.h5", tmp_path / "mycell.h5")
    if edit:
        with h5py.File(tmp_path / "mycell.h5", "a") as f:
            edit(f)
    return HardwareConfig(kv_cell="mycell", tables_dir=str(tmp_path))


def test_a_designers_cell_runs_by_name(tmp_path):
    dev = GainCellDevice(_folder(tmp_path))
    assert dev.levels.signed_product == "push_pull" and dev.cell == "mycell"


@pytest.mark.parametrize("edit,words", [
    (None, ["'nosuch'", "nosuch.h5"]),
    (lambda f: f.__delitem__("retention"), ["'mycell'", "mycell.h5", "retention"]),
    (lambda f: f["read/qread"].attrs.__setitem__("units", "A"), ["'mycell'", "qread", "'A'", "'C'"]),
    (lambda f: f.attrs.__delitem__("signed_product"), ["'mycell'", "mycell.h5", "signed_product"]),
    (lambda f: f.attrs.__setitem__("signed_product", "guess"), ["'mycell'", "guess"]),
    (lambda f: f.attrs.__setitem__("kv_vmid", 2.0), ["'mycell'", "kv_vmid"]),
])
def test_a_bad_cell_is_refused_naming_cell_file_and_fault(tmp_path, edit, words):
    cfg = _folder(tmp_path, edit)
    if edit is None:
        cfg = cfg.replace(kv_cell="nosuch")
    with pytest.raises(CellTablesError) as exc:
        GainCellDevice(cfg)
    for w in words:
        assert w in str(exc.value), str(exc.value)


def test_a_cell_name_is_not_a_path(tmp_path):
    with pytest.raises(CellTablesError, match="letters, digits"):
        GainCellDevice(HardwareConfig(kv_cell="../tables/gaincell_pp"))


def test_cells_compare_shows_the_linear_cell_at_a_glance(tmp_path, capsys):
    """`cimlut cells compare` from the shipped tables (tt, 27 C, 15 ns). Measured: INL 78.2%
    (2T) vs 3.7% (push-pull) over the write range; a 50 mV drop moves 58% vs 6.9% of the
    span; read energy 1.5 vs 60.6 fJ per cell read."""
    from cimlut.cli import main
    from cimlut.models.cellcompare import compare
    assert main(["cells", "compare", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "gaincell_2t" in out and "gaincell_pp" in out
    assert (tmp_path / "cells_compare_gaincell_2t_gaincell_pp.png").stat().st_size > 10_000
    t2, pp = compare([HardwareConfig(kv_cell="gaincell_2t"), HardwareConfig(kv_cell="gaincell_pp")])
    assert pp.inl < 0.05 < 0.5 < t2.inl
    assert pp.droop_50mv < 0.10 < 0.5 < t2.droop_50mv
    assert np.all(np.diff(pp.product) > 0) and pp.product[0] < 0 < pp.product[-1]
    assert pp.e_product == pp.e_cell and t2.e_product > t2.e_cell      # the 2T reads a twin


def _level_inl(arrays) -> np.ndarray:
    """Straight-line INL over the write levels of the fresh K-side charge, per pulse level
    (level 0 reads nothing), as a fraction of the span."""
    G = arrays.K.expand()[1:, :, 0].numpy()
    b = np.arange(G.shape[1])
    return np.array([np.abs(q - np.polyval(np.polyfit(b, q, 1), b)).max() / np.ptp(q) for q in G])


def test_write_predistortion_cancels_the_static_nonlinearity():
    """Levels through the inverse of the tables at t_max. Measured (tt, 27 C, 64 levels):
    INL 3.7-3.9% at every pulse level without; with it 0.000% at t_max, median 0.03%, worst
    0.38% at the shortest pulses (below the read table's 1 ns, where the response shape
    differs from t_max's)."""
    plain = _level_inl(get_arrays(HardwareConfig(decay=False)))
    pre = _level_inl(get_arrays(HardwareConfig(decay=False, kv_predistort=True)))
    assert plain.min() > 0.03
    assert pre[-1] < 1e-3 and np.median(pre) < 2e-3 and pre.max() < 5e-3
    pre = get_arrays(HardwareConfig(decay=False, kv_predistort=True))
    plain = get_arrays(HardwareConfig(decay=False))
    # the top level comes down to the bottom half's reach; the bottom level stays
    assert pre.vw_levels[0] == pytest.approx(plain.vw_levels[0])
    assert pre.vw_levels[-1] < plain.vw_levels[-1]
    assert bool((pre.vw_levels[1:] > pre.vw_levels[:-1]).all())


def test_predistortion_of_a_cell_whose_read_is_not_monotonic_is_refused():
    with pytest.raises(CellTablesError, match="gaincell_2t.*cannot be inverted"):
        get_arrays(HardwareConfig(kv_cell="gaincell_2t", decay=False, kv_predistort=True))
