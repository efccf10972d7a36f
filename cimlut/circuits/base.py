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


SIGNED_PRODUCTS = ("reference_column", "push_pull")


@dataclass(frozen=True)
class StorageLevels:
    """How a storage cell holds a signed value: its write range, the mid-level that means
    zero and how the sign reaches the readout (`reference_column`: every column has a twin of
    cells at the mid-level and the product is Q(v) - Q(mid); `push_pull`: the cell's own
    column charge is signed about the mid-level). Written into the cell's table file as
    attributes (`attrs`), from which the simulator reads them."""
    vwrite_lo: float      # V, lowest write bit-line voltage
    vwrite_hi: float      # V, highest write bit-line voltage
    vmid: float           # V, the write voltage that stands for zero
    signed_product: str   # one of SIGNED_PRODUCTS
    doc: str = ""

    def __post_init__(self):
        if self.signed_product not in SIGNED_PRODUCTS:
            raise ValueError(f"signed_product {self.signed_product!r}: expected one of "
                             f"{', '.join(SIGNED_PRODUCTS)}")
        if not self.vwrite_lo < self.vmid < self.vwrite_hi:
            raise ValueError(f"levels: need vwrite_lo < vmid < vwrite_hi, got "
                             f"{self.vwrite_lo}, {self.vmid}, {self.vwrite_hi} V")

    def attrs(self) -> dict:
        return {"kv_vwrite_lo": self.vwrite_lo, "kv_vwrite_hi": self.vwrite_hi,
                "kv_vmid": self.vmid, "kv_units": "V", "signed_product": self.signed_product,
                "kv_levels_doc": self.doc}


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
    levels: StorageLevels | None = None
    """For a storage cell (K/V): its write range, mid-level and signed-product convention."""

    @property
    def path(self) -> Path:
        return netlists_dir() / self.name / self.file
