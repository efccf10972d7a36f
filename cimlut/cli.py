"""`cimlut ...`: one command, subcommands that only call the Python API."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def _count(least: int):
    """An argparse type: an integer >= least."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"{value} is below the least useful value {least}")
        return value
    return parse


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive number of seconds")
    return value


def _timeout_arg(s) -> None:
    s.add_argument("--timeout", type=_seconds, metavar="S", help="seconds one simulation may "
                   "run before it is stopped (default 300; env CIMLUT_SIM_TIMEOUT)")


def _kv(items: list[str]) -> dict[str, float | str]:
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"cimlut: expected NAME=VALUE, got {item!r}")
        try:
            out[key] = float(value)
        except ValueError:
            out[key] = value
    return out


def _select(ids: list[str]):
    from .circuits import testbenches
    tbs = testbenches()
    if not ids:
        return tbs
    chosen = [tb for tb in tbs if tb.id in ids or tb.cell in ids]
    unknown = [i for i in ids if not any(i in (tb.id, tb.cell) for tb in tbs)]
    if unknown:
        raise SystemExit(f"cimlut: unknown testbench or cell {', '.join(unknown)}; "
                         f"known: {', '.join(tb.id for tb in tbs)}")
    return chosen


def cmd_setup(args) -> int:
    from .characterize.batch import ngspice_version
    from .paths import link_models
    link = link_models()
    print(f"sky130 models: {link} -> {link.resolve()}")
    print(f"ngspice: {ngspice_version()}")
    return 0


def cmd_cells(args) -> int:
    if args.action == "compare":
        return _cells_compare(args)
    if args.names:
        raise SystemExit("cimlut: `cells` lists every cell; names go with `cells compare`")
    from .circuits import CELLS
    for cell in CELLS.values():
        print(f"{cell.name}  ({cell.subckt} in {cell.path.name}) - {cell.doc}")
        print(f"  cite: {cell.cite}")
        print("  ports: " + ", ".join(p.name for p in cell.ports))
        for p in cell.params:
            print(f"  .param {p.name:10s} = {p.default:<10.4g} {p.unit:6s} {p.doc}")
        for tb in cell.testbenches:
            print(f"  testbench {tb.id}: {tb.file} - {tb.doc}")
    return 0


def _cells_compare(args) -> int:
    """K/V cells side by side from their tables: product vs stored value, INL, droop, read
    energy (cimlut.models.cellcompare); a table and one PNG."""
    from .models import cellcompare
    _threads(1)
    base = _hardware(args)
    names = args.names or ["gaincell_2t", "gaincell_pp"]
    figs = cellcompare.compare([base.replace(kv_cell=n) for n in names], args.tpw)
    print(cellcompare.report(figs, base, args.tpw))
    out = Path(args.out) / ("cells_compare_" + "_".join(names) + ".png")
    tpw = (args.tpw or base.t_max) * 1e9
    print(f"wrote {cellcompare.plot(figs, out, f'K/V cells at {base.corner}, {base.temperature:g} C, {tpw:g} ns pulse')}")
    return 0


def cmd_sim(args) -> int:
    from .characterize import run
    res = run(args.deck, backend=args.backend, params=_kv(args.set), corner=args.corner,
              temp=args.temp)
    print(f"{res.deck}  [{res.backend}, ngspice-{res.ngspice_version}, {res.plotname}, "
          f"{len(res.scale.values)} points]")
    for name, val in res.measures.items():
        print(f"  {name:20s} {val:.7g}")
    if args.json:
        Path(args.json).write_text(json.dumps({"deck": res.deck, "measures": res.measures},
                                              indent=2))
    return 0


def cmd_golden(args) -> int:
    from .characterize import golden
    tbs = _select(args.ids)
    if args.action == "update":
        for tb in tbs:
            g = golden.make_golden(tb, backend=args.backend)
            path = golden.write_golden(g, golden.golden_path(tb, args.dir))
            print(f"wrote {path}")
        return 0
    failed = 0
    for tb in tbs:
        report = golden.check_testbench(tb, backend=args.backend, directory=args.dir,
                                        params=_kv(args.set))
        print(report.format())
        failed += not report.passed
    print(f"golden check: {len(tbs) - failed} passed, {failed} failed")
    return 1 if failed else 0


