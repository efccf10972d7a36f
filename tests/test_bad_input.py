"""Hostile and careless input: nothing runs that the user did not ask for, nothing shipped is
overwritten, every bad input gets an error that names it, before the slow part."""

import hashlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from cimlut.characterize import DeckError, DeckParamError, run
from cimlut.characterize.deck import Deck
from cimlut.characterize.errors import DeckRefused, SimTimeout
from cimlut.cli import main
from cimlut.errors import CimlutError
from cimlut.paths import data_dir

BACKENDS = ("shared", "subprocess")
TWO_POINTS = textwrap.dedent("""\
    cell = "charge_to_pulse"
    [tables.transfer]
    testbench = "transfer"
    axes.qin = { units = "C", values = [20e-15, 60e-15] }
    quantities.tpulse = { measure = "tpulse", units = "s" }
    """)
CIMLUT = Path(sys.executable).parent / "cimlut"


def deck_dir(tmp_path, name="deck folder") -> Path:
    """A folder whose name holds a space, with a tiny model-free deck."""
    d = tmp_path / name
    d.mkdir(parents=True)
    (d / "rc.inc").write_text("R1 in out {r}\nC1 out 0 1p\n")
    (d / "rc.cir").write_text(textwrap.dedent("""\
        * RC
        .param r=1k
        V1 in 0 pulse(0 1 0 10p 10p 1 2)
        .include rc.inc
        .tran 10p 5n
        .meas tran vend find v(out) at=5n
        .control
        run
        .endc
        .end
        """))
    return d


# ------------------------------------------------------------ code execution from data

@pytest.mark.parametrize("backend", BACKENDS)
def test_a_control_block_in_an_included_file_does_not_run(tmp_path, backend):
    d = deck_dir(tmp_path)
    marker = tmp_path / "included-control-ran"
    (d / "rc.inc").write_text(f"R1 in out {{r}}\nC1 out 0 1p\n.control\nshell touch {marker}\n"
                              f".endc\n")
    with pytest.raises(DeckRefused, match=r"rc.inc, line 3 \('.control'\).*holds ngspice commands"):
        run(d / "rc.cir", backend=backend)
    assert not marker.exists()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_nested_include_and_an_ng_script_header_are_refused(tmp_path, backend):
    d = deck_dir(tmp_path)
    marker = tmp_path / "nested-ran"
    (d / "inner.inc").write_text(f"*ng_script\nshell touch {marker}\n")
    (d / "rc.inc").write_text("R1 in out {r}\nC1 out 0 1p\n.include inner.inc\n")
    with pytest.raises(DeckRefused, match="inner.inc, line 1"):
        run(d / "rc.cir", backend=backend)
    assert not marker.exists()


@pytest.mark.parametrize("backend", BACKENDS)
def test_spiceinit_in_the_deck_folder_cwd_or_home_does_not_run(tmp_path, backend):
    """In a fresh process (the shared library reads init files when it starts)."""
    d = deck_dir(tmp_path)
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    home.mkdir(), cwd.mkdir()
    markers = []
    for where in (d, home, cwd):
        m = tmp_path / f"spiceinit-ran-{where.name.replace(' ', '_')}"
        (where / ".spiceinit").write_text(f"shell touch {m}\n")
        markers.append(m)
    code = (f"from cimlut.characterize import run; "
            f"r = run({str(d / 'rc.cir')!r}, backend={backend!r}); print(r.measures['vend'])")
    out = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True,
                         env={**os.environ, "HOME": str(home)}, timeout=120)
    assert out.returncode == 0, out.stderr
    assert 0.9 < float(out.stdout.split()[-1]) < 1.0
    assert not [m.name for m in markers if m.exists()]


@pytest.mark.parametrize("value", ["1\n.control\nshell touch x\n.endc", "1; shell", "{r}",
                                   "nan", float("inf"), True])
def test_parameter_values_must_be_numbers(tmp_path, value):
    d = deck_dir(tmp_path)
    with pytest.raises(DeckParamError, match=r"\.param r = .*(expected a number|not a finite)"):
        Deck(d / "rc.cir").with_(params={"r": value})
    assert Deck(d / "rc.cir").with_(params={"r": "2k"}).render([])  # SPICE suffixes are fine


def test_set_text_cannot_inject_a_control_block(tmp_path, capsys):
    d = deck_dir(tmp_path)
    marker = tmp_path / "injected"
    rc = main(["sim", str(d / "rc.cir"), "--backend", "subprocess", "--set",
               f"r=1\n.control\nshell touch {marker}\n.endc"])
    assert rc == 2 and not marker.exists()
    assert "expected a number" in capsys.readouterr().err


