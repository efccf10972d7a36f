"""From netlists to numbers: run decks in ngspice, compare with golden waveforms."""

from .deck import CORNERS, Deck
from .errors import ConvergenceError, DeckError, DeckParamError, NgspiceCrash, SpiceError
from .result import SimResult, Vector
from .runner import BACKENDS, run
from .workers import Worker, WorkerPool

__all__ = ["BACKENDS", "CORNERS", "ConvergenceError", "Deck", "DeckError", "DeckParamError",
           "NgspiceCrash", "SimResult", "SpiceError", "Vector", "Worker", "WorkerPool", "run"]
