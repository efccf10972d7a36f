"""Errors raised while running a deck; each names the deck so a sweep log says where."""

from __future__ import annotations

from ..errors import CimlutError


class SpiceError(CimlutError, RuntimeError):
    """Base of every failure of an ngspice run."""

    def __init__(self, deck: str, message: str, log: str = ""):
        self.deck = deck
        self.message = message
        self.log = log
        super().__init__(f"{deck}: {message}")

    def __reduce__(self):
        # rebuilt from its fields so that errors cross process boundaries intact
        return (_rebuild, (type(self), self.__dict__.copy()))


def _rebuild(cls, state):
    err = cls.__new__(cls)
    err.__dict__.update(state)
    RuntimeError.__init__(err, f"{state['deck']}: {state['message']}")
    return err


class DeckError(SpiceError):
    """ngspice rejected the deck (syntax, unknown model or subcircuit, missing include)."""

    def __init__(self, deck: str, message: str, line_no: int | None = None,
                 line: str | None = None, log: str = ""):
        self.line_no = line_no
        self.line = line
        where = (f" (line {line_no}: {line.strip()!r})" if line_no and line is not None
                 else f" (line {line_no})" if line_no else "")
        super().__init__(deck, f"ngspice rejected the deck{where}: {message}", log)


class DeckRefused(DeckError):
    """cimlut will not hand this deck to ngspice: a binary file, or a file it pulls in that
    holds ngspice commands (data never runs code)."""

    def __init__(self, deck: str, message: str, log: str = ""):
        self.line_no, self.line = None, None
        SpiceError.__init__(self, deck, message, log)


class DeckParamError(SpiceError):
    """A parameter, corner or option asked of a deck that the deck does not have."""


class ConvergenceError(SpiceError):
    """The analysis ran but the solver did not converge."""


class NgspiceCrash(SpiceError):
    """The process running ngspice died (signal or abnormal exit)."""


class SimTimeout(SpiceError):
    """A run went past its time limit and was stopped."""
