import math

import h5py
import numpy as np
import pytest

from cimlut.characterize import golden
from cimlut.characterize.golden import Golden, Tolerance, compare, read_golden, write_golden
from cimlut.characterize.result import SimResult, Vector
from cimlut.circuits import testbenches as all_testbenches
from cimlut.cli import main

TBS = all_testbenches()


def by_id(tid):
    return next(tb for tb in TBS if tb.id == tid)


def test_every_testbench_has_a_calibrated_golden():
    for tb in TBS:
        path = golden.golden_path(tb)
        assert path.exists(), path
        g = read_golden(path)
        assert g.deck_sha256 == tb.deck().content_hash(), f"{tb.id}: regenerate its golden"
        assert set(g.signals) == {s.name for s in tb.signals}
        assert set(g.measures) == {m.name for m in tb.measures}
        with h5py.File(path) as f:
            assert f["scale"].compression == "gzip" and len(f["noise_floor"].attrs) > 0
            assert f.attrs["ngspice_version"]


def test_identical_rerun_passes_all(capsys):
    assert main(["golden", "check"]) == 0
    assert f"{len(TBS)} passed, 0 failed" in capsys.readouterr().out


@pytest.mark.parametrize("tb", TBS, ids=lambda t: t.id)
def test_numerics_only_change_passes(tb):
    report = golden.check_testbench(tb, step_scale=0.5)
    assert report.passed, report.format()


@pytest.mark.parametrize("tid,param", [("gaincell_2t.hold", "cs"), ("gaincell_2t.write", "cs"),
                                       ("gaincell_2t.read", "cs"), ("rram_1t1r.iv", "i0"),
                                       ("rram_1t1r.read", "i0"), ("rram_1t1r.set", "i0"),
                                       ("rram_1t1r.set_time", "i0"), ("rram_1t1r.reset", "i0"),
                                       ("charge_to_pulse.transfer", "ibias"),
                                       ("charge_to_pulse.transfer", "cint")])
def test_one_percent_device_change_fails(tid, param):
    tb = by_id(tid)
    default = next(p.default for p in _params(tb) if p.name == param)
    report = golden.check_testbench(tb, params={param: default * 1.01})
    assert not report.passed, report.format()


def _params(tb):
    from cimlut.circuits import CELLS
    return CELLS[tb.cell].params + tb.params


def test_cli_reports_failure_with_exit_1(capsys):
    tb = by_id("gaincell_2t.hold")
    cs = next(p.default for p in _params(tb) if p.name == "cs")
    assert main(["golden", "check", tb.id, "--set", f"cs={cs * 1.01}"]) == 1
    out = capsys.readouterr().out
    assert "gaincell_2t.hold: FAIL" in out and "0 passed, 1 failed" in out
    assert "FAIL signal" in out or "FAIL measure" in out


def _synthetic(offset):
    t = np.linspace(0, 1, 101)
    g = Golden("x.y", "x/y.cir", "h", "39", "time", "s", t, {"v(a)": ("V", np.sin(t))},
               {"m": ("V", 1.0)}, {"v(a)": Tolerance(0.0, 0.01, 1.0, 2.0)},
               {"m": Tolerance(0.0, 0.01)})
    t2 = np.linspace(0, 1, 57)  # other time points: the golden is interpolated onto them
    res = SimResult("x", "shared", "39", "tran",
                    {"time": Vector("time", "s", t2),
                     "v(a)": Vector("v(a)", "V", np.sin(t2) + offset)},
                    {"m": 1.0 + offset})
    return g, res


def test_norm_is_rms_of_normalised_error():
    g, res = _synthetic(0.005)
    chk = {c.name: c for c in compare(g, res).checks}
    assert chk["v(a)"].value == pytest.approx(0.5, rel=1e-2) and chk["v(a)"].passed
    assert chk["m"].passed
    g, res = _synthetic(0.0101)
    report = compare(g, res)
    assert not report.passed and all(not c.passed for c in report.checks)


def test_killed_write_leaves_the_old_golden(tmp_path, monkeypatch):
    g, _ = _synthetic(0)
    path = write_golden(g, tmp_path / "x.y.h5")
    before = path.read_bytes()
    g.signals["v(a)"] = ("V", None)  # h5py cannot store it: the write dies midway

    with pytest.raises(Exception):
        write_golden(g, path)
    assert path.read_bytes() == before
    assert read_golden(path).signals["v(a)"][1][3] == pytest.approx(math.sin(0.03))
    assert list(tmp_path.iterdir()) == [path]
