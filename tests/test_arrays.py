"""Crossbar tiles as circuits: the generated deck against the cell's own netlist, the deck
on its own, the behavioural tile against SPICE (and a model without wires failing), the
CLI, and the inputs refused."""

import json
import os
import subprocess

import numpy as np
import pytest
import torch

from cimlut.characterize.arrays import check_tile
from cimlut.circuits.array import (STEP_CONVERGENCE, ArrayError, Tile, declaration, simulate,
                                   write_tile)
from cimlut.cli import main
from cimlut.errors import UsageError
from cimlut.models.config import HardwareConfig
from cimlut.models.parasitics import gated_pulse_charge
from cimlut.models.rram import RramDevice

GAPS = np.array([[0.3, 1.2, 0.9], [0.8, 0.5, 1.6]])
DRIVES = np.array([[0.2, 0.2], [0.2, 0.0]])


def test_hoisted_cell_equals_the_cell_netlist(tmp_path):
    """One hoisted sky130 bin and the frozen memristor's I-V law give the currents of the
    cell file's own subcircuits (48 binned cards, .func guards), wires and all."""
    fast = simulate(Tile(GAPS, DRIVES, wire_row=3.0, wire_col=2.0), tmp_path / "fast.cir")
    slow = simulate(Tile(GAPS, DRIVES, wire_row=3.0, wire_col=2.0, fast=False),
                    tmp_path / "slow.cir")
    assert fast.shape == (2, 3)
    np.testing.assert_allclose(fast, slow, rtol=1e-5)
    assert fast.min() > 0
    # a smaller gap conducts more (row 0 drives both vectors)
    assert fast[1, 0] > fast[1, 1]