def test_option_values_are_numbers_or_words(tmp_path):
    d = deck_dir(tmp_path)
    Deck(d / "rc.cir").with_(options={"method": "gear", "reltol": 1e-4})
    with pytest.raises(DeckParamError, match="option method"):
        Deck(d / "rc.cir").with_(options={"method": "gear\n.control"})


def test_a_crafted_cache_row_cannot_execute_code(tmp_path):
    """The cache is JSON of numbers; a pickle in a row is never loaded, the point re-runs."""
    import pickle

    from cimlut.characterize.spec import load_spec
    from cimlut.characterize.sweep import build
    spec_file = tmp_path / "tables.toml"
    spec_file.write_text(TWO_POINTS)
    spec = load_spec(spec_file)
    out = tmp_path / "out"
    build(spec, out, jobs=1, progress=False, log=lambda *_: None)
    marker = tmp_path / "unpickled"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    db = out / ".cache" / "charge_to_pulse.sqlite"
    with sqlite3.connect(db) as c:
        keys = [k for (k,) in c.execute("SELECT key FROM points_v2")]
        assert len(keys) == 2
        c.execute("UPDATE points_v2 SET payload = ? WHERE key = ?", (pickle.dumps(Evil()), keys[0]))
        c.execute("CREATE TABLE IF NOT EXISTS points (key TEXT PRIMARY KEY, status INTEGER, "
                  "payload BLOB)")
        c.executemany("INSERT INTO points VALUES (?, 0, ?)", [(k, pickle.dumps(Evil())) for k in keys])
    _, summary = build(spec, out, jobs=1, progress=False, log=lambda *_: None)
    assert not marker.exists()
    assert summary.cached == 1 and summary.ok == 1  # the crafted row was simulated again


def test_a_corrupt_cache_database_is_moved_aside_and_rebuilt(tmp_path):
    from cimlut.characterize.cache import PointCache
    db = tmp_path / ".cache" / "x.sqlite"
    db.parent.mkdir()
    db.write_bytes(b"this is not a database" * 100)
    said = []
    cache = PointCache(db, log=said.append)
    cache.put_many([("k", 0, {"a": 1.5, "b": np.array([1.0, np.nan])})])
    got = cache.get_many(["k"])["k"]
    assert got[1]["a"] == 1.5 and np.isnan(got[1]["b"][1])
    cache.close()
    assert "not a usable SQLite database" in said[0] and "moved it to" in said[0]
    assert len(list(db.parent.glob("x.sqlite.corrupt-*"))) == 1


# ------------------------------------------------------------ shipped data is never overwritten

def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.h5"))}


def test_tables_build_without_out_leaves_the_shipped_tables_byte_identical(tmp_path, monkeypatch,
                                                                           capsys):
    shipped = data_dir() / "tables"
    before = _digest(shipped)
    spec = tmp_path / "two.toml"
    spec.write_text(TWO_POINTS)
    monkeypatch.chdir(tmp_path)
    assert main(["tables", "build", str(spec), "--jobs", "1", "--quiet"]) == 0
    assert (tmp_path / "out" / "tables" / "charge_to_pulse.h5").is_file()
    with pytest.raises(SystemExit, match="shipped table folder.*--shipped"):
        main(["tables", "build", str(spec), "--out", str(shipped), "--quiet"])
    assert _digest(shipped) == before


# ------------------------------------------------------------ configs: ranges, syntax, keys

@pytest.mark.parametrize("key,value", [
    ("t_read", -1e-9), ("adc_bits", 64), ("adc_bits", 0), ("temperature", 500.0),
    ("kv_levels", 1), ("tile_rows", 0), ("window", -1), ("token_period", 0.0),
    ("adc_fom", -1e-15), ("temperature", float("nan")),
])
def test_out_of_range_config_values_are_refused_naming_key_value_and_range(key, value):
    from cimlut.models.config import ConfigError, HardwareConfig
    with pytest.raises(ConfigError) as info:
        HardwareConfig().replace(**{key: value})
    msg = str(info.value)
    assert f"{key} = {value!r}" in msg and "out of range: expected" in msg and ".." in msg


def test_a_temperature_outside_the_tables_is_refused_under_either_policy():
    from cimlut.models.config import HardwareConfig
    from cimlut.models.rram import RramDevice
    from cimlut.models.table import OutOfRangeError
    for policy in ("clamp", "raise"):
        with pytest.raises(OutOfRangeError, match=r"temperature=100 degC \(config temperature\) "
                           r"is outside the table's \[0, 85\]"):
            RramDevice(HardwareConfig(temperature=100.0, out_of_range=policy))