def cmd_tables(args) -> int:
    from .paths import data_dir
    if args.action == "check":
        from .characterize.check import check_table, format_report, meets_target
        from .tablefile import open_h5
        where = Path(args.out) if args.out else data_dir() / "tables"
        if args.json:
            _writable(Path(args.json).parent)
        results, failed = {}, []
        for name in args.names or [p.stem for p in sorted(where.glob("*.h5"))]:
            cell, _, only = name.partition(".")
            path = where / f"{cell}.h5"
            if not path.exists():
                raise SystemExit(f"cimlut: no table file {path}; run `cimlut tables build {cell}`")
            with open_h5(path) as f:
                names = [only] if only else list(f)
            for t in names:
                rep = check_table(path, t, points=args.points, seed=args.seed, jobs=args.jobs,
                                  convergence=not args.no_convergence)
                results[f"{cell}.{t}"] = rep
                print(format_report(f"{cell}.{t}", rep))
                failed += [f"{cell}.{t}.{q}" + (" (step/4)" if block is not r else "")
                           for q, r in rep.items() if "why" not in r
                           for block in (r, r.get("convergence") or {})
                           if meets_target(block) is False]
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2))
        if failed:
            print(f"tables check: {len(failed)} below the target (RMS <= 0.5%, max <= 2%): "
                  f"{', '.join(failed)}")
        return 1 if failed else 0
    if args.action == "plot":
        from .characterize.plots import plot_tables
        where = Path(args.out) if args.out else data_dir() / "tables"
        dest = Path(args.plots)
        for name in args.names or [p.stem for p in sorted(where.glob("*.h5"))]:
            path = Path(name) if name.endswith(".h5") else where / f"{name}.h5"
            for p in plot_tables(path, dest):
                print(f"wrote {p}")
        return 0
    if args.action == "show":
        from .tablefile import describe
        for f in args.names:
            print(describe(Path(f)))
        return 0
    from .characterize.spec import load_spec, spec_path
    from .characterize.sweep import build
    from .circuits import CELLS
    from .characterize.sweep import check_size
    names = args.names or [c for c in CELLS if spec_path(c).exists()]
    out = _build_folder(args.out, args.shipped)
    specs = []
    for name in names:
        path = Path(name) if name.endswith(".toml") else spec_path(name) if name in CELLS else None
        if path is None:
            raise SystemExit(f"cimlut: unknown cell {name!r}; known: {', '.join(CELLS)}")
        specs.append(load_spec(path))  # every spec is checked before anything runs
    for spec in specs:
        check_size(spec, args.max_points, args.jobs)
    failed = 0
    for spec in specs:
        _, summary = build(spec, out, jobs=args.jobs, executor=args.executor,
                           scheduler=args.scheduler, progress=not args.quiet)
        failed += summary.failed
    return 1 if failed else 0


def _build_folder(out: str | None, shipped: bool) -> Path:
    """Where `tables build` writes: `--out`, else out/tables. The shipped tables are only
    replaced when asked by name (`--shipped`): a default never overwrites shipped data."""
    from .paths import data_dir
    ship = (data_dir() / "tables").resolve()
    if shipped:
        if out and Path(out).resolve() != ship:
            raise SystemExit("cimlut: give --shipped or --out, not both")
        return ship
    folder = Path(out or "out/tables")
    if folder.resolve() == ship:
        raise SystemExit(f"cimlut: --out {out} is the shipped table folder; rebuilding the "
                         "shipped tables is an explicit act: add --shipped (and drop --out)")
    return folder


def cmd_survey(args) -> int:
    from .characterize.survey import survey
    survey(Path(args.out), jobs=args.jobs)
    return 0


def _hardware(args):
    from .models.config import HardwareConfig
    cfg = HardwareConfig.load(args.config) if args.config else HardwareConfig()
    changes = {}
    for item in args.hw or []:
        key, sep, text = item.partition("=")
        if not sep:
            raise SystemExit(f"cimlut: expected KEY=VALUE, got {item!r}")
        changes[key] = HardwareConfig.parse(key, text)
    if args.analog:
        changes["analog"] = args.analog
    return cfg.replace(**changes) if changes else cfg


def _threads(n: int | None) -> None:
    import torch
    torch.set_num_threads(n or max(1, min(2, os.cpu_count() or 1)))


def cmd_run(args) -> int:
    from .models import evaluate
    _threads(args.threads)
    cfg = _hardware(args)
    out = Path(args.out)
    _writable(out)  # before minutes of model time, not after
    if args.json:
        _writable(Path(args.json).parent)
    report = evaluate.run(args.model, cfg, tokens=args.tokens, calibration=args.calibration,
                          decode_steps=args.decode, sentences=args.sentences,
                          progress=not args.quiet)
    print(evaluate.summary(report))
    if args.json:  # the numbers first: a plot that fails must not lose them
        Path(args.json).write_text(report.to_json())
        print(f"wrote {args.json}")
    for p in evaluate.plots(report, out):
        print(f"wrote {p}")
    return 0


