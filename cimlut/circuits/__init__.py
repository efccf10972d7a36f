"""The three circuits of the seed papers, each declared once."""

from .base import Cell, Measure, Param, Port, Signal, Testbench
from .gaincell import GAINCELL
from .pulse import CHARGE_TO_PULSE
from .rram import RRAM

CELLS: dict[str, Cell] = {c.name: c for c in (RRAM, GAINCELL, CHARGE_TO_PULSE)}


def testbenches() -> list[Testbench]:
    return [tb for cell in CELLS.values() for tb in cell.testbenches]


__all__ = ["CELLS", "Cell", "Measure", "Param", "Port", "Signal", "Testbench", "testbenches"]
