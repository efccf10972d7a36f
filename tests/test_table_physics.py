"""Physics the shipped tables must show in every corner and temperature slice, and axes that
cover what the circuits produce; each assertion reads the tables as shipped."""

import h5py
import numpy as np
import pytest

from cimlut.paths import data_dir

CELLS = ("gaincell_2t", "gaincell_pp")


def table(cell, group):
    with h5py.File(data_dir() / "tables" / f"{cell}.h5") as f:
        g = f[group]
        return {k: g[k][()] for k in g if isinstance(g[k], h5py.Dataset)}


@pytest.mark.parametrize("cell", CELLS)
def test_stored_voltage_rises_with_the_written_voltage_in_every_slice(cell):
    t = table(cell, "write")
    v = t["vstored"]                                    # corner, temperature, vwrite
    assert np.all(np.diff(v, axis=-1) > 0), np.argwhere(np.diff(v, axis=-1) <= 0)[:5]


@pytest.mark.parametrize("cell", CELLS)
def test_write_energy_is_positive_everywhere(cell):
    assert np.all(table(cell, "write")["ewrite"] > 0)


@pytest.mark.parametrize("cell", CELLS)
def test_the_storage_node_moves_one_way_in_time(cell):
    """Leakage has one sign for a given start: v_sn(t) is monotonic (up or down) in every
    corner, temperature and start, to 0.1 mV of solver noise."""
    v = table(cell, "retention")["v_sn"]               # corner, temperature, vinit, time
    d = np.diff(v, axis=-1)
    up = np.all(d >= -1e-4, axis=-1)
    down = np.all(d <= 1e-4, axis=-1)
    assert np.all(up | down), np.argwhere(~(up | down))[:5]


@pytest.mark.parametrize("cell", CELLS)
def test_read_charge_rises_with_the_stored_voltage_above_the_noise_floor(cell):
    t = table(cell, "read")
    q = t["qread"]                                     # corner, temperature, vstore, tpw
    dq = np.diff(q, axis=2)
    if cell == "gaincell_pp":                          # signed: monotonic throughout
        assert np.all(dq > 0)
        return
    with h5py.File(data_dir() / "tables" / f"{cell}.h5") as f:
        floor = float(f["read/qread"].attrs["interp_floor"])   # 1e-19 C: below it, leakage
    sel = (q[:, :, :-1] > floor) & (q[:, :, 1:] > floor)
    assert sel.sum() > 0.5 * sel.size and np.all(dq[sel] > 0)


@pytest.mark.parametrize("cell", CELLS)
def test_retention_and_read_axes_cover_every_stored_voltage(cell):
    """What any write stores, at any corner and temperature, is inside the axes that the
    retention and read tables are looked up on (a 0 V write into the 2T cell stores
    about -0.12 V: the word line's fall pushes charge out of sn)."""
    v = table(cell, "write")["vstored"]
    for group, axis in (("retention", "vinit"), ("read", "vstore")):
        ax = table(cell, group)[axis]
        assert ax.min() <= v.min() and v.max() <= ax.max(), (group, v.min(), v.max(), ax)


def test_a_0v_write_into_the_2t_cell_stores_below_zero():
    t = table("gaincell_2t", "write")
    assert t["vwrite"][0] == 0 and np.all(t["vstored"][..., 0] < -0.05)


def test_set_time_falls_with_amplitude_and_rises_with_the_gap():
    """A larger bit-line step switches sooner; a wider gap takes longer. Every grid point
    switched within the deck's window (status ok), so the boundary is inside no cell."""
    t = table("rram_1t1r", "set")
    ts, es = t["t_set"][0, 0], t["e_set"][0, 0]  # (vp, gini)
    assert np.all(t["status"] == 0)
    assert np.all(np.diff(ts, axis=0) < 0) and np.all(np.diff(ts, axis=1) > 0)
    assert np.all(es > 0) and np.all(np.diff(es, axis=1) > 0)
    assert ts.max() / ts.min() > 1e6  # nanoseconds (1.8 V from 1.0 nm) to seconds (1.4 V, HRS)


def test_reset_opens_the_gap_more_with_amplitude_and_width():
    t = table("rram_1t1r", "reset")
    g = t["gap_end"][0, 0]  # (vp, tpw, gini)
    assert np.all(np.diff(g, axis=0) >= -1e-4) and np.all(np.diff(g, axis=1) >= -1e-4)
    assert np.all(g >= t["gini"][None, None, :] - 1e-4)
