"""Program-and-verify tells the truth: a run that ended past its target is `missed_target`
(its values kept, they are what the cell reached), and the lowest weight conductance the
simulator uses by default is the lowest level the table shows program-and-verify meets."""

import shutil

import h5py
import numpy as np
import pytest

from cimlut.characterize.sweep import MISSED, OK, pv_status
from cimlut.models.config import HardwareConfig
from cimlut.models.rram import RramDevice
from cimlut.paths import data_dir
from cimlut.tablefile import STATUS, describe

SHIPPED = data_dir() / "tables" / "rram_1t1r.h5"


def test_a_run_past_its_tolerance_is_missed_either_way():
    s = {"tol": 0.05}
    assert pv_status(s, 1e-5, 1.04e-5) == OK and pv_status(s, 1e-5, 0.96e-5) == OK
    assert pv_status(s, 1e-5, 1.06e-5) == MISSED and pv_status(s, 1e-5, 0.9e-5) == MISSED
    assert STATUS[MISSED] == "missed_target"


def test_the_shipped_table_flags_every_overshoot_and_shows_the_count():
    with h5py.File(SHIPPED) as f:
        g = f["program_verify"]
        ratio = g["g_reached"][0, 0] / g["target"][()][:, None]
        st = g["status"][0, 0]
    missed = np.abs(ratio - 1) > 0.05
    assert missed.any() and np.array_equal(st == MISSED, missed)
    assert np.all(st[~missed] == OK)
    assert f"missed_target {int(missed.sum())}" in describe(SHIPPED)


def _levels():
    with h5py.File(SHIPPED) as f:
        g = f["program_verify"]
        return g["target"][()], g["pulses"][0, 0]


def test_the_default_lowest_conductance_is_the_lowest_level_under_verify_control():
    targets, pulses = _levels()
    dev = RramDevice(HardwareConfig())
    i = int(np.argmin(np.abs(targets - dev.g_min)))
    assert dev.g_min == pytest.approx(targets[i], rel=1e-9) and dev.g_min == dev.g_usable
    assert i > 0 and np.all(pulses[i:] >= 2)              # the loop steps onto every target
    assert np.any(pulses[i - 1] == 1)                     # below, the first pulse decides
    # an explicit g_min is kept, and cells programmed below the usable level are counted
    low = RramDevice(HardwareConfig(g_min=float(targets[i - 1])))
    assert low.g_min == pytest.approx(targets[i - 1])
    import torch
    low.program(torch.tensor([targets[i - 1], targets[-1]]))
    assert "below_usable_level: 1" in low.report()


def test_a_table_where_every_level_is_under_control_moves_the_default_down(tmp_path):
    shutil.copy(SHIPPED, tmp_path / SHIPPED.name)
    with h5py.File(tmp_path / SHIPPED.name, "r+") as f:
        f["program_verify"]["pulses"][...] = 3.0
    dev = RramDevice(HardwareConfig(tables_dir=str(tmp_path)))
    assert dev.g_min == pytest.approx(float(_levels()[0][0]))
