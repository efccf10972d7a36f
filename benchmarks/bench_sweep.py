"""`tables build` per-point cost against the floor, and 2 workers against 1, in one run.

Floor: the same deck and points swept inside one `ngspice -b` process by a `.control` loop
(alterparam + reset + run), which is the least any driver of ngspice can cost. Targets:
build <= 1.15x the floor; 2 workers >= 1.8x one worker on 2 cores.

    python benchmarks/bench_sweep.py [--vstore N] [--tpw N]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

from cimlut.characterize.spec import load_spec
from cimlut.characterize.sweep import build
from cimlut.circuits import CELLS
from cimlut.paths import link_models


def spec_text(vstore, tpw) -> str:
    return textwrap.dedent(f"""
        cell = "gaincell_2t"
        [tables.read]
        testbench = "read"
        corners = ["tt"]
        axes.vstore = {{ units = "V", values = {list(map(float, vstore))} }}
        axes.tpw = {{ units = "s", values = {list(map(float, tpw))} }}
        quantities.qread = {{ measure = "qread", units = "C" }}
        """)


def floor_seconds(vstore, tpw) -> float:
    tb = next(t for t in CELLS["gaincell_2t"].testbenches if t.name == "read")
    deck = tb.deck(temp=27.0)
    loop = [".control", "set num_threads=1",
            "foreach v " + " ".join(repr(float(v)) for v in vstore),
            "foreach t " + " ".join(repr(float(t)) for t in tpw),
            "alterparam vstore=$v", "alterparam tpw=$t", "reset", "run", "destroy all",
            "end", "end", "quit 0", ".endc"]
    with tempfile.TemporaryDirectory() as tmp:
        cir = Path(tmp) / "floor.cir"
        cir.write_text("\n".join(deck.render(loop)) + "\n")
        t = time.perf_counter()
        out = subprocess.run(["ngspice", "-b", str(cir)], capture_output=True, text=True,
                             env={**os.environ, "OMP_NUM_THREADS": "1"})
        dt = time.perf_counter() - t
    runs = out.stdout.count("qread")
    assert runs == len(vstore) * len(tpw), f"floor loop ran {runs} points"
    return dt


def build_seconds(vstore, tpw, jobs) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "tables.toml"
        p.write_text(spec_text(vstore, tpw))
        spec = load_spec(p)
        t = time.perf_counter()
        _, s = build(spec, Path(tmp) / "out", jobs=jobs, progress=False, log=lambda *_: None)
        dt = time.perf_counter() - t
    assert s.ok == len(vstore) * len(tpw) and s.cached == 0
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--vstore", type=int, default=40)
    ap.add_argument("--tpw", type=int, default=10)
    args = ap.parse_args()
    link_models()
    vstore = np.linspace(0.0, 0.9, args.vstore)
    tpw = np.linspace(1e-9, 15e-9, args.tpw)
    n = len(vstore) * len(tpw)
    floor = floor_seconds(vstore, tpw)
    one = build_seconds(vstore, tpw, 1)
    two = build_seconds(vstore, tpw, 2)
    print(f"{n} points of gaincell_2t.read, one corner")
    print(f"floor (one ngspice -b, .control loop) {floor / n * 1e3:7.2f} ms/pt  ({floor:.1f} s)")
    print(f"tables build, 1 worker               {one / n * 1e3:7.2f} ms/pt  ({one:.1f} s)  "
          f"= {one / floor:.2f}x the floor (target <= 1.15x)")
    print(f"tables build, 2 workers              {two / n * 1e3:7.2f} ms/pt  ({two:.1f} s)  "
          f"speed-up {one / two:.2f}x over 1 worker (target >= 1.8x)")


if __name__ == "__main__":
    main()
