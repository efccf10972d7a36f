"""Characterization core: spec checks, in-session sweeps, cache, table files."""

import dataclasses
import textwrap

import numpy as np
import pytest

from cimlut.characterize import run
from cimlut.characterize.shared import Session
from cimlut.characterize.spec import SpecError, load_spec, spec_path
from cimlut.characterize.sweep import build
from cimlut.circuits import CELLS


def tb(cell, name):
    return next(t for t in CELLS[cell].testbenches if t.name == name)


def write_spec(tmp_path, body):
    p = tmp_path / "tables.toml"
    p.write_text(textwrap.dedent(body))
    return p


GOOD = """
cell = "gaincell_2t"
[tables.read]
testbench = "read"
corners = ["tt", "ss"]
temperature = { units = "degC", values = [27, 85] }
axes.vstore = { units = "V", values = [0.5, 0.7, 0.9] }
quantities.qread = { measure = "qread", units = "C" }
[tables.retention]
testbench = "hold"
corners = ["tt"]
axes.vinit = { units = "V", values = [0.4, 0.8] }
inner = { name = "time", units = "s", logspace = [-6, -3, 4] }
quantities.v_sn = { signal = "v(sn)", units = "V" }
"""


@pytest.mark.parametrize("change,key,words", [
    (("axes.vstore", "axes.vfoo"), "tables.read.axes.vfoo", "unknown axis"),
    (('axes.vstore = { units = "V"', 'axes.vstore = { units = "mV"'), "tables.read.axes.vstore",
     "unit mismatch"),
    (("values = [0.5, 0.7, 0.9]", "values = []"), "tables.read.axes.vstore", "empty range"),
    (('measure = "qread", units = "C"', 'measure = "qread", units = "A"'),
     "tables.read.quantities.qread", "unit mismatch"),
    (('testbench = "read"', 'testbench = "reed"'), "tables.read.testbench", "unknown testbench"),
    (('corners = ["tt", "ss"]', 'corners = ["tt", "xx"]'), "tables.read.corners", "unknown"),
    (("logspace = [-6, -3, 4]", "logspace = [-6, -1, 4]"), "tables.retention.inner",
     "leaves the analysis range"),
    # values of the wrong kind are refused, not converted or truncated
    (("values = [0.5, 0.7, 0.9]", 'linspace = ["0.5", "0.9", "3"]'), "tables.read.axes.vstore",
     "must be a number"),
    (("values = [0.5, 0.7, 0.9]", "linspace = [0.5, 0.9, 3.7]"), "tables.read.axes.vstore",
     "must be an integer"),
    (("values = [0.5, 0.7, 0.9]", 'values = [0.5, "0.7"]'), "tables.read.axes.vstore",
     "list of numbers"),
    (('corners = ["tt", "ss"]', 'corners = "tt"'), "tables.read.corners", "must be a list"),
    (('quantities.qread = { measure = "qread", units = "C" }', 'quantities.qread = "qread"'),
     "tables.read.quantities.qread", "is a table"),
    (('inner = { name = "time", units = "s", logspace = [-6, -3, 4] }', 'inner = "time"'),
     "tables.retention.inner", "is a table"),
    (('measure = "qread", units = "C" }', 'measure = "qread", units = "C", floor = "big" }'),
     "tables.read.quantities.qread", "floor = 'big' must be a number"),
    (('cell = "gaincell_2t"', 'cell = "gaincell_2t"\ntables.transfer = 5'), "tables.transfer",
     "is a table"),
    (("values = [0.5, 0.7, 0.9]", "linspace = [0, 0.9, 1000000000]"), "tables.read.axes.vstore",
     "1,000,000,000 values"),
])
def test_bad_specs_are_rejected_naming_file_and_key(tmp_path, change, key, words):
    p = write_spec(tmp_path, GOOD.replace(*change))
    with pytest.raises(SpecError) as info:
        load_spec(p)
    assert info.value.key == key and words in str(info.value) and str(p) in str(info.value)


PV = """
cell = "rram_1t1r"
[tables.pv]
procedure = "program_verify"
axes.target = { units = "S", values = [1e-5, 2e-5] }
quantities.g_reached = { procedure = "g_reached", units = "S" }
settings = { max_pulses = 30 }
montecarlo = { seed = 1, samples = 2, params = { gini = { rel_sigma = 0.05 } } }
"""


