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
from cimlut.circuits.array import ArrayError, Tile, declaration, simulate, write_tile
from cimlut.cli import main
from cimlut.errors import UsageError

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
    with pytest.raises(SystemExit):
        main(["arrays", "check", "--rows", "4", "--cols", "4", "--wire", "-1", "--json",
              str(tmp_path / "x.json")])
    assert "resistance >= 0" in capsys.readouterr().err
