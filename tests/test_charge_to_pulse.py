"""The shipped charge-to-pulse table behaves like the readout it stands for (issue 11): the
pulse width is a threshold-crossing width, monotonic in charge, zero below the comparator's
threshold charge, linear above it (1/Isink with the documented 10 uA) and flat at tmax in
saturation; the conversion energy depends on the conversion; the sink delivers its current
with headroom at every corner."""

import h5py
import numpy as np
import pytest

from cimlut.characterize import run
from cimlut.circuits import CELLS
from cimlut.paths import data_dir

CELL = CELLS["charge_to_pulse"]
TB = next(t for t in CELL.testbenches if t.name == "transfer")
PARAMS = {p.name: p.default for p in CELL.params + TB.params}
TMAX, IBIAS, CINT, VREF = PARAMS["tmax"], PARAMS["ibias"], PARAMS["cint"], PARAMS["vrefv"]
# the comparator's rising threshold above vref (charge_to_pulse.inc: voff + vhys/2)
VTH = 2e-3 + 2e-3 / 2


@pytest.fixture(scope="module")
def table():
    with h5py.File(data_dir() / "tables" / "charge_to_pulse.h5") as f:
        g = f["transfer"]
        corners = [c.decode() if isinstance(c, bytes) else c for c in g["corner"][()]]
        assert int(np.count_nonzero(g["status"][()] > 1)) == 0       # every point ran
        return (corners, g["temperature"][()], g["qin"][()], g["tpulse"][()], g["econv"][()])


def _slices(table):
    corners, temps, q, tp, ec = table
    for ci, c in enumerate(corners):
        for ti, t in enumerate(temps):
            yield f"{c}/{t:g}C", q, tp[ci, ti], ec[ci, ti]


def test_pulse_width_is_monotonic_in_charge_in_every_slice(table):
    for name, q, tp, _ in _slices(table):
        rising = tp < TMAX - 1e-12
        assert np.all(np.diff(tp[rising]) >= 0), (name, np.diff(tp[rising]).min())
        # saturated: the pulse ends with the window; the output's fall through the driver
        # into the switch's gate capacitance (smaller as int rises) shifts it by < 0.1 ps
        top = tp[~rising]
        assert np.all(np.diff(top) >= -1e-13) and np.ptp(top) < 1e-12, (name, top)


def _threshold(q, tp):
    """The smallest charge that gives a real pulse (the comparator's minimum is ~0.11 ns)."""
    return q[np.argmax(tp > 0.05e-9)]


def test_no_pulse_below_the_threshold_charge(table):
    for name, q, tp, _ in _slices(table):
        qth = _threshold(q, tp)
        # the comparator's rising threshold, plus the reset switch's charge injection
        assert CINT * VTH <= qth <= 2e-15, (name, qth)
        assert np.all(tp[q < qth] == 0), (name, tp[q < qth].max())    # no crossing: 0
        assert tp[q == qth][0] < 0.2e-9              # the first pulse: the comparator's delay


def test_linear_above_the_threshold_with_the_documented_sink_current(table):
    for name, q, tp, _ in _slices(table):
        qth = _threshold(q, tp)
        lin = (q >= qth) & (tp < 0.95 * TMAX)
        fit = np.polyfit(q[lin], tp[lin], 1)
        inl = np.max(np.abs(tp[lin] - np.polyval(fit, q[lin]))) / TMAX
        assert inl <= 0.01, f"{name}: INL {inl:.3%} of full scale"
        assert 1 / fit[0] == pytest.approx(IBIAS, rel=0.01), name       # 0.1 ns/fC
        sat = q >= 1.04 * TMAX * IBIAS                                  # beyond 156 fC
        assert np.all(np.abs(tp[sat] - TMAX) < 1e-3 * TMAX), name


def test_conversion_energy_depends_on_the_conversion(table):
    for name, q, tp, ec in _slices(table):
        # during the pulse the sink draws from int (the column's charge) instead of vref:
        # from no pulse to saturation the energy falls by about vref x Isink x tmax
        drop = ec[0] - ec[-1]
        assert drop == pytest.approx(VREF * IBIAS * TMAX, rel=0.1), (name, drop)
        assert 250e-15 < ec.min() and ec.max() < 600e-15, name


@pytest.mark.parametrize("corner", ["tt", "ff", "ss", "sf", "fs"])
def test_sink_delivers_its_current_with_headroom_at_every_corner(corner):
    """isink: with its input near vref, the lowest level a discharge reaches."""
    for temp in (0.0, 85.0):
        res = run(TB.deck(params={"qin": 0.0}, corner=corner, temp=temp))
        assert res.measures["isink"] == pytest.approx(IBIAS, rel=0.01), (corner, temp)