@pytest.mark.parametrize("change,key,words", [
    (("max_pulses = 30", 'max_pulses = "30"'), "tables.pv.settings.max_pulses", "must be an integer"),
    (("max_pulses = 30", "max_pulses = 30.5"), "tables.pv.settings.max_pulses", "must be an integer"),
    (("seed = 1,", "seed = 1, sampels = 3,"), "tables.pv.montecarlo", "unknown key(s) sampels"),
    (("rel_sigma = 0.05", "rel_sigma = 0.05, mean = 2"), "tables.pv.montecarlo.params.gini",
     "unknown key(s) mean"),
    (("rel_sigma = 0.05", 'rel_sigma = "0.05"'), "tables.pv.montecarlo.params.gini", "rel_sigma"),
])
def test_bad_procedure_and_montecarlo_specs_are_rejected(tmp_path, change, key, words):
    load_spec(write_spec(tmp_path, PV))  # the unchanged spec is good
    p = write_spec(tmp_path, PV.replace(*change))
    with pytest.raises(SpecError) as info:
        load_spec(p)
    assert info.value.key == key and words in str(info.value)


def test_a_huge_grid_is_refused_before_any_point_is_hashed(tmp_path):
    from cimlut.characterize.sweep import check_size
    spec = load_spec(write_spec(tmp_path, GOOD.replace("values = [0.5, 0.7, 0.9]",
                                                       "linspace = [0, 0.9, 100000]")))
    with pytest.raises(SpecError, match=r"400,002 points \(read 400,000, retention 2\): about "
                       r"[\d.]+ h on 2 worker.*--max-points 200,000"):
        check_size(spec, jobs=2)
    assert check_size(load_spec(write_spec(tmp_path, GOOD))) == 2 * 2 * 3 + 2


def test_shipped_specs_load():
    for cell in CELLS:
        if spec_path(cell).exists():
            spec = load_spec(spec_path(cell))
            assert spec.tables and all(t.quantities for t in spec.tables)


def test_session_points_equal_fresh_runs():
    t = tb("rram_1t1r", "read")
    s = Session(t.deck(corner="ss"))
    try:
        for params, temp in [({"gini": 0.3}, None), ({"gini": 1.2}, 85.0)]:
            a = s.run(params, temp)
            b = run(t.deck(params=params, temp=temp, corner="ss"))
            assert a.measures == b.measures
            np.testing.assert_array_equal(a["v(icell)"], b["v(icell)"])
    finally:
        s.close()
    s = Session(t.deck(corner="tt", temp=27.0))  # reset must restore the deck's own .temp
    try:
        seq = [s.run({"gini": 0.5}, T).measures["iread"] for T in (27.0, 85.0, 27.0, 0.0)]
    finally:
        s.close()
    fresh = {T: run(t.deck(params={"gini": 0.5}, temp=T)).measures["iread"] for T in (0.0, 27.0, 85.0)}
    assert seq == [fresh[27.0], fresh[85.0], fresh[27.0], fresh[0.0]]
    assert len(set(fresh.values())) == 3


def test_build_writes_tables_that_match_spice_and_resumes_from_cache(tmp_path):
    import xarray as xr
    spec = load_spec(write_spec(tmp_path, GOOD))
    path, first = build(spec, tmp_path / "out", jobs=2, progress=False, chunk=3)
    assert first.ok == 14 and first.cached == 0 and first.failed == 0
    ds = xr.open_dataset(path, group="read", engine="h5netcdf")
    assert ds.qread.dims == ("corner", "temperature", "vstore")
    assert ds.qread.attrs["units"] == "C" and ds.vstore.attrs["units"] == "V"
    assert list(ds.corner.values) == ["tt", "ss"] and int(ds.status.sum()) == 0
    fresh = run(tb("gaincell_2t", "read").deck(params={"vstore": 0.7}, corner="ss", temp=85))
    assert float(ds.qread.sel(corner="ss", temperature=85, vstore=0.7)) == fresh.measures["qread"]
    rt = xr.open_dataset(path, group="retention", engine="h5netcdf")
    assert rt.v_sn.dims == ("corner", "temperature", "vinit", "time")
    assert np.all(np.diff(rt.v_sn.values[0, 0], axis=-1) < 0)   # decays along time
    _, again = build(spec, tmp_path / "out", jobs=2, progress=False)
    assert again.cached == 14 and again.ok == 0
    edited = dataclasses.replace(spec, tables=(dataclasses.replace(
        spec.tables[0], temperature=dataclasses.replace(
            spec.tables[0].temperature, values=np.array([27.0, 50.0, 85.0]))),
        spec.tables[1]))
    _, third = build(edited, tmp_path / "out", jobs=2, progress=False)
    assert third.cached == 14 and third.ok == 6                 # only the new column ran