def _writable(folder: Path) -> None:
    """Make `folder` and prove a file can be written there, or stop with the reason."""
    import tempfile
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".cimlut-probe-"):
            pass
    except OSError as exc:
        raise SystemExit(f"cimlut: cannot write to {folder}: {exc.strerror or exc}; "
                         f"choose another folder") from None


def cmd_calibrate(args) -> int:
    from .models import calibrate
    _threads(args.threads)
    cfg = _hardware(args)
    save = args.save or f"out/calibration/{Path(args.model).name}-{cfg.analog}.json"
    _writable(Path(save).parent)
    result = calibrate.run(args.model, cfg, save, tokens=args.tokens,
                           calib_tokens=args.calib_tokens, passes=args.passes,
                           progress=not args.quiet)
    print(calibrate.summary(result))
    return 0


def cmd_adapt(args) -> int:
    from .models import adapt
    _threads(args.threads)
    device = adapt.check_device(args.device)   # before the slow part
    cfg = _hardware(args)
    save = args.save or f"out/adapt/{Path(args.model).name}-{cfg.analog}-{cfg.attn_readout}.json"
    _writable(Path(save).parent)
    result = adapt.run(args.model, cfg, save, tokens=args.tokens, train_tokens=args.train_tokens,
                       val_tokens=args.val_tokens, steps=args.steps, progress=not args.quiet,
                       device=device, method=args.method)
    print(adapt.summary(result))
    return 0


def cmd_readouts(args) -> int:
    from .models import compare
    _threads(args.threads)
    cfg = _hardware(args)
    names = args.readouts.split(",") if args.readouts else None
    lines = compare.compare(args.model, cfg, names, tokens=args.tokens, sentences=args.sentences,
                            progress=not args.quiet)
    print(compare.format_lines(lines, cfg))
    return 0


def cmd_arrays(args) -> int:
    from .characterize import arrays
    cfg = _hardware(args)
    _writable(Path(args.json).resolve().parent)
    plot = args.plot or str(Path(args.json).with_suffix(".png"))
    report = arrays.check_tile(args.rows, args.cols, args.wire, args.wire_col, config=cfg,
                               weights=args.weights, layer=args.layer, vectors=args.vectors,
                               seed=args.seed, clamp_gain=args.clamp_gain,
                               clamp_rf=args.clamp_rf, model_wire_scale=args.model_wire_scale,
                               workdir=args.keep, progress=not args.quiet)
    arrays.write_report(report, args.json, plot)
    print(arrays.summary(report))
    print(f"wrote {args.json}\nwrote {plot}")
    return 0 if report["ok"] else 1


