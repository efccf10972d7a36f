"""Wire parasitics: effective-matrix time per tile, and crossbar conversion with wires
against without, measured side by side in one run (compare ratios: these machines are noisy).

Target: <= 50 ms per 128x128 tile on one CPU thread (SmolLM2-135M has ~14k tiles of
128 rows x 64 outputs). "linearised" is the matrix the crossbar converts with: each cell's
voltage with every row on (a walk that keeps the T_j), its chord conductance there from
the read table, and the matrix of those (two solves). The conversion lines convert `--layers` of SmolLM2's blocks (all
seven linear layers each, every tile) with wires at 1 ohm per segment and without; the
whole-model estimate scales by the tile count.

    python benchmarks/bench_parasitics.py [--rows 128] [--tiles 16] [--layers 2] [--repeat 3]
                                          [--threads 1] [--no-model]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch


def interleaved(fns: dict, repeat: int) -> dict:
    """Median (wall, CPU) seconds of each function, run in turns. With one thread the CPU
    time is the work done, whatever else the machine runs; wall time shows the load."""
    times = {k: [] for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            times[k].append((time.perf_counter() - t0, time.process_time() - c0))
    return {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v))
            for k, v in times.items()}


def bench_tiles(rows: int, tiles: int, repeat: int) -> None:
    from cimlut.models.config import HardwareConfig
    from cimlut.models.parasitics import effective_conductance
    from cimlut.models.rram import RramDevice
    gen = torch.Generator().manual_seed(0)
    g = 6.5e-6 + 7.25e-5 * torch.rand(tiles, rows, rows, generator=gen, dtype=torch.float64)
    dev = RramDevice(HardwareConfig())
    dev.chord_conductance(g[:1, :1, :1], 0.2)                 # its grid, made once

    def chord(gg, u):
        return dev.chord_conductance(gg, u * dev.v_read)

    fns = {f"{rows}x{rows} wires 1/1 ohm": lambda: effective_conductance(g, 1.0, 1.0),
           f"{rows}x{rows} wires 2/2 ohm": lambda: effective_conductance(g, 2.0, 2.0),
           f"{rows}x{rows} column only": lambda: effective_conductance(g, 0.0, 1.0),
           f"{rows}x{rows} 1/1, linearised": lambda: effective_conductance(g, 1.0, 1.0, chord=chord)}
    res = interleaved(fns, repeat)
    print(f"effective matrix, {tiles} tiles of {rows}x{rows} cells, batched, "
          f"{torch.get_num_threads()} thread(s):")
    for k, (s, c) in res.items():
        print(f"  {k:30s} {s / tiles * 1e3:8.1f} ms/tile wall {c / tiles * 1e3:8.1f} ms/tile CPU"
              f"   {c / tiles / 0.05:5.2f}x target (50 ms, CPU)")


def bench_conversion(layers: int, repeat: int) -> None:
    from cimlut.models import zoo
    from cimlut.models.config import HardwareConfig
    from cimlut.models.convert import ARCHITECTURES, as_linear
    from cimlut.models.crossbar import CrossbarLinear
    from cimlut.models.rram import RramDevice
    lm = zoo.load("smollm2")
    arch = ARCHITECTURES["llama"]
    blocks = lm.model.model.layers
    linears = []
    for i in range(min(layers, len(blocks))):
        for name in arch["linears"]:
            mod = blocks[i]
            for part in name.split("."):
                mod = getattr(mod, part)
            linears.append((f"model.layers.{i}.{name}", as_linear(mod)))
    plain = HardwareConfig()
    wired = plain.replace(wire_row=1.0, wire_col=1.0)
    devices = {"without wires": (plain, RramDevice(plain)), "wires 1/1 ohm": (wired, RramDevice(wired))}

    def convert(cfg, dev):
        for name, lin in linears:
            CrossbarLinear.from_linear(lin, cfg, dev, name=name)

    fns = {k: (lambda c=c, d=d: convert(c, d)) for k, (c, d) in devices.items()}
    res = interleaved(fns, repeat)
    half = plain.tile_cols // 2
    tiles = sum(math.ceil(l.in_features / plain.tile_rows) * math.ceil(l.out_features / half)
                for _, l in linears)
    total = 0
    for blk in blocks:
        for name in arch["linears"]:
            mod = blk
            for part in name.split("."):
                mod = getattr(mod, part)
            lin = as_linear(mod)
            total += math.ceil(lin.in_features / plain.tile_rows) * math.ceil(lin.out_features / half)
    print(f"\nSmolLM2 conversion of {len(linears)} linear layers ({layers} blocks, {tiles} tiles "
          f"of {plain.tile_rows}x{plain.tile_cols}), {torch.get_num_threads()} thread(s):")
    base = res["without wires"][1]
    for k, (s, c) in res.items():
        print(f"  {k:28s} {s:8.2f} s wall {c:8.2f} s CPU   {c / base:5.2f}x without (CPU)   "
              f"{(c - base) / tiles * 1e3:6.1f} ms/tile CPU for the wires")
    print(f"  whole model ({total} tiles) estimate, CPU: "
          f"{res['without wires'][1] / tiles * total:7.0f} s without, "
          f"{res['wires 1/1 ohm'][1] / tiles * total:7.0f} s with wires")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=128)
    ap.add_argument("--tiles", type=int, default=16)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-model", action="store_true", help="skip the SmolLM2 conversion")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    bench_tiles(args.rows, args.tiles, args.repeat)
    if not args.no_model:
        bench_conversion(args.layers, args.repeat)


if __name__ == "__main__":
    main()