def test_deck_runs_on_its_own(tmp_path):
    deck = write_tile(Tile(GAPS, DRIVES, wire_row=1.0, wire_col=1.0, wire_cap=1e-15,
                           clamp_gain=1e3, clamp_rf=1e4), tmp_path / "tile.cir")
    proc = subprocess.run(["ngspice", "-b", "-n", str(deck)], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "No. of Data Rows : 2" in proc.stdout


def test_pulse_deck_runs_on_its_own(tmp_path):
    """Word-line-gated pulse widths: one word line per row, a .tran, a charge per column."""
    tile = Tile(GAPS, [[0.2, 0.2]], wire_row=1.0, wire_col=1.0, wire_cap=1e-15,
                clamp_gain=1e3, clamp_rf=1e4, widths=[2e-9, 0.0])
    deck = write_tile(tile, tmp_path / "pulse.cir")
    text = deck.read_text()
    assert "Vwl0 wl0 0 PULSE(0 {vwl} 1e-10 2e-11 2e-11 1.98e-09" in text
    assert "Vwl1 wl1 0 0" in text and "\nVwl wl" not in text
    proc = subprocess.run(["ngspice", "-b", "-n", str(deck)], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    for j in range(3):
        assert f"q_{j} " in proc.stdout and "failed" not in proc.stdout
    # the DC deck is as it was: one word line, a sweep
    dc = write_tile(Tile(GAPS, DRIVES), tmp_path / "dc.cir").read_text()
    assert "Vwl wl 0 {vwl}" in dc and ".dc vsel 0 1 1" in dc and ".tran" not in dc


def test_pulse_widths_against_the_gated_reference(tmp_path):
    """16x16 tile, 30 ohm per segment, six rows pulsed for 2-20 ns at v_read = 0.2 V.

    Each pulse leaves a fixed edge charge in its column (see cimlut.circuits.array), which
    the behavioural reference has not: the deck at widths 2w less the deck at w cancels it
    and equals v_read * gated_pulse_charge(w) (conductances: this tile's DC deck, one cell
    at a time; the chord at each cell's voltage as the simulator linearises) within 0.1%
    per column (measured 0.009%; 0.023% without wires). Teeth: the model without wires is
    7.3% off, the wires at the v_read chord 0.42%, rows 3 and 9 (10 and 20 ns) swapped 75%.
    The edge charge, 2 Q(w) - Q(2w) per active cell: measured 0.32-0.38 fC in every column.
    A 4x smaller maximum step moves no column charge by more than STEP_CONVERGENCE
    (measured 0.030%)."""
    rows, v, wire = 16, 0.2, 30.0
    gaps = np.random.default_rng(0).uniform(0.3, 1.6, (rows, rows))
    w = np.zeros(rows)
    w[[0, 3, 6, 9, 12, 15]] = [2e-9, 10e-9, 5e-9, 20e-9, 7e-9, 3e-9]
    g = torch.tensor(simulate(Tile(gaps, v * np.eye(rows)), tmp_path / "g.cir") / v)
    pulse = dict(wire_row=wire, wire_col=wire)
    drive = v * np.ones((1, rows))
    q1 = simulate(Tile(gaps, drive, widths=w, **pulse), tmp_path / "w.cir")
    q2 = simulate(Tile(gaps, drive, widths=2 * w, **pulse), tmp_path / "2w.cir")
    device = RramDevice(HardwareConfig())
    chord = lambda gg, u: device.chord_conductance(gg, u * v)   # noqa: E731

    def model(widths, r=wire, c=chord):
        return v * gated_pulse_charge(g, torch.tensor(widths)[None], r, r, chord=c).numpy()[0]

    def err(m):
        return float(np.abs((q2 - q1) / m - 1).max())

    m = model(w)
    assert err(m) <= 1e-3
    assert err(model(w, r=0.0, c=None)) > 0.05
    assert err(model(w, c=None)) > 2e-3
    swapped = w.copy()
    swapped[[3, 9]] = swapped[[9, 3]]
    assert err(model(swapped)) > 0.1
    edge = (2 * q1 - q2) / 6
    assert 0.25e-15 <= edge.min() and edge.max() <= 0.45e-15
    assert (q1 > m).all() and (q1 - m).max() <= 6 * 0.45e-15
    fine = simulate(Tile(gaps, drive, widths=w, max_step=25e-12, **pulse), tmp_path / "f.cir")
    assert np.abs(fine / q1 - 1).max() < STEP_CONVERGENCE


def test_check_against_spice_and_its_teeth():
    """16x16 tile, 30 ohm per segment (an IR drop of up to 19%): the behavioural tile is
    within the limits of SPICE (zero wires: max <= 0.2% of full scale; wires: RMS <= 0.5%,
    max <= 1 ADC step; measured 0.09% and 0.26 steps), and the same model with its wires
    scaled by 1.1 fails (1.83 steps), as does the model with its wires off. The model is
    linearised at each cell's voltage with every row on; at the v_read chord it is off by
    0.98 steps and the 1.1x model passes."""
    r = check_tile(16, 16, 30.0, weights="random", vectors=8)
    zero, wired = r["cases"]["no_wires"], r["cases"]["wires"]
    assert zero["max_fs"] <= 0.002 and zero["ok"]
    assert r["rms_fs"] <= 0.005 and r["max_lsb"] <= 0.5 and r["ok"]
    off = wired["model_without_wires"]
    assert off["rms_fs"] > 0.005 and off["max_lsb"] > 1.0
    # the wires are what the model gets right: it explains >= 98% of the IR drop error
    assert r["rms_fs"] < 0.02 * off["rms_fs"]
    scaled = check_tile(16, 16, 30.0, weights="random", vectors=8, model_wire_scale=1.1)
    assert not scaled["ok"] and scaled["max_lsb"] > 1.0
    # the same SPICE currents: only the model moved
    assert scaled["cases"]["wires"]["spice"] == wired["spice"]


def test_finite_gain_clamp():
    """An amplifier of gain A with feedback R_f holds the column at I R_f / (1 + A): the
    model's clamp resistance reproduces SPICE's readout."""
    r = check_tile(8, 8, 2.0, weights="random", vectors=4, clamp_gain=1e3, clamp_rf=2e4)
    assert r["clamp_resistance"] == pytest.approx(2e4 / 1001)
    assert r["ok"] and r["rms_fs"] <= 0.005
    assert r["cases"]["wires"]["model_without_wires"]["max_lsb"] > 1.0


def test_cli(tmp_path):
    out = tmp_path / "check.json"
    rc = main(["arrays", "check", "--rows", "4", "--cols", "4", "--wire", "2", "--weights",
               "random", "--vectors", "3", "--json", str(out), "--quiet"])
    assert rc == 0
    data = json.loads(out.read_text())
    assert data["ok"] and 0 <= data["rms_fs"] < 0.005 and 0 <= data["max_lsb"] < 1
    assert set(data["cases"]) == {"no_wires", "wires"}
    assert out.with_suffix(".png").stat().st_size > 1000


def test_bad_input(tmp_path, capsys):
    with pytest.raises(UsageError, match=r"tile 32 rows x 8 columns needs 32 inputs .* shape \(4, 16\)"):
        check_tile(32, 8, 1.0, weights=torch.ones(4, 16))
    with pytest.raises(UsageError, match="wire_row = -1.0"):
        check_tile(4, 4, -1.0, weights="random")
    with pytest.raises(UsageError, match="4 x 5"):
        check_tile(4, 5, 1.0, weights="random")
    with pytest.raises(ArrayError, match="wire_col = -2.0"):
        Tile(GAPS, DRIVES, wire_col=-2.0)
    with pytest.raises(ArrayError, match="'gaincell_2t' has no 1T1R declaration.*rram_1t1r"):
        Tile(GAPS, DRIVES, cell="gaincell_2t")
    with pytest.raises(ArrayError, match="'charge_to_pulse'"):
        declaration("charge_to_pulse")
    with pytest.raises(ArrayError, match=r"drives of shape \(2, 3\)"):
        Tile(GAPS, np.zeros((2, 3)))
    for widths, msg in (([1e-9, -1e-9], r"row 1 = -1e-09"),
                        ([float("nan"), 1e-9], r"row 0 = nan"),
                        ([1e-9, float("inf")], r"row 1 = inf"),
                        ([1e-9, 1e-9, 1e-9], r"shape \(3,\).*shape \(2,\)"),
                        ([[1e-9, 1e-9]], r"shape \(1, 2\)"),
                        ([5e-12, 1e-9], r"row 0 = 5e-12 s: shorter than one edge"),
                        ([0.0, 0.0], "all 0"),
                        (["x", 1e-9], "expected numbers")):
        with pytest.raises(ArrayError, match=msg):
            Tile(GAPS, [[0.2, 0.2]], widths=widths)
    with pytest.raises(ArrayError, match=r"drives of shape \(2, 2\): pulse-width"):
        Tile(GAPS, DRIVES, widths=[1e-9, 1e-9])
    with pytest.raises(ArrayError, match="edge = -1e-11"):
        Tile(GAPS, [[0.2, 0.2]], widths=[1e-9, 1e-9], edge=-1e-11)
    with pytest.raises(SystemExit):
        main(["arrays", "check", "--rows", "4", "--cols", "4", "--wire", "-1", "--json",
              str(tmp_path / "x.json")])
    assert "resistance >= 0" in capsys.readouterr().err
