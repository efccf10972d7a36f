"""Backend (b): a fresh `ngspice -b` process per run, read back through a binary rawfile."""

from __future__ import annotations

import functools
import os
import re
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from .deck import Deck
from .errors import NgspiceCrash, SimTimeout, SpiceError
from .outcome import build_result, raise_for_messages
from .rawfile import read_raw
from .sandbox import TIMEOUT_ENV, sim_timeout

from .result import SimResult

# digits after the point in printed .meas results: 6 (7 significant) as ngspice 39 printed
# them; 46 prints 5 by default, which rounds a carried state (program_verify's gap) and the
# measures the goldens compare at MEAS_RTOL 1e-6. 39 ignores the variable.
MEAS_PRECISION = 6


def ngspice_exe() -> str:
    exe = shutil.which("ngspice")
    if exe is None:
        raise SpiceError("ngspice", "the ngspice executable is not on PATH "
                         "(apt-get install ngspice, or `make setup`)")
    return exe


@functools.lru_cache(maxsize=None)
def ngspice_version() -> str:
    out = subprocess.run([ngspice_exe(), "-n", "-v"], capture_output=True, text=True).stdout
    m = re.search(r"ngspice-(\S+)", out)
    return m.group(1) if m else "unknown"


def run_batch(deck: Deck, timeout: float | None = None) -> SimResult:
    limit = sim_timeout() if timeout is None else timeout
    with tempfile.TemporaryDirectory(prefix="cimlut-") as tmp:
        raw = Path(tmp) / "out.raw"
        cir = Path(tmp) / f"{deck.name}.cir"
        control = [".control", "set num_threads=1", "set ng_nomodcheck", f"set measureprec={MEAS_PRECISION}",
                   "set filetype=binary", "run",
                   f"write {raw}", "quit 0", ".endc"]
        cir.write_text("\n".join(deck.render(control)) + "\n")
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        try:
            # -n: no .spiceinit (the sandbox module says why); Ctrl-C kills the child
            proc = subprocess.run([ngspice_exe(), "-b", "-n", str(cir)], cwd=deck.path.parent,
                                  capture_output=True, text=True, env=env, timeout=limit,
                                  errors="replace")
        except subprocess.TimeoutExpired:
            raise SimTimeout(str(deck.path), f"ngspice ran past the {limit:g} s time limit and "
                             f"was killed (raise it with --timeout or {TIMEOUT_ENV}=SECONDS)"
                             ) from None
        lines = (proc.stdout + proc.stderr).splitlines()
        if proc.returncode < 0:
            raise NgspiceCrash(str(deck.path), "ngspice died on signal "
                               f"{signal.Signals(-proc.returncode).name}", "\n".join(lines))
        plots = read_raw(raw) if raw.exists() else []
        produced = bool(plots) and plots[-1].data.shape[0] > 0
        raise_for_messages(deck, lines, produced)
        if proc.returncode != 0:
            raise NgspiceCrash(str(deck.path), f"ngspice exited with {proc.returncode}",
                               "\n".join(lines))
        plot = plots[-1]
        columns = [(n, t, plot.data[:, i].real.copy() if plot.data.dtype.kind != "c"
                    else plot.data[:, i].copy()) for i, (n, t) in enumerate(zip(plot.names, plot.types))]
        return build_result(deck, "subprocess", ngspice_version(), plot.plotname, columns, lines)
