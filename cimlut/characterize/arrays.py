"""Array check: a whole crossbar tile in SPICE against the behavioural tile.

Real weights (a slice of a SmolLM2 layer, or seeded random ones) are programmed as the
simulator programs them (`CrossbarLinear`, program-and-verify spread included); the tile
with those gaps becomes a netlist (`cimlut.circuits.array`) and ngspice simulates it for a
set of input vectors: rows at v_read or 0 V, the instants of a pulse-width or bit-serial
read (vector 0 has every row on, the worst IR drop; the rest are seeded coin flips). The
behavioural tile (read table conductances, and with wires the effective matrix of
`cimlut.models.parasitics`) predicts each differential column current; the check reports
per column RMS and max error in % of full scale and in ADC steps.

Full scale: the largest |differential column current| SPICE gives over the vectors (the
ADC range the simulator calibrates with adc_range_percentile = 100 on these inputs); one
ADC step = full scale / (2^(adc_bits-1) - 1), the signed converter of the crossbar.

Limits (issue 10): zero wire resistance, max error <= 0.2% of full scale (this checks the
cell tables and the access transistor's series drop); with wires, RMS <= 0.5% of full scale
and max <= 1 ADC step for tiles up to 64 rows, RMS <= 1% above.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import UsageError

ZERO_WIRE_MAX = 0.002     # of full scale
RMS_LIMIT = {64: 0.005}   # rows up to the key: RMS limit; above: RMS_LIMIT_LARGE
RMS_LIMIT_LARGE = 0.01
MAX_LSB_LIMIT = 1.0       # ADC steps, tiles up to 64 rows
DEFAULT_LAYER = "model.layers.0.self_attn.q_proj"


def _slice(w: torch.Tensor, rows: int, outputs: int, what: str) -> torch.Tensor:
    if w.dim() != 2 or w.shape[1] < rows or w.shape[0] < outputs:
        raise UsageError(f"tile {rows} rows x {2 * outputs} columns needs {rows} inputs and "
                         f"{outputs} outputs; {what} has weights of shape "
                         f"{tuple(w.shape)} (outputs x inputs)")
    return w[:outputs, :rows].to(torch.float64)


def _weights(source, layer: str, rows: int, outputs: int, seed: int) -> torch.Tensor:
    """[outputs, rows] weights: a slice of a SmolLM2 layer, of a given [out, in] matrix, or
    seeded N(0, 1) values."""
    if isinstance(source, torch.Tensor):
        return _slice(source.detach(), rows, outputs, "the weight matrix given")
    if source == "random":
        gen = torch.Generator().manual_seed(seed)
        return torch.randn(outputs, rows, generator=gen, dtype=torch.float64)
    from ..models import zoo
    from ..models.convert import as_linear
    lm = zoo.load(source)
    mod = lm.model
    try:
        for part in layer.split("."):
            mod = getattr(mod, part)
        lin = as_linear(mod)
    except (AttributeError, Exception) as exc:
        if isinstance(exc, UsageError):
            raise
        raise UsageError(f"--layer {layer!r}: not a linear layer of {source} ({exc})") from None
    return _slice(lin.weight.detach(), rows, outputs, f"{layer} of {source}")


def _stats(model: np.ndarray, spice: np.ndarray, fs: float, lsb: float) -> dict:
    err = model - spice
    col_rms = np.sqrt((err ** 2).mean(0)) / fs
    col_max = np.abs(err).max(0) / fs
    return {"rms_fs": float(np.sqrt((err ** 2).mean()) / fs),
            "max_fs": float(np.abs(err).max() / fs),
            "rms_lsb": float(np.sqrt((err ** 2).mean()) / lsb),
            "max_lsb": float(np.abs(err).max() / lsb),
            "column_rms_fs": col_rms.tolist(), "column_max_fs": col_max.tolist()}


def check_tile(rows: int, cols: int, wire_row: float = 0.0, wire_col: float | None = None, *,
               config=None, weights: str = "random", layer: str = DEFAULT_LAYER,
               vectors: int = 16, seed: int = 0, clamp_gain: float = 0.0,
               clamp_rf: float = 0.0, model_wire_scale: float = 1.0,
               operating_point: bool = True, workdir: str | Path | None = None,
               progress: bool = False, timeout: float | None = None) -> dict:
    """Simulate a rows x cols tile in SPICE (zero wires, and with wires when any is > 0)
    and compare the behavioural tile per column; the report (see the module docstring).
    `model_wire_scale` scales the wires the behavioural model assumes (1.1: a model 10%
    off, which the check must catch). `operating_point`: the model linearised at each cell's
    voltage with every row on, as the simulator converts (False: every cell at its chord
    conductance at v_read). Arguments are checked before anything slow runs."""
    from ..circuits.array import ArrayError, Tile, simulate
    from ..models.config import HardwareConfig
    from ..models.crossbar import CrossbarLinear
    from ..models.parasitics import effective_pairs
    from ..models.rram import RramDevice

    wire_col = wire_row if wire_col is None else wire_col
    for name, value in (("rows", rows), ("cols", cols), ("vectors", vectors)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise UsageError(f"{name} = {value!r}: expected an integer")
    if rows < 1 or cols < 2 or cols % 2:
        raise UsageError(f"tile {rows} x {cols}: need >= 1 row and an even number >= 2 of "
                         "columns (differential pairs)")
    if vectors < 1:
        raise UsageError(f"vectors = {vectors}: need at least one input vector")
    for name, value in (("wire_row", wire_row), ("wire_col", wire_col),
                        ("clamp_gain", clamp_gain), ("clamp_rf", clamp_rf),
                        ("model_wire_scale", model_wire_scale)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            raise UsageError(f"{name} = {value!r}: must be a finite number >= 0 (ohm)"
                             if "scale" not in name else f"{name} = {value!r}: must be >= 0")
    if clamp_gain > 0 and not clamp_rf > 0:
        raise UsageError(f"clamp_gain = {clamp_gain!r} needs clamp_rf > 0 ohm (feedback)")
    if not isinstance(weights, torch.Tensor) and weights not in ("random", "smollm2"):
        raise UsageError(f"weights {weights!r}: expected random, smollm2 or a weight matrix")
    cfg = (config or HardwareConfig())
    clamp = clamp_rf / (1 + clamp_gain) if clamp_gain > 0 else 0.0
    try:
        cfg = cfg.replace(tile_rows=rows, tile_cols=cols, wire_row=float(wire_row),
                          wire_col=float(wire_col), clamp_resistance=float(clamp))
    except Exception as exc:
        raise UsageError(f"tile {rows} x {cols}: {exc}") from None
    if cfg.ideal:
        raise UsageError("ideal = true: the array check compares the real cells with SPICE")
    outputs = cols // 2
    w = _weights(weights, layer, rows, outputs, seed)        # the slow load comes after the checks

    lin = nn.Linear(rows, outputs, bias=False)
    lin.weight.data = w.float()
    device = RramDevice(cfg)
    xbar = CrossbarLinear.from_linear(lin, cfg, device, name=layer, keep_gaps=True)
    gap_pos, gap_neg = xbar.gaps                              # [rows, outputs] nm
    gaps = np.empty((rows, cols))
    gaps[:, 0::2], gaps[:, 1::2] = gap_pos.numpy(), gap_neg.numpy()
    g_pos = device.read_conductance(gap_pos)
    g_neg = device.read_conductance(gap_neg)
    g_min = float(getattr(device, "g_min", cfg.g_min))
    dg = float(getattr(device, "g_max", cfg.g_max)) - g_min
    v = float(cfg.v_read)
    chord = (lambda g, u: device.chord_conductance(g, u * v)) if operating_point else None

    rng = np.random.default_rng(seed)
    bits = (rng.random((vectors, rows)) < 0.5).astype(np.float64)
    bits[0] = 1.0
    drives = v * bits

    cases = [("no_wires", 0.0, 0.0, 0.0, 0.0)]
    if wire_row > 0 or wire_col > 0 or clamp_gain > 0:
        cases.append(("wires", float(wire_row), float(wire_col), clamp_gain, clamp_rf))
    tmp = None if workdir else tempfile.TemporaryDirectory(prefix="cimlut-array-")
    folder = Path(workdir) if workdir else Path(tmp.name)
    folder.mkdir(parents=True, exist_ok=True)
    it = cases
    if progress:
        from tqdm import tqdm
        it = tqdm(cases, desc=f"ngspice: {rows}x{cols} tile, {vectors} vectors", unit="tile")
    named = weights if isinstance(weights, str) else "given"
    report = {"rows": rows, "cols": cols, "vectors": vectors, "weights": named,
              "layer": layer if named == "smollm2" else None, "seed": seed,
              "wire_row": float(wire_row), "wire_col": float(wire_col),
              "clamp_gain": clamp_gain, "clamp_rf": clamp_rf, "clamp_resistance": clamp,
              "model_wire_scale": model_wire_scale, "operating_point": bool(operating_point),
              "v_read": v, "adc_bits": cfg.adc_bits,
              "corner": cfg.corner, "temperature": cfg.temperature, "cases": {}}
    qa = (1 << (cfg.adc_bits - 1)) - 1
    for name, rr, rc, ga, rf in it:
        tile = Tile(gaps=gaps, drives=drives, wire_row=rr, wire_col=rc, clamp_gain=ga,
                    clamp_rf=rf, corner=cfg.corner, temperature=cfg.temperature)
        try:
            currents = simulate(tile, folder / f"tile_{rows}x{cols}_{name}.cir", timeout=timeout)
        except ArrayError as exc:
            raise UsageError(str(exc)) from None
        finally:
            if tmp is not None and name == cases[-1][0]:
                tmp.cleanup()
        spice = currents[:, 0::2] - currents[:, 1::2]
        fs = float(np.abs(spice).max())
        lsb = fs / qa
        s = model_wire_scale
        if name == "wires":
            m_pos, m_neg = effective_pairs(g_pos, g_neg, rows, outputs, rr * s, rc * s,
                                           tile.clamp_resistance * s, chord=chord)
            eff = (m_pos - m_neg).numpy()
        else:
            eff = (g_pos - g_neg).numpy()
        model = drives @ eff
        ideal = drives @ (g_pos - g_neg).numpy()
        case = {"full_scale_a": fs, "lsb_a": lsb, **_stats(model, spice, fs, lsb),
                "model_without_wires": {k: v for k, v in _stats(ideal, spice, fs, lsb).items()
                                        if not k.startswith("column")},
                "deck": str(folder / f"tile_{rows}x{cols}_{name}.cir") if workdir else None,
                "spice": spice.tolist(), "model": model.tolist()}
        if name == "wires":
            limit = next((lim for r, lim in RMS_LIMIT.items() if rows <= r), RMS_LIMIT_LARGE)
            case["limits"] = {"rms_fs": limit, "max_lsb": MAX_LSB_LIMIT if rows <= 64 else None}
            case["ok"] = case["rms_fs"] <= limit and (rows > 64 or case["max_lsb"] <= MAX_LSB_LIMIT)
        else:
            case["limits"] = {"max_fs": ZERO_WIRE_MAX}
            case["ok"] = case["max_fs"] <= ZERO_WIRE_MAX
        # the weight scale behind it: digital weights per ampere, for a reader
        case["weight_per_ampere"] = 1.0 / (v * dg)
        report["cases"][name] = case
    top = report["cases"]["wires" if "wires" in report["cases"] else "no_wires"]
    report["rms_fs"], report["max_lsb"] = top["rms_fs"], top["max_lsb"]
    report["ok"] = all(c["ok"] for c in report["cases"].values())
    return report


def write_report(report: dict, json_path: str | Path | None = None,
                 plot_path: str | Path | None = None) -> None:
    if json_path:
        Path(json_path).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    if plot_path:
        plot(report, plot_path)


def plot(report: dict, path: str | Path) -> Path:
    """Error per column (% of full scale, each case) and SPICE vs model scatter."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, case in report["cases"].items():
        cols = np.arange(len(case["column_rms_fs"]))
        ax1.plot(cols, 100 * np.asarray(case["column_max_fs"]), ".-", label=f"{name}: max")
        ax1.plot(cols, 100 * np.asarray(case["column_rms_fs"]), "x:", label=f"{name}: RMS")
        fs = case["full_scale_a"]
        ax2.plot(np.asarray(case["spice"]).ravel() / fs, np.asarray(case["model"]).ravel() / fs,
                 ".", ms=3, label=name)
    ax1.axhline(100 * report["cases"].get("wires", {}).get("lsb_a", 0) /
                max(report["cases"].get("wires", {}).get("full_scale_a", 1), 1e-30),
                color="gray", lw=0.8, ls="--", label="1 ADC step")
    ax1.set_xlabel("output column (differential pair)")
    ax1.set_ylabel("|model - SPICE| [% of full scale]")
    ax1.legend(fontsize=7)
    ax2.plot([-1, 1], [-1, 1], color="gray", lw=0.8)
    ax2.set_xlabel("SPICE [full scale]")
    ax2.set_ylabel("behavioural model [full scale]")
    ax2.legend(fontsize=7)
    fig.suptitle(f"{report['rows']}x{report['cols']} tile, wires {report['wire_row']}/"
                 f"{report['wire_col']} ohm per segment, {report['vectors']} vectors: "
                 f"RMS {100 * report['rms_fs']:.3f}% FS, max {report['max_lsb']:.2f} ADC steps "
                 f"({report['adc_bits']} bits)", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def summary(report: dict) -> str:
    """One line per case: errors in % of full scale and ADC steps, against the limits."""
    lines = [f"{report['rows']}x{report['cols']} tile ({report['weights']} weights"
             + (f", {report['layer']}" if report.get("layer") else "")
             + f"), {report['vectors']} vectors, {report['adc_bits']}-bit ADC steps:"]
    for name, c in report["cases"].items():
        wires = ("no wires" if name == "no_wires" else
                 f"wires {report['wire_row']:g}/{report['wire_col']:g} ohm"
                 + (f", clamp {report['clamp_resistance']:.4g} ohm" if report["clamp_gain"] else ""))
        off = c["model_without_wires"]
        lines.append(f"  {wires:28s} RMS {100 * c['rms_fs']:.3f}% FS ({c['rms_lsb']:.2f} steps), "
                     f"max {100 * c['max_fs']:.3f}% FS ({c['max_lsb']:.2f} steps)  "
                     f"{'ok' if c['ok'] else 'FAIL'}"
                     + ("" if name == "no_wires" else
                        f"   [model without wires: RMS {100 * off['rms_fs']:.3f}% FS, "
                        f"max {off['max_lsb']:.2f} steps]"))
    return "\n".join(lines)
