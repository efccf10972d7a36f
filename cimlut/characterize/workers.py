"""Persistent worker processes, one ngspice each: parallelism, and crash isolation.

A worker that dies (ngspice segfault, abort, kill) raises NgspiceCrash in the caller for the
deck it was running, and is replaced; the caller and the other workers go on.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable

from .deck import Deck
from .errors import NgspiceCrash
from .result import SimResult


def _serve(conn, backend: str) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the caller's: it stops the pool
    from .runner import run
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        kind, payload = job
        try:
            if kind == "run":
                out = ("ok", run(payload, backend=backend))
            else:
                out = ("ok", payload())  # a callable: used by tests and diagnostics
        except BaseException as exc:  # noqa: BLE001 - everything goes back to the caller
            out = ("err", exc)
        conn.send(out)


class Worker:
    """One child process holding one ngspice."""

    def __init__(self, backend: str = "shared"):
        self.backend = backend
        self._stopped = False
        self._ctx = mp.get_context("spawn")
        self._lock = threading.Lock()
        self._start()

    def _start(self) -> None:
        self._conn, child = self._ctx.Pipe()
        self.process = self._ctx.Process(target=_serve, args=(child, self.backend), daemon=True)
        self.process.start()
        child.close()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _call(self, job, label: str):
        with self._lock:
            try:
                self._conn.send(job)
                status, value = self._conn.recv()
            except (EOFError, BrokenPipeError, ConnectionResetError):
                self.process.join(timeout=5)
                if self._stopped:
                    raise NgspiceCrash(label, "the worker was stopped") from None
                code = self.process.exitcode
                why = (f"signal {signal.Signals(-code).name}" if code is not None and code < 0
                       else f"exit code {code}")
                self._start()
                raise NgspiceCrash(label, f"the worker process running it died ({why}); "
                                   "a fresh worker replaced it") from None
        if status == "err":
            raise value
        return value

    def run(self, deck: Deck) -> SimResult:
        return self._call(("run", deck), str(deck.path))

    def call(self, fn, label: str = "call"):
        return self._call(("call", fn), label)

    def kill(self) -> None:
        """Stop at once (Ctrl-C): the run in flight is dropped, no worker replaces this one."""
        self._stopped = True
        self.process.kill()
        self.process.join(timeout=5)

    def close(self) -> None:
        if self._stopped:
            return
        try:
            self._conn.send(None)
        except (BrokenPipeError, OSError):
            pass
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()


class WorkerPool:
    """N workers; `map` keeps each busy and returns results (or exceptions) in order."""

    def __init__(self, n: int = 1, backend: str = "shared"):
        self.workers = [Worker(backend) for _ in range(max(1, n))]
        self._free: list[Worker] = list(self.workers)
        self._cv = threading.Condition()

    def _take(self) -> Worker:
        with self._cv:
            self._cv.wait_for(lambda: self._free)
            return self._free.pop()

    def _give(self, w: Worker) -> None:
        with self._cv:
            self._free.append(w)
            self._cv.notify()

    def run(self, deck: Deck) -> SimResult:
        w = self._take()
        try:
            return w.run(deck)
        finally:
            self._give(w)

    def call(self, fn, label: str = "call"):
        """Run a picklable callable on a free worker (a chunk of a sweep, for instance)."""
        w = self._take()
        try:
            return w.call(fn, label)
        finally:
            self._give(w)

    def map(self, decks: Iterable[Deck]) -> list[SimResult | Exception]:
        def one(d):
            try:
                return self.run(d)
            except Exception as exc:  # noqa: BLE001 - recorded per deck, the sweep goes on
                return exc
        with ThreadPoolExecutor(len(self.workers)) as ex:
            return list(ex.map(one, decks))

    def close(self) -> None:
        for w in self.workers:
            w.close()

    def kill(self) -> None:
        for w in self.workers:
            w.kill()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        # an error or Ctrl-C in the caller: stop the workers instead of waiting for them
        self.kill() if exc_type is not None else self.close()
