"""Simulate every testbench once and show what the circuits do: a summary and PNG plots.

This is `make demo` until the transformer simulator exists.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from .workers import WorkerPool


def survey(out: Path, jobs: int = 2, log=print) -> dict:
    import matplotlib
    matplotlib.use("Agg")
    from ..circuits import testbenches

    out.mkdir(parents=True, exist_ok=True)
    tbs = testbenches()
    decks = [tb.deck() for tb in tbs]
    sweeps = [(tb, v, tb.deck(params={tb.transfer[0]: v}))
              for tb in tbs if tb.transfer for v in tb.transfer[1]]
    t0 = time.perf_counter()
    with WorkerPool(jobs) as pool:
        results = pool.map(decks + [d for _, _, d in sweeps])
    wall = time.perf_counter() - t0
    main, swept = results[: len(decks)], results[len(decks):]

    summary = {"wall_s": round(wall, 2), "testbenches": {}}
    for tb, res in zip(tbs, main):
        entry = summary["testbenches"][tb.id] = {"deck": str(tb.path), "doc": tb.doc}
        if isinstance(res, Exception):
            entry["error"] = f"{type(res).__name__}: {res}"
            continue
        units = {m.name: m.unit for m in tb.measures}
        entry["ngspice"] = res.ngspice_version
        entry["measures"] = {k: {"value": v, "unit": units.get(k, "")}
                             for k, v in res.measures.items()}
        entry["plot"] = _plot_signals(tb, res, out)
        if tb.xy:
            entry["xy_plot"] = _plot_xy(tb, res, out)
    for tb in {id(t): t for t, _, _ in sweeps}.values():
        pts = [(v, r) for (t, v, _), r in zip(sweeps, swept) if t is tb]
        entry = summary["testbenches"][tb.id]
        param, _, measure = tb.transfer
        units = {m.name: m.unit for m in tb.measures} | {p.name: p.unit for p in tb.params}
        entry["transfer"] = {"param": param, "measure": measure, "param_unit": units.get(param, ""),
                             "measure_unit": units.get(measure, ""),
                             "points": [[v, None if isinstance(r, Exception)
                                         else r.measures.get(measure, math.nan)] for v, r in pts]}
        entry["transfer_plot"] = _plot_transfer(tb, entry["transfer"]["points"], out)

    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    text = _format(summary)
    (out / "summary.txt").write_text(text + "\n")
    log(text)
    log(f"\nwrote {out}/summary.json, summary.txt and "
        f"{len(list(out.glob('*.png')))} PNG plots")
    return summary


def _format(summary: dict) -> str:
    rows = [f"cimlut survey: every testbench simulated once ({summary['wall_s']} s)", ""]
    for tid, e in summary["testbenches"].items():
        rows.append(f"{tid}  - {e['doc']}")
        if "error" in e:
            rows.append(f"    ERROR {e['error']}")
            continue
        for name, m in e["measures"].items():
            rows.append(f"    {name:18s} {_eng(m['value'], m['unit'])}")
        if "transfer" in e:
            tr = e["transfer"]
            pts = ", ".join(f"{_eng(v, tr['param_unit'])} -> {_eng(y, tr['measure_unit'])}"
                            for v, y in tr["points"] if y is not None)
            rows.append(f"    transfer {tr['measure']} vs {tr['param']}: {pts}")
    return "\n".join(rows)


_SI = {"", "V", "A", "s", "J", "C", "F", "S", "W", "Hz", "ohm"}


def _eng(value, unit: str) -> str:
    """Engineering notation for SI units ('7.925 ns'); other units as plain numbers."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "failed"
    if unit not in _SI:
        return f"{value:.4g} {unit}"
    prefixes = [(1e-21, "z"), (1e-18, "a"), (1e-15, "f"), (1e-12, "p"), (1e-9, "n"),
                (1e-6, "u"), (1e-3, "m"), (1, "")]
    a = abs(value)
    for scale, p in reversed(prefixes):
        if a >= scale:
            return f"{value / scale:.4g} {p}{unit}".rstrip()
    return f"{value:.4g} {unit}".rstrip()


def _label(ax, axis: str, text: str, unit: str) -> None:
    """Label an axis; SI units get engineering ticks (ns, uA) instead of 1e-9 offsets."""
    from matplotlib.ticker import EngFormatter
    target = ax.xaxis if axis == "x" else ax.yaxis
    if unit in _SI and unit:
        target.set_major_formatter(EngFormatter(unit=unit))
        target.set_label_text(text)
    else:
        target.set_label_text(f"{text} [{unit}]" if unit else text)


def _save(fig, path: Path) -> str:
    import matplotlib.pyplot as plt
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def _plot_signals(tb, res, out: Path) -> str:
    import matplotlib.pyplot as plt
    sigs = [s for s in tb.signals if s.name in res.vectors]
    fig, axes = plt.subplots(len(sigs), 1, figsize=(7, 1.9 * len(sigs) + 0.6), sharex=True,
                             squeeze=False)
    x = res.scale
    for ax, s in zip(axes[:, 0], sigs):
        ax.plot(x.values.real, res[s.name].real, lw=1.2)
        _label(ax, "y", s.label, s.unit)
        ax.yaxis.label.set_fontsize(8)
        ax.grid(alpha=0.3)
    _label(axes[-1, 0], "x", x.name, x.unit)
    fig.suptitle(f"{tb.id}: {tb.doc}", fontsize=9)
    return _save(fig, out / f"{tb.id}.png")


def _plot_xy(tb, res, out: Path) -> str:
    import matplotlib.pyplot as plt
    xs, ys = tb.xy
    sig = {s.name: s for s in tb.signals}
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    ax.plot(res[xs].real, res[ys].real, lw=1.2)
    _label(ax, "x", sig[xs].label, sig[xs].unit)
    _label(ax, "y", sig[ys].label, sig[ys].unit)
    ax.grid(alpha=0.3)
    ax.set_title(f"{tb.id}: {sig[ys].label} vs {sig[xs].label}", fontsize=9)
    return _save(fig, out / f"{tb.id}.xy.png")


def _plot_transfer(tb, points, out: Path) -> str:
    import matplotlib.pyplot as plt
    param, _, measure = tb.transfer
    units = {m.name: m.unit for m in tb.measures}
    punit = {p.name: p.unit for p in tb.params}
    good = [(v, y) for v, y in points if y is not None and not math.isnan(y)]
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    ys = [y for _, y in good]
    ax.plot([v for v, _ in good], ys, "o-", ms=3)
    _label(ax, "x", param, punit.get(param, ""))
    _label(ax, "y", measure, units.get(measure, ""))
    top = max((abs(y) for y in ys), default=0.0)
    small = [abs(y) for y in ys if 0 < abs(y)]
    if small and top / min(small) > 1e3:  # spans decades: a linear axis would hide most of it
        ax.set_yscale("symlog", linthresh=top * 1e-6)
        ax.set_ylabel(f"{measure} [{units.get(measure, '')}]")
    ax.grid(alpha=0.3)
    ax.set_title(f"{tb.id}: {measure} vs {param}", fontsize=9)
    return _save(fig, out / f"{tb.id}.transfer.png")


