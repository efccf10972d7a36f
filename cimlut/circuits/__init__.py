"""The circuits: the three of the seed papers and the linear push-pull gain cell, each
declared once."""

from .base import Cell, Measure, Param, Port, Signal, StorageLevels, Testbench
from .gaincell import GAINCELL
from .gaincell_pp import GAINCELL_PP
from .pulse import CHARGE_TO_PULSE
from .rram import RRAM

CELLS: dict[str, Cell] = {c.name: c for c in (RRAM, GAINCELL, GAINCELL_PP, CHARGE_TO_PULSE)}


def testbenches() -> list[Testbench]:
    return [tb for cell in CELLS.values() for tb in cell.testbenches]


__all__ = ["CELLS", "Cell", "Measure", "Param", "Port", "Signal", "StorageLevels", "Testbench", "testbenches"]
