"""Analog vs digital forward time on the same model and tokens, and table lookups per second,
measured side by side in one run (these machines are noisy: compare ratios, not seconds).

Targets: analog forward <= 2x digital on CPU (`both`), analog attention with the default
readout <= 1.5x (`attention`); one decode step with the KV cache at `--keys` keys (the
`decode` lines, encode-once gain-cell attention vs SDPA) <= 3x digital; >= 100 M lookups/s
for a 3-axis table on one thread (gaincell_2t.read: temperature, stored voltage, pulse width).

    python benchmarks/bench_model.py [--model smollm2] [--tokens 512] [--repeat 3] [--threads 1]
                                     [--keys 1024] [--lookups-only] [--decode-only]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from cimlut.models import zoo
from cimlut.models.calibrate import calibrate_ranges
from cimlut.models.config import HardwareConfig
from cimlut.models.convert import convert
from cimlut.models.evaluate import token_ids
from cimlut.models.table import Table
from cimlut.paths import data_dir


def interleaved(fns: dict, repeat: int) -> dict:
    """Median seconds of each function, run in turns so that load drifts hit all alike."""
    times = {k: [] for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def bench_lookups(n: int, repeat: int) -> None:
    t = Table.load(data_dir() / "tables" / "gaincell_2t.h5", "read", "tt")
    g = torch.Generator().manual_seed(0)
    temp = torch.rand(n, generator=g) * 85
    vs = torch.rand(n, generator=g) * 0.9
    tpw = 1e-9 + torch.rand(n, generator=g) * 14e-9
    ref = t("qread", temperature=temp[:100_000], vstore=vs[:100_000], tpw=tpw[:100_000])
    fns = {}
    for name, kw in (("eager float64 (Table.__call__)", None),
                     ("compiled float32", dict(dtype=torch.float32)),
                     ("compiled float64 index", dict(dtype=torch.float64))):
        if kw is None:
            fns[name] = lambda: t("qread", temperature=temp, vstore=vs, tpw=tpw)
            continue
        f = t.interpolator("qread", **kw)
        y = f(temp, vs, tpw)  # compile outside the timing
        err = float(((y[:100_000] - ref).abs() / ref.abs().clamp_min(1e-17)).max())
        print(f"  {name:32s} max rel. error vs float64 path {err:.2e}")
        fns[name] = lambda f=f: f(temp, vs, tpw)
    res = interleaved(fns, repeat)
    for k, s in res.items():
        print(f"  {k:32s} {n / s / 1e6:8.1f} M lookups/s")


def bench_decode(lm, held, args) -> None:
    """One greedy-decode step with the KV cache at up to `keys` keys: digital (SDPA) against
    analog attention with the default readout. Both prefill keys - repeat - 1 tokens, then
    step through the next real tokens in turns (each step a new token: nothing is replayed)."""
    ids = token_ids(lm.tokenizer, args.keys)
    n_steps = args.repeat + 1                          # the first step is a warm-up
    t0 = args.keys - n_steps
    cfg = HardwareConfig(analog="attention")
    analog, conv = convert(lm.model, cfg)
    with conv.ledger.paused():
        calibrate_ranges(analog, conv, held)
    state = {}
    for name, m in (("digital", lm.model), ("attention", analog)):
        with torch.no_grad():
            out = m(ids[:, :t0], use_cache=True)
        state[name] = {"model": m, "cache": out.past_key_values, "t": t0}

    def step(name):
        s = state[name]
        with torch.no_grad():
            out = s["model"](ids[:, s["t"]:s["t"] + 1], cache=s["cache"], use_cache=True)
        s["cache"], s["t"] = out.past_key_values, s["t"] + 1

    for name in state:
        step(name)                                     # warm-up
    res = interleaved({"decode digital": lambda: step("digital"),
                       "decode attention": lambda: step("attention")}, args.repeat)
    print(f"\n{args.model} decode step, {t0 + 2}..{args.keys} keys, {args.threads} thread(s), "
          f"median of {args.repeat} interleaved steps (readout {cfg.attn_readout}):")
    for k, s in res.items():
        print(f"  {k:28s} {s:8.3f} s   {s / res['decode digital']:5.2f}x digital")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--tokens", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--lookups", type=int, default=4_000_000)
    ap.add_argument("--lookups-only", action="store_true", help="skip the model forward passes")
    ap.add_argument("--keys", type=int, default=1024, help="decode: keys in the cache at the "
                    "last timed step")
    ap.add_argument("--decode-only", action="store_true", help="only the decode lines")
    ap.add_argument("--only", help="comma-separated forward lines to run besides digital "
                    "(e.g. attention,attention/hardsigmoid); default: all")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    if not args.decode_only:
        print(f"table lookups, 3-axis gaincell_2t.read, {args.lookups:,} random points, 1 thread:")
        torch.set_num_threads(1)
        bench_lookups(args.lookups, args.repeat)
    if args.lookups_only:
        return
    torch.set_num_threads(args.threads)

    lm = zoo.load(args.model)
    held = token_ids(lm.tokenizer, 128, offset=max(args.tokens, args.keys))
    if lm.task == "causal-lm":
        bench_decode(lm, held, args)
    if args.decode_only:
        return
    ids = token_ids(lm.tokenizer, args.tokens)
    models = {"digital": lm.model}
    lines = {f"{a}/{e}": dict(analog=a, input_encoding=e)
             for a in ("linear", "both") for e in ("pulse_width", "bit_serial")}
    lines["attention"] = dict(analog="attention")                     # the default readout
    for ro in ("hardsigmoid", "hardsigmoid_norm"):
        lines[f"attention/{ro}"] = dict(analog="attention", attn_readout=ro)
    only = args.only.split(",") if args.only else list(lines)
    unknown = [k for k in only if k not in lines]
    if unknown:
        raise SystemExit(f"bench_model: unknown line(s) {', '.join(unknown)}; known: {', '.join(lines)}")
    for name in sorted(only, key=list(lines).index):
        m, conv = convert(lm.model, HardwareConfig(**lines[name]))
        with conv.ledger.paused():
            calibrate_ranges(m, conv, held)
        models[name] = m
    fns = {}
    for k, m in models.items():
        def fwd(m=m):
            with torch.no_grad():
                m(ids)
        fwd()  # warm-up
        fns[k] = fwd
    res = interleaved(fns, args.repeat)
    print(f"\n{args.model} forward, {args.tokens} tokens, {args.threads} thread(s), "
          f"median of {args.repeat} interleaved runs:")
    for k, s in res.items():
        print(f"  {k:28s} {s:8.3f} s   {s / res['digital']:5.2f}x digital")


if __name__ == "__main__":
    main()