@pytest.mark.parametrize("name,text,words", [
    ("hw.toml", "adc_bits = 6\n[hardware]\nanalog = 'linear'\n", "outside the [hardware] table"),
    ("hw.toml", "adc_bits = = 6\n", "not valid TOML"),
    ("hw.json", "{\"adc_bits\": 6,}", "not valid JSON (line 1"),
    ("hw.json", "[1, 2]", "not a list"),
])
def test_config_file_faults_name_the_file(tmp_path, name, text, words):
    from cimlut.models.config import ConfigError, HardwareConfig
    p = tmp_path / name
    p.write_text(text)
    with pytest.raises(ConfigError) as info:
        HardwareConfig.load(p)
    assert str(p) in str(info.value) and words in str(info.value)


# ------------------------------------------------------------ corrupt files, before the model

@pytest.fixture
def no_model_load(monkeypatch):
    """Fail the test if a run gets as far as loading a model."""
    from cimlut.models import zoo

    def refuse(*a, **k):
        raise AssertionError("the model was loaded before the bad input was found")
    monkeypatch.setattr(zoo, "load", refuse)


def _tables_with(tmp_path, name: str, mutate) -> Path:
    d = tmp_path / "tables"
    shutil.copytree(data_dir() / "tables", d)
    mutate(d / name)
    return d


def _nan_point(path: Path):
    import h5py
    with h5py.File(path, "r+") as f:
        ds = f["read"]["i_cell"]
        v = ds[()]
        v[0, 0, 0, 0] = np.nan
        ds[...] = v


def _negative_log_point(path: Path):
    import h5py
    with h5py.File(path, "r+") as f:
        ds = f["program_verify"]["g_reached"]
        v = ds[()]
        v[0, 0, 0, 0] = -1e-6
        ds[...] = v


