"""Each cell is declared once in Python and once as .param lines in its decks: they agree,
and every deck runs on its own with `ngspice -b`."""

import math
import subprocess

import pytest

from cimlut.characterize import run
from cimlut.characterize.deck import spice_number
from cimlut.characterize.messages import first_of
from cimlut.circuits import CELLS
from cimlut.circuits import testbenches as all_testbenches

TBS = all_testbenches()


def test_cells_declared():
    assert set(CELLS) == {"rram_1t1r", "gaincell_2t", "gaincell_pp", "charge_to_pulse"}
    assert {n for n, c in CELLS.items() if c.levels} == {"gaincell_2t", "gaincell_pp"}
    for cell in CELLS.values():
        assert cell.path.is_file() and cell.ports and cell.params and cell.testbenches
        assert f".subckt {cell.subckt}" in cell.path.read_text().lower()
        assert cell.cite


@pytest.mark.parametrize("tb", TBS, ids=lambda t: t.id)
def test_declared_defaults_match_the_deck(tb):
    cell = CELLS[tb.cell]
    in_deck = tb.deck().default_params()
    for p in cell.params + tb.params:
        assert p.name in in_deck, f"{tb.path.name} lacks .param {p.name}"
        assert spice_number(in_deck[p.name]) == pytest.approx(p.default, rel=1e-12), p.name
    assert f"{cell.subckt}" in tb.path.read_text()


@pytest.mark.parametrize("tb", TBS, ids=lambda t: t.id)
def test_deck_runs_on_its_own_with_ngspice_b(tb):
    proc = subprocess.run(["ngspice", "-b", tb.path.name], cwd=tb.path.parent,
                          capture_output=True, text=True, timeout=300)
    lines = (proc.stdout + proc.stderr).splitlines()
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not first_of(lines, "error") and not first_of(lines, "convergence")


@pytest.mark.parametrize("tb", TBS, ids=lambda t: t.id)
def test_declared_signals_and_measures_exist(tb):
    res = run(tb.deck())
    for s in tb.signals:
        assert s.name in res.vectors, s.name
        if s.name.startswith("i("):
            assert res.vectors[s.name].unit == s.unit == "A", s.name
    for m in tb.measures:
        assert not math.isnan(res.measures[m.name]), m.name
    assert set(res.measures) == {m.name for m in tb.measures}
