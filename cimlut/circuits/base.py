"""What a circuit is: its deck files, ports, parameters and testbenches, written down once.

The decks carry the same parameter defaults as `.param` lines so that they run on their
own; tests check the two agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..characterize.deck import Deck
from ..paths import netlists_dir


@dataclass(frozen=True)
class Param:
    name: str
    default: float
    unit: str
    doc: str


@dataclass(frozen=True)
class Port:
    name: str
    doc: str


@dataclass(frozen=True)
class Signal:
    """A waveform worth keeping: its ngspice vector name (`v(node)`, `i(source)`)."""
    name: str
    unit: str
    label: str


@dataclass(frozen=True)
class Measure:
    """A `.meas` scalar of a testbench."""
    name: str
    unit: str
    doc: str


@dataclass(frozen=True)
class Testbench:
    cell: str
    name: str
    file: str
    doc: str
    signals: tuple[Signal, ...]
    measures: tuple[Measure, ...]
    params: tuple[Param, ...] = ()
    xy: tuple[str, str] | None = None
    """A parametric plot worth drawing (x signal, y signal), e.g. the I-V loop."""
    transfer: tuple[str, tuple[float, ...], str] | None = None
    """A transfer curve: (deck parameter, values, measure), e.g. pulse width vs charge."""

    @property
    def id(self) -> str:
        return f"{self.cell}.{self.name}"

    @property
    def path(self) -> Path:
        return netlists_dir() / self.cell / self.file

    def deck(self, **edits) -> Deck:
        d = Deck(self.path)
        return d.with_(**edits) if edits else d


@dataclass(frozen=True)
class Cell:
    name: str
    subckt: str
    file: str
    doc: str
    cite: str
    ports: tuple[Port, ...]
    params: tuple[Param, ...]
    testbenches: tuple[Testbench, ...] = field(default=())

    @property
    def path(self) -> Path:
        return netlists_dir() / self.name / self.file