@pytest.mark.parametrize("mutate,words", [
    (lambda p: p.write_bytes(b""), "is empty (0 bytes)"),
    (_negative_log_point, "values of 'g_reached' at corner tt are <= 0 (smallest -1e-06 S) but it "
                          "is interpolated in log space"),
    (lambda p: p.write_bytes(p.read_bytes()[:5000]), "not a readable HDF5 file"),
    (lambda p: p.write_bytes(b"\x89HDF\r\n" + os.urandom(4000)), "not a readable HDF5 file"),
    (_nan_point, "values of 'i_cell' at corner tt are not finite"),
])
def test_a_broken_table_stops_the_run_before_the_model_loads(tmp_path, capsys, no_model_load,
                                                             mutate, words):
    folder = _tables_with(tmp_path, "rram_1t1r.h5", mutate)
    rc = main(["run", "--model", "smollm2", "--analog", "linear", "--set",
               f"tables_dir={folder}", "--out", str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "rram_1t1r.h5" in err and words in err and "Traceback" not in err


@pytest.mark.parametrize("verb", [["calibrate"], ["adapt"], ["readouts"]])
def test_every_model_verb_checks_the_tables_before_the_model_loads(tmp_path, capsys,
                                                                   no_model_load, verb):
    folder = _tables_with(tmp_path, "gaincell_pp.h5", lambda p: p.write_bytes(b""))
    rc = main([*verb, "--model", "smollm2", "--analog", "attention", "--set",
               f"tables_dir={folder}", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "gaincell_pp.h5" in err and "is empty (0 bytes)" in err


@pytest.mark.parametrize("text,words", [
    ("garbage", "not JSON"), ("", "not JSON"), ("[1]", "not a calibration file"),
    ('{"model": "x", "config": {}, "attention": {"l0": {"a": "rm -rf"}}}', "holding numbers"),
])
def test_a_bad_calibration_file_stops_the_run_before_the_model_loads(tmp_path, capsys,
                                                                    no_model_load, text, words):
    cal = tmp_path / "cal.json"
    cal.write_text(text)
    rc = main(["run", "--model", "smollm2", "--analog", "linear", "--calibration", str(cal),
               "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and str(cal) in err and words in err


def test_a_corrupt_golden_file_is_named(tmp_path, capsys):
    from cimlut.circuits import testbenches
    tb = next(t for t in testbenches() if t.id == "charge_to_pulse.transfer")
    (tmp_path / f"{tb.id}.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 600)
    rc = main(["golden", "check", tb.id, "--dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and f"{tb.id}.h5" in err and "golden file" in err


@pytest.mark.parametrize("args,words", [
    (["run", "--tokens", "1"], "--tokens: 1 is below the least useful value 2"),
    (["run", "--sentences", "0"], "--sentences: 0 is below"),
    (["tables", "check", "--points", "0"], "--points: 0 is below"),
    (["sim", "x.cir", "--timeout", "-1"], "positive number of seconds"),
])
def test_cli_counts_out_of_range_are_refused(capsys, args, words):
    with pytest.raises(SystemExit):
        main(args)
    assert words in capsys.readouterr().err


# ------------------------------------------------------------ decks: paths, encodings, repairs

@pytest.mark.parametrize("backend", BACKENDS)
def test_a_deck_under_a_path_with_a_space_runs(tmp_path, backend):
    d = deck_dir(tmp_path, "my decks/rc one")
    assert run(d / "rc.cir", backend=backend).measures["vend"] == pytest.approx(0.993, abs=2e-3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_binary_and_latin1_decks(tmp_path, backend):
    d = deck_dir(tmp_path)
    (d / "bin.cir").write_bytes(b"* x\n\0\1\2\3garbage")
    with pytest.raises(DeckRefused, match="binary file"):
        run(d / "bin.cir", backend=backend)
    text = (d / "rc.cir").read_text().replace("* RC", "* RC, 1 \u00b5m wide")
    (d / "latin.cir").write_bytes(text.encode("latin-1"))
    assert run(d / "latin.cir", backend=backend).measures["vend"] > 0.9


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_element_ngspice_had_to_repair_is_an_error_naming_the_line(tmp_path, backend):
    d = deck_dir(tmp_path)
    (d / "rc.cir").write_text((d / "rc.cir").read_text().replace(".include", "R9 in 0\n.include"))
    # ngspice 39 makes it 1 mOhm ("resistance to low"), 46 drops it ("not a valid resistor
    # instance line, ignored"); either way the run goes on with a circuit nobody drew
    with pytest.raises(DeckError, match=r"line 4: 'R9 in 0'.*(resistance to|not a valid resistor)"):
        run(d / "rc.cir", backend=backend)


# ------------------------------------------------------------ runaway decks: timeout, Ctrl-C

def long_deck(tmp_path) -> Path:
    d = deck_dir(tmp_path)
    p = d / "long.cir"
    p.write_text("* runs for minutes\nV1 a 0 sin(0 1 1meg)\nR1 a 0 1k\n.tran 1p 10m\n.end\n")
    return p


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_long_deck_stops_at_its_timeout(tmp_path, backend):
    t0 = time.monotonic()
    with pytest.raises(SimTimeout, match="ran past the 1.5 s time limit"):
        run(long_deck(tmp_path), backend=backend, timeout=1.5)
    assert time.monotonic() - t0 < 15
    if backend == "shared":  # the library goes on working after a halted run
        assert run(deck_dir(tmp_path, "again") / "rc.cir").measures["vend"] > 0.9


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_long_deck_stops_on_ctrl_c(tmp_path, backend):
    p = subprocess.Popen([str(CIMLUT), "sim", str(long_deck(tmp_path)), "--backend", backend],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(4)  # interpreter start, imports, ngspice loaded and running
    assert p.poll() is None
    p.send_signal(signal.SIGINT)
    t0 = time.monotonic()
    _, err = p.communicate(timeout=30)
    assert time.monotonic() - t0 < 10
    assert p.returncode == 130 and "interrupted" in err and "Traceback" not in err


def test_ctrl_c_stops_a_table_build_and_keeps_finished_chunks(tmp_path):
    spec = tmp_path / "many.toml"
    spec.write_text(TWO_POINTS.replace("values = [20e-15, 60e-15]", "linspace = [1e-15, 150e-15, 400]"))
    cmd = [str(CIMLUT), "tables", "build", str(spec), "--jobs", "2", "--out", str(tmp_path / "o"),
           "--quiet"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    db = tmp_path / "o" / ".cache" / "charge_to_pulse.sqlite"

    def kept() -> int:
        try:
            with sqlite3.connect(db) as c:
                return c.execute("SELECT COUNT(*) FROM points_v2").fetchone()[0]
        except sqlite3.Error:
            return 0
    t0 = time.monotonic()
    while kept() == 0 and time.monotonic() - t0 < 120:  # some chunks done, more queued
        time.sleep(0.2)
    p.send_signal(signal.SIGINT)
    t0 = time.monotonic()
    _, err = p.communicate(timeout=60)
    assert time.monotonic() - t0 < 10 and p.returncode == 130 and "Traceback" not in err
    assert 0 < kept() < 400
    assert not (tmp_path / "o" / "charge_to_pulse.h5").exists()


def test_every_cli_error_is_a_cimlut_error():
    """The CLI prints CimlutError as one line: the errors it raises must all be under it."""
    from cimlut.characterize.errors import SpiceError
    from cimlut.characterize.spec import SpecError
    from cimlut.models.calibrate import CalibrationError
    from cimlut.models.config import ConfigError
    from cimlut.models.table import OutOfRangeError, TableError
    for cls in (SpiceError, SpecError, CalibrationError, ConfigError, OutOfRangeError, TableError):
        assert issubclass(cls, CimlutError), cls


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has CUDA")
def test_adapt_on_a_missing_cuda_device_stops_before_the_model_loads(tmp_path, capsys,
                                                                      no_model_load):
    rc = main(["adapt", "--model", "smollm2", "--analog", "attention", "--device", "cuda",
               "--save", str(tmp_path / "a.json"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "--device 'cuda'" in err and "sees no CUDA device" in err
