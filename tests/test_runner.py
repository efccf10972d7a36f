import os
import signal
import threading

import numpy as np
import pytest

from cimlut.characterize import (ConvergenceError, Deck, DeckError, NgspiceCrash, Worker,
                                 run)
from cimlut.characterize.rawfile import read_raw


@pytest.mark.parametrize("name", ["rc_tran.cir", "nfet_dc.cir"])
def test_backends_agree(decks, name):
    a = run(decks / name, backend="shared")
    b = run(decks / name, backend="subprocess")
    assert list(a.vectors) == list(b.vectors)
    assert a.ngspice_version == b.ngspice_version != "unknown"
    for key in b.vectors:
        x, y = a[key], b[key]
        assert x.shape == y.shape
        scale = np.max(np.abs(y)) or 1.0
        assert np.max(np.abs(x - y)) <= 1e-9 * scale, key
        assert a.vectors[key].unit == b.vectors[key].unit
    assert a.measures == pytest.approx(b.measures, rel=1e-9)
    assert a.scale.name in ("time", "v(v-sweep)")


def test_units_and_measures(decks):
    r = run(decks / "rc_tran.cir")
    assert r.scale.name == "time" and r.scale.unit == "s"
    assert r.vectors["v(out)"].unit == "V" and r.vectors["i(v1)"].unit == "A"
    # 10-90 % rise of an RC is ln(9) RC
    assert r.measures["tr"] == pytest.approx(np.log(9) * 1e3 * 1e-12, rel=0.02)


def test_param_override_changes_the_result(decks):
    a = run(decks / "nfet_dc.cir", params={"w": 1.0})
    b = run(decks / "nfet_dc.cir", params={"w": 2.0})
    assert 1.8 < b.measures["ion"] / a.measures["ion"] < 2.2
    assert abs(a.measures["ion"]) == pytest.approx(476e-6, rel=0.02)


@pytest.mark.parametrize("backend", ["shared", "subprocess"])
def test_syntax_error_names_deck_line_and_message(decks, backend):
    with pytest.raises(DeckError) as info:
        run(decks / "bad_syntax.cir", backend=backend)
    err = info.value
    assert err.deck.endswith("bad_syntax.cir") and err.line_no == 6
    assert "Vg g 0 {vg" in str(err) and 'Closing "}" not found' in str(err)


@pytest.mark.parametrize("backend", ["shared", "subprocess"])
def test_missing_model_names_the_instance_line(decks, backend):
    with pytest.raises(DeckError) as info:
        run(decks / "missing_model.cir", backend=backend)
    assert "missing_model.cir" in str(info.value) and info.value.line_no == 7
    assert "sky130_fd_pr__nfet_09v9" in str(info.value)


@pytest.mark.parametrize("backend", ["shared", "subprocess"])
def test_missing_library_file_says_how_to_fix(decks, backend):
    with pytest.raises(DeckError, match=r"no_such\.lib\.spice.*make setup") as info:
        run(decks / "missing_lib.cir", backend=backend)
    assert info.value.line_no == 2


@pytest.mark.parametrize("backend", ["shared", "subprocess"])
def test_nonconvergence_is_its_own_error(decks, backend):
    with pytest.raises(ConvergenceError, match="(?i)timestep too small") as info:
        run(decks / "nonconverge.cir", backend=backend)
    assert not isinstance(info.value, DeckError)


@pytest.mark.parametrize("backend", ["shared", "subprocess"])
def test_element_line_without_value_is_an_error(decks, backend):
    # 39: "Warning: r2: resistance to low, set to 1 mOhm"; 46: "Warning: 'r2 out 0' is not a
    # valid resistor instance line, ignored!" -- either way a circuit nobody drew runs
    with pytest.raises(DeckError, match="without its value") as info:
        run(decks / "no_value.cir", backend=backend)
    assert "r2" in str(info.value).lower()


@pytest.mark.parametrize("backend", ["shared", "subprocess"])
def test_measures_are_printed_with_seven_digits(decks, backend):
    # ngspice 46 prints .meas with 6 significant digits unless told (`set measureprec`); the
    # goldens compare measures at 1e-6 and program_verify carries a measured gap on
    import re
    r = run(decks / "nfet_dc.cir", backend=backend)
    printed = [ln for ln in r.log if re.match(r"\s*ion\s*=", ln)]
    assert printed and re.search(r"=\s*-?\d\.\d{6}e[-+]\d+", printed[0]), printed


def test_in_process_ngspice_recovers_after_a_fatal_deck_error(decks):
    with pytest.raises(DeckError):
        run(decks / "bad_syntax.cir", backend="shared")
    assert run(decks / "nfet_dc.cir", backend="shared").measures["ion"] < 0


def test_worker_crash_does_not_take_down_the_caller(decks):
    slow = Deck(decks / "rc_tran.cir").with_(step_scale=1e-3)  # ~seconds of work
    w = Worker()
    try:
        first = w.pid
        threading.Timer(0.8, lambda: os.kill(first, signal.SIGSEGV)).start()
        with pytest.raises(NgspiceCrash, match="SIGSEGV"):
            w.run(slow)
        assert w.pid != first
        assert w.run(Deck(decks / "nfet_dc.cir")).measures["ion"] < 0
        with pytest.raises(DeckError):  # errors still come back as errors, not crashes
            w.run(Deck(decks / "bad_syntax.cir"))
    finally:
        w.close()


def test_ascii_and_binary_rawfiles_read_the_same(decks, tmp_path):
    import subprocess
    for fmt in ("binary", "ascii"):
        deck = tmp_path / f"{fmt}.cir"
        text = (decks / "rc_tran.cir").read_text().replace(
            "run\n", f"set filetype={fmt}\nrun\nwrite {tmp_path}/{fmt}.raw\n")
        deck.write_text(text)
        subprocess.run(["ngspice", "-b", str(deck)], check=True, capture_output=True)
    b, a = read_raw(tmp_path / "binary.raw")[0], read_raw(tmp_path / "ascii.raw")[0]
    assert a.names == b.names and a.names[0] == "time"
    np.testing.assert_allclose(a.data, b.data, rtol=1e-6, atol=1e-18)