def test_killed_table_write_leaves_the_old_file(tmp_path):
    from cimlut.tablefile import TableData, write_tables
    t = TableData("x", [("corner", "", "c", np.array(["tt"], dtype=object))],
                  {"q": ("V", np.ones(1))}, np.zeros(1), 1)
    path = write_tables(tmp_path / "c.h5", [t], {"cell": "c"})
    before = path.read_bytes()
    bad = TableData("x", t.axes, {"q": ("V", np.array([object()]))}, np.zeros(1), 1)
    with pytest.raises(Exception):
        write_tables(path, [bad], {"cell": "c"})
    assert path.read_bytes() == before and list(tmp_path.iterdir()) == [path]


def test_dask_local_cluster_gives_the_same_tables(tmp_path):
    import h5py
    from dask.distributed import LocalCluster

    spec = load_spec(write_spec(tmp_path, GOOD))
    local, _ = build(spec, tmp_path / "local", jobs=2, progress=False, chunk=4)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:
        dask, summary = build(spec, tmp_path / "dask", executor="dask",
                              scheduler=cluster.scheduler_address, progress=False, chunk=4)
    assert summary.ok == 14 and summary.failed == 0
    with h5py.File(local) as a, h5py.File(dask) as b:
        for table in ("read", "retention"):
            for name in a[table]:
                np.testing.assert_array_equal(a[table][name][()], b[table][name][()])


def test_killed_build_resumes_and_the_old_table_stays_readable(tmp_path):
    import os
    import signal
    import sqlite3
    import subprocess
    import sys
    import time

    import h5py

    first = GOOD.split("[tables.retention]")[0]
    spec = write_spec(tmp_path, first)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "cimlut.cli", "tables", "build", str(spec), "--out", str(out),
           "--jobs", "1", "--quiet"]
    subprocess.run(cmd, check=True, capture_output=True)
    table = out / "gaincell_2t.h5"
    old = table.read_bytes()
    spec.write_text(first.replace("values = [0.5, 0.7, 0.9]",
                                  "linspace = [0.3, 0.9, 25]").replace("[27, 85]", "[0, 27, 85]"))
    db = out / ".cache" / "gaincell_2t.sqlite"
    with sqlite3.connect(db) as c:
        base = c.execute("SELECT COUNT(*) FROM points_v2").fetchone()[0]  # the first build's
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    deadline = time.time() + 120
    done = 0
    while time.time() < deadline and proc.poll() is None:
        with sqlite3.connect(db) as c:
            done = c.execute("SELECT COUNT(*) FROM points_v2").fetchone()[0]
        if done >= base + 32:
            break
        assert table.read_bytes() == old
        time.sleep(0.05)
    assert proc.poll() is None, "the build finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert table.read_bytes() == old
    with h5py.File(table) as f:
        assert f["read/qread"].shape == (2, 2, 3)
    res = subprocess.run(cmd[:-1], check=True, capture_output=True, text=True)
    line = [ln for ln in res.stdout.splitlines() if "points ok" in ln][-1]
    cached = int(line.split("from cache ")[1].split()[0])
    ran = int(line.split("points ok ")[1].split(",")[0])
    assert cached >= done - base >= 32 and cached + ran == 2 * 3 * 25
    with h5py.File(table) as f:
        assert f["read/qread"].shape == (2, 3, 25) and int(f["read/status"][()].sum()) == 0


