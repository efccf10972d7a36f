"""One way to run a deck, whichever backend: `run(deck, backend=..., params=..., corner=...)`."""

from __future__ import annotations

from pathlib import Path

from .batch import run_batch
from .deck import Deck
from .result import SimResult

BACKENDS = ("shared", "subprocess")


def as_deck(deck: Deck | str | Path, **edits) -> Deck:
    d = deck if isinstance(deck, Deck) else Deck(Path(deck))
    return d.with_(**edits) if edits else d


def run(deck: Deck | str | Path, backend: str = "shared", timeout: float | None = None,
        **edits) -> SimResult:
    """Simulate one deck. `shared` runs ngspice inside this process (fast; a crash of
    ngspice takes the process with it, so sweeps use `workers`); `subprocess` starts
    `ngspice -b` and reads its binary rawfile. Either stops past `timeout` seconds
    (default: `sandbox.sim_timeout()`) with SimTimeout."""
    d = as_deck(deck, **edits)
    if backend == "shared":
        from .shared import run_shared
        return run_shared(d, timeout=timeout)
    if backend == "subprocess":
        return run_batch(d, timeout=timeout)
    raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
