"""What every ngspice the package starts runs under: no init files, a time limit, Ctrl-C.

ngspice executes `.spiceinit` (from the working folder and from $HOME) when it starts: such
a file is code, and a deck folder or a checkout is data. The executable is started with
`-n`; the shared library, which has no such switch, is started in an empty folder with
$HOME pointed there. Every run has a time limit (`CIMLUT_SIM_TIMEOUT` seconds, set by the
CLI's --timeout; worker processes inherit it), so a deck that runs away cannot hang a
sweep, and Ctrl-C stops a run cleanly in either backend.
"""

from __future__ import annotations

import os
import signal
import tempfile
import threading
from contextlib import contextmanager

TIMEOUT_ENV = "CIMLUT_SIM_TIMEOUT"
# The slowest shipped testbench point takes a few seconds (the 2 ms hold at reltol/10 for
# golden calibration); five minutes is far beyond any of them and bounds a runaway deck.
DEFAULT_TIMEOUT = 300.0


def sim_timeout() -> float:
    """Seconds one simulation may run."""
    text = os.environ.get(TIMEOUT_ENV, "")
    if not text:
        return DEFAULT_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise ValueError(f"{TIMEOUT_ENV}={text!r}: expected a positive number of seconds")
    return value


def set_sim_timeout(seconds: float) -> None:
    if not seconds > 0:
        raise ValueError(f"--timeout {seconds!r}: expected a positive number of seconds")
    os.environ[TIMEOUT_ENV] = repr(float(seconds))


@contextmanager
def no_init_files():
    """Start the shared library in an empty folder with $HOME there: it finds no
    `.spiceinit` to run. The working folder and $HOME are restored afterwards."""
    cwd, home = os.getcwd(), os.environ.get("HOME")
    with tempfile.TemporaryDirectory(prefix="cimlut-ngspice-") as empty:
        os.chdir(empty)
        os.environ["HOME"] = empty
        try:
            yield
        finally:
            os.chdir(cwd)
            if home is None:
                os.environ.pop("HOME", None)
            else:
                os.environ["HOME"] = home


def restore_sigint() -> None:
    """ngspice installs its own SIGINT handler when the library starts; give Ctrl-C back
    to Python (a KeyboardInterrupt, which the runner turns into a halted run)."""
    if threading.current_thread() is threading.main_thread():
        handler = signal.getsignal(signal.SIGINT)  # what Python set (ngspice bypassed it)
        signal.signal(signal.SIGINT, signal.default_int_handler if handler is None else handler)