def test_build_from_empty_cache_reproduces_the_shipped_tables(tmp_path):
    import h5py

    from cimlut.paths import data_dir

    spec = load_spec(spec_path("charge_to_pulse"))
    t = spec.tables[0]
    temps = t.temperature.values
    sub = dataclasses.replace(spec, tables=(dataclasses.replace(
        t, corners=("ss",), temperature=dataclasses.replace(t.temperature, values=temps[-1:])),))
    path, s = build(sub, tmp_path, jobs=2, progress=False)
    assert s.cached == 0 and s.failed == 0
    with h5py.File(path) as new, h5py.File(data_dir() / "tables" / "charge_to_pulse.h5") as old:
        ci = [c.decode() for c in old["transfer/corner"][()]].index("ss")
        for q in ("tpulse", "econv"):
            np.testing.assert_allclose(new[f"transfer/{q}"][0, 0], old[f"transfer/{q}"][ci, -1],
                                       rtol=1e-6, atol=0)


def test_a_point_that_fails_is_retried_then_recorded_and_the_chunk_goes_on(decks, monkeypatch):
    from cimlut.characterize import shared, sweep
    deck = str(decks / "fragile.cir")
    q = [("vn_max", "measure", "vn_max")]
    rows = sweep.run_chunk(deck, "tt", None, q, [("a", {"gain": 3.0}, None),
                                                 ("b", {"gain": 1e4}, None),
                                                 ("c", {"gain": 3.0}, 85.0)])
    status = {k: s for k, s, _ in rows}
    assert status == {"a": sweep.OK, "b": sweep.NO_CONV, "c": sweep.OK}
    bad = next(p for k, _, p in rows if k == "b")
    assert "retry:" in bad["error"] and "imestep too small" in bad["error"]

    real = shared.Session

    class Flaky(real):  # the in-session run fails for one point; the robust re-run is real
        def run(self, params, temp=None):
            if params.get("vmax") == 1.7:
                from cimlut.characterize import ConvergenceError
                raise ConvergenceError(deck, "forced in-session failure")
            return super().run(params, temp)

    monkeypatch.setattr(shared, "Session", Flaky)
    monkeypatch.setattr(sweep, "_session", None)
    rows = sweep.run_chunk(deck, "tt", None, q, [("x", {"vmax": 1.7}, None),
                                                 ("y", {"vmax": 1.6}, None)])
    assert [s for _, s, _ in rows] == [sweep.RETRIED, sweep.OK]
    direct = run(decks / "fragile.cir", params={"vmax": 1.7}).measures["vn_max"]
    assert rows[0][2]["vn_max"] == pytest.approx(direct, rel=1e-3)


def test_check_plot_and_show_on_a_small_table(tmp_path, capsys):
    from cimlut.characterize.check import check_table
    from cimlut.cli import main

    spec = load_spec(write_spec(tmp_path, GOOD))
    path, _ = build(spec, tmp_path / "out", jobs=2, progress=False)
    rep = check_table(path, "read", points=4, seed=3)["qread"]
    assert rep["points"] == 4 and rep["values"] == 4
    # three stored voltages 0.2 V apart on an exponential: interpolation must visibly miss
    assert 0.01 < rep["rms_rel"] < 10 and rep["max_abs"] > 0
    # the same points again at a 4x finer step and reltol/10: a real change, far smaller
    conv = rep["convergence"]
    assert conv["points"] == 4 and 0 < conv["rms_rel"] < rep["rms_rel"] / 10
    ret = check_table(path, "retention", points=3, seed=3, convergence=False)["v_sn"]
    assert ret["values"] == 3 * 4 and np.isfinite(ret["rms_abs"]) and "convergence" not in ret
    assert main(["tables", "plot", str(path), "--plots", str(tmp_path / "png")]) == 0
    pngs = sorted(p.name for p in (tmp_path / "png").glob("*.png"))
    assert pngs == ["gaincell_2t.read.qread.png", "gaincell_2t.retention.v_sn.png"]
    assert main(["tables", "show", str(path)]) == 0
    out = capsys.readouterr().out
    assert "axis vstore" in out and "[V]" in out and "status: ok 12" in out
