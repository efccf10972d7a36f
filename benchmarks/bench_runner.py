"""Runner cost per point: in-process vs `ngspice -b`, and 2 workers vs 1, in one run.

Ratios are measured side by side because these machines are noisy; absolute times are
printed for context only.

    python benchmarks/bench_runner.py [--points N]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from cimlut.characterize import Deck, WorkerPool, run
from cimlut.paths import link_models

ROOT = Path(__file__).resolve().parents[1]
DECKS = {"rc (no models)": ROOT / "tests" / "decks" / "rc_tran.cir",
         "nfet sky130": ROOT / "tests" / "decks" / "nfet_dc.cir"}


def per_point(fn, decks) -> float:
    t = time.perf_counter()
    for d in decks:
        fn(d)
    return (time.perf_counter() - t) / len(decks)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--points", type=int, default=8)
    args = ap.parse_args()
    link_models()
    for label, path in DECKS.items():
        pname = "r" if "rc" in label else "vg"
        base = 1e3 if "rc" in label else 1.8
        decks = [Deck(path).with_(params={pname: base * (1 - 0.02 * i)})
                 for i in range(args.points)]
        run(decks[0], backend="shared")  # load the library once
        rows = []
        for rep in range(3):
            shared = per_point(lambda d: run(d, backend="shared"), decks)
            sub = per_point(lambda d: run(d, backend="subprocess"), decks)
            rows.append((shared, sub))
        shared = statistics.median(r[0] for r in rows)
        sub = statistics.median(r[1] for r in rows)
        print(f"{label:16s} in-process {shared * 1e3:8.1f} ms/pt   ngspice -b {sub * 1e3:8.1f} "
              f"ms/pt   subprocess/in-process = {sub / shared:5.2f}x")
        with WorkerPool(1) as p1, WorkerPool(2) as p2:
            p1.map(decks[:1]), p2.map(decks[:2])  # warm
            t1 = time.perf_counter(); p1.map(decks); t1 = time.perf_counter() - t1
            t2 = time.perf_counter(); p2.map(decks); t2 = time.perf_counter() - t2
        print(f"{label:16s} 1 worker {t1 / len(decks) * 1e3:8.1f} ms/pt   2 workers "
              f"{t2 / len(decks) * 1e3:8.1f} ms/pt   speed-up = {t1 / t2:5.2f}x")


if __name__ == "__main__":
    main()