def _ohms(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (value >= 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a resistance >= 0 ohm")
    return value


def cmd_hardware(args) -> int:
    print(_hardware(args).describe())
    return 0


def _hardware_args(s) -> None:
    s.add_argument("--config", help="hardware config (TOML or JSON; keys as `cimlut hardware`)")
    s.add_argument("--set", dest="hw", action="append", metavar="KEY=VALUE",
                   help="override one hardware config key")
    s.add_argument("--analog", choices=("linear", "attention", "both", "none"))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cimlut", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("setup", help="link the sky130 models for the decks; check ngspice")
    s.set_defaults(fn=cmd_setup)

    s = sub.add_parser("cells", help="list the cells, their ports, parameters and testbenches; "
                       "compare K/V cells from their tables")
    s.add_argument("action", nargs="?", default="list", choices=("list", "compare"))
    s.add_argument("names", nargs="*", help="compare: K/V cells (default gaincell_2t "
                   "gaincell_pp), each read from <tables_dir>/<name>.h5")
    s.add_argument("--tpw", type=_seconds, help="compare: read pulse width, s (default t_max)")
    s.add_argument("--out", default="out/cells", help="compare: folder for the PNG")
    _hardware_args(s)
    s.set_defaults(fn=cmd_cells)

    s = sub.add_parser("sim", help="simulate one deck and print its .meas results")
    s.add_argument("deck")
    s.add_argument("--backend", default="shared", choices=("shared", "subprocess"))
    s.add_argument("--set", action="append", metavar="NAME=VALUE", help="override a .param")
    s.add_argument("--corner", choices=("tt", "ff", "ss", "sf", "fs"))
    s.add_argument("--temp", type=float, help="circuit temperature, degC")
    s.add_argument("--json")
    _timeout_arg(s)
    s.set_defaults(fn=cmd_sim)

    s = sub.add_parser("golden", help="check against or regenerate golden waveforms")
    s.add_argument("action", choices=("check", "update"))
    s.add_argument("ids", nargs="*", help="testbench ids or cell names (default: all)")
    s.add_argument("--backend", default="shared", choices=("shared", "subprocess"))
    s.add_argument("--dir", type=Path, help="golden folder (default: the shipped data/golden)")
    s.add_argument("--set", action="append", metavar="NAME=VALUE",
                   help="check with a .param changed (shows what a device change does)")
    _timeout_arg(s)
    s.set_defaults(fn=cmd_golden)

    s = sub.add_parser("tables", help="build device tables from sweep specs, or show a table file")
    s.add_argument("action", choices=("build", "show", "check", "plot"))
    s.add_argument("names", nargs="*", help="build: cells or spec files (default: every cell "
                   "with a tables.toml); show: table files")
    s.add_argument("--jobs", type=_count(1), default=2, help="worker processes (one ngspice each)")
    s.add_argument("--executor", default="local", choices=("local", "dask"))
    s.add_argument("--scheduler", help="dask scheduler address, e.g. tcp://host:8786")
    s.add_argument("--out", help="build: folder for the tables and their point cache "
                   "(default out/tables); check/plot: where to read them (default: the "
                   "shipped data/tables)")
    s.add_argument("--shipped", action="store_true", help="build: replace the shipped tables "
                   "in data/tables (an explicit act; never the default)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.add_argument("--points", type=_count(1), default=20, help="check: random off-grid points")
    s.add_argument("--seed", type=int, default=0, help="check: random seed")
    s.add_argument("--json", help="check: write the figures to this file")
    s.add_argument("--no-convergence", action="store_true", help="check: skip the re-runs at "
                   "a 4x finer step and reltol/10 (the convergence block)")
    s.add_argument("--plots", default="out/tables", help="plot: folder for the PNGs")
    s.add_argument("--max-points", type=_count(1), default=None, metavar="N",
                   help="build: refuse a spec with more points than this (default 200000)")
    _timeout_arg(s)
    s.set_defaults(fn=cmd_tables)

    s = sub.add_parser("survey", help="simulate every testbench; write a summary and plots")
    s.add_argument("--out", default="out/survey")
    s.add_argument("--jobs", type=_count(1), default=2)
    _timeout_arg(s)
    s.set_defaults(fn=cmd_survey)

    s = sub.add_parser("hardware", help="print the hardware config with units and sources")
    _hardware_args(s)
    s.set_defaults(fn=cmd_hardware)

    s = sub.add_parser("run", help="a real model on the characterized devices: quality vs "
                       "digital, energy and latency per token")
    s.add_argument("--model", default="smollm2", help="smollm2, minilm, or a Hugging Face folder")
    _hardware_args(s)
    s.add_argument("--tokens", type=_count(2), default=1024, help="evaluation tokens "
                   "(language models; perplexity needs at least 2)")
    s.add_argument("--sentences", type=_count(1), default=32, help="evaluation sentences (MiniLM)")
    s.add_argument("--decode", type=_count(0), default=4, help="decode steps with the KV cache")
    s.add_argument("--calibration", help="scalers saved by `cimlut calibrate`")
    s.add_argument("--json", help="write the report here")
    s.add_argument("--out", default="out/run", help="folder for the PNG plots")
    s.add_argument("--threads", type=_count(1), help="torch threads (default: up to 2)")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(fn=cmd_run)

    s = sub.add_parser("calibrate", help="fit per-layer, per-head affine scalers (Leroux et al.) "
                       "and save them for `run --calibration`")
    s.add_argument("--model", default="smollm2")
    _hardware_args(s)
    s.add_argument("--save", help="where to write the scalers (default: "
                   "out/calibration/MODEL-ANALOG.json)")
    s.add_argument("--tokens", type=_count(2), default=512, help="evaluation tokens, before and "
                   "after (MiniLM: tokens/32 sentences)")
    s.add_argument("--calib-tokens", type=_count(2), default=256,
                   help="held-out calibration tokens")
    s.add_argument("--passes", type=_count(1), default=3)
    s.add_argument("--threads", type=_count(1))
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(fn=cmd_calibrate)

    s = sub.add_parser("adapt", help="layer-wise adaptation of analog attention: per-head "
                       "score gain/bias (or temperature) and output scale/bias trained on "
                       "held-out tokens to match the digital attention; saved for "
                       "`run --calibration`")
    s.add_argument("--model", default="smollm2", help="smollm2 or a Hugging Face folder (causal LM)")
    _hardware_args(s)
    s.add_argument("--save", help="where to write the state (default: "
                   "out/adapt/MODEL-ANALOG-READOUT.json)")
    s.add_argument("--tokens", type=_count(2), default=1024, help="evaluation tokens, before and after")
    s.add_argument("--train-tokens", type=_count(2), default=512,
                   help="held-out training tokens (after the evaluation text)")
    s.add_argument("--val-tokens", type=_count(2), default=256,
                   help="held-out validation tokens (after the training tokens)")
    s.add_argument("--steps", type=_count(1), default=100, help="optimizer steps per layer")
    s.add_argument("--device", default="cpu", help="where the per-layer training runs: cpu "
                   "or cuda (the model and its tables stay on the CPU)")
    s.add_argument("--method", default="layerwise", choices=("layerwise", "sequential"),
                   help="layerwise: each layer on the digital model's inputs; sequential: on "
                   "the inputs of the analog layers below it, already adapted (BRECQ's order)")
    s.add_argument("--threads", type=_count(1))
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(fn=cmd_adapt)

    s = sub.add_parser("arrays", help="crossbar tiles as circuits: `arrays check` simulates "
                       "a programmed tile in SPICE and compares the behavioural tile")
    asub = s.add_subparsers(dest="action", required=True)
    s = asub.add_parser("check", help="SPICE of a whole tile vs the behavioural tile, per column")
    s.add_argument("--rows", type=_count(1), required=True)
    s.add_argument("--cols", type=_count(2), required=True, help="physical columns (even: "
                   "differential pairs)")
    s.add_argument("--wire", type=_ohms, default=0.0, metavar="OHMS",
                   help="wire resistance per cell segment, rows (and columns unless --wire-col)")
    s.add_argument("--wire-col", type=_ohms, metavar="OHMS", help="column wire per segment")
    s.add_argument("--clamp-gain", type=_ohms, default=0.0, metavar="A",
                   help="finite-gain readout clamp: open-loop gain (0 = ideal virtual ground)")
    s.add_argument("--clamp-rf", type=_ohms, default=0.0, metavar="OHMS",
                   help="finite-gain clamp: feedback resistance")
    s.add_argument("--weights", choices=("smollm2", "random"), default="smollm2",
                   help="a slice of a SmolLM2 layer (default) or seeded random weights")
    s.add_argument("--layer", default="model.layers.0.self_attn.q_proj")
    s.add_argument("--vectors", type=_count(1), default=16, help="input vectors (rows at "
                   "v_read or 0 V; the first all on)")
    s.add_argument("--seed", type=_count(0), default=0)
    s.add_argument("--model-wire-scale", type=_ohms, default=1.0, metavar="X",
                   help="scale the wires the behavioural model assumes (a check of the check)")
    s.add_argument("--json", required=True, help="report: top-level rms_fs, max_lsb, ok")
    s.add_argument("--plot", help="PNG (default: beside the JSON)")
    s.add_argument("--keep", metavar="DIR", help="keep the generated decks here")
    _hardware_args(s)
    _timeout_arg(s)
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(fn=cmd_arrays)

    s = sub.add_parser("readouts", help="one line per attention readout on the same model and "
                       "hardware: quality and attention energy per token per head")
    s.add_argument("--model", default="smollm2", help="smollm2, minilm, or a Hugging Face folder")
    _hardware_args(s)
    s.add_argument("--readouts", help="comma-separated (default: every registered readout)")
    s.add_argument("--tokens", type=_count(2), default=1024, help="evaluation tokens (language models)")
    s.add_argument("--sentences", type=_count(1), default=32, help="evaluation sentences (MiniLM)")
    s.add_argument("--threads", type=_count(1), help="torch threads (default: up to 2)")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(fn=cmd_readouts)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .errors import CimlutError
    try:
        if getattr(args, "timeout", None) is not None:
            from .characterize.sandbox import set_sim_timeout
            set_sim_timeout(args.timeout)
        return args.fn(args)
    except CimlutError as exc:
        print(f"cimlut: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a folder that cannot be written, a disk that is full
        print(f"cimlut: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cimlut: interrupted (finished work is kept: a table build resumes from its "
              "cache)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
