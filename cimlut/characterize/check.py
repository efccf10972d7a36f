"""`tables check`: how well does a table stand for SPICE between its grid points?

N random points are drawn off the grid (uniform in every continuous outer axis, a random
corner), simulated in SPICE, and compared with multilinear interpolation of the table
(along the inner axis too, where the table has one). Per quantity it reports the RMS and
max relative error, and the absolute error, which is the meaningful figure for quantities
that cross zero. The same points are simulated again at a 4x finer time step and a tenth of
the deck's reltol: a quantity that moves under refinement is an artefact of the step, not
a measurement (the `convergence` block, same keys). Both are held to RMS <= 0.5% and
max <= 2% (of full scale where the quantity crosses zero); `tables check` exits 1 when
any misses.
"""

from __future__ import annotations

import json
import math
from functools import partial
from pathlib import Path

import numpy as np
from scipy.interpolate import RegularGridInterpolator

from ..circuits import CELLS
from ..tablefile import from_interp_space, open_h5, to_interp_space
from .deck import Deck
from .errors import SpiceError
from .sweep import ERROR, OK, RETRIED, _execute, _extract, run_chunk

# the target a shipped quantity meets, off the grid and under step refinement
RMS_TARGET, MAX_TARGET = 0.005, 0.02
REFINE_STEP, REFINE_RELTOL = 0.25, 0.1  # 4x finer time step, reltol / 10


def run_refined_chunk(deck_path: str, corner: str, inner, quantities, points):
    """Worker side of the convergence check: each point in a fresh run at a 4x finer time
    step (output step and maximum internal step) and a tenth of the deck's reltol."""
    deck = Deck(deck_path)
    refined = deck.with_(corner=corner, step_scale=REFINE_STEP,
                         options={"reltol": deck.reltol() * REFINE_RELTOL})
    from .runner import run
    out = []
    for key, params, temp in points:
        try:
            res = run(refined.with_(params=params, temp=temp))
            out.append((key, *_extract(res, inner, quantities)))
        except SpiceError as exc:
            out.append((key, ERROR, {"error": exc.message}))
    return out


def _load(path: Path, table: str):
    with open_h5(path) as f:
        g = f[table]
        quantities = json.loads(g.attrs["quantities"])
        params = json.loads(g.attrs["param_axes"])
        inner = g.attrs["inner_axis"] or None
        names = ["temperature", *params] + ([inner] if inner else [])
        axes = {n: g[n][()] for n in names}
        axis_interp = {n: g[n].attrs.get("interp", "linear") for n in names}
        q_interp = {q: (g[q].attrs.get("interp", "linear"), float(g[q].attrs.get("interp_floor", 0)))
                    for q, _, _ in quantities}
        corners = [c.decode() if isinstance(c, bytes) else c for c in g["corner"][()]]
        data = {q: g[q][()] for q, _, _ in quantities}
        cell, tbname = g.attrs["testbench"].split(".")
    tb = next(t for t in CELLS[cell].testbenches if t.name == tbname)
    return tb, corners, params, inner, axes, quantities, data, axis_interp, q_interp


def check_table(path: Path, table: str, points: int = 20, seed: int = 0, jobs: int = 2,
                convergence: bool = True):
    """Per quantity: table vs SPICE at `points` random off-grid points, and (`convergence`)
    SPICE at the deck's step vs a 4x finer step and reltol/10 at the same points, in a
    `convergence` block with the same keys. Each block says whether it meets the target
    (RMS <= 0.5%, max <= 2%; of full scale where the quantity crosses zero)."""
    with open_h5(path) as f:
        why = ("a procedure table" if f[table].attrs.get("procedure")
               else "a Monte Carlo table" if f[table].attrs.get("montecarlo") else "")
    if why:
        return {"skipped": {"why": f"{why}: its axes are not interpolated, nothing to check"}}
    tb, corners, params, inner, axes, quantities, data, axis_interp, q_interp = _load(
        Path(path), table)
    rng = np.random.default_rng(seed)
    outer = ["temperature", *params]
    draws = []
    for i in range(points):
        ci = int(rng.integers(len(corners)))
        vals = {}
        for n in outer:  # uniform in the space the axis is interpolated in
            lo, hi = to_interp_space(np.array([axes[n].min(), axes[n].max()]), axis_interp[n])
            vals[n] = float(from_interp_space(np.array(rng.uniform(lo, hi)), axis_interp[n]))
        draws.append((ci, vals))
    chunks = {}
    for i, (ci, vals) in enumerate(draws):
        chunks.setdefault(ci, []).append((str(i), {p: vals[p] for p in params},
                                          vals["temperature"]))
    def simulate(fn) -> dict:
        calls = [partial(fn, str(tb.deck().path), corners[ci], axes.get(inner),
                         [tuple(q) for q in quantities], pts) for ci, pts in chunks.items()]
        out = {}
        for rows in _execute(calls, jobs, "local", None):
            for key, status, payload in rows:
                out[int(key)] = (status, payload)
        return out
    sims = simulate(run_chunk)
    fine = simulate(run_refined_chunk) if convergence else {}
    report = {}
    for qname, _, _ in quantities:
        names = outer + ([inner] if inner and data[qname].ndim > 1 + len(outer) else [])
        grid_axes = [to_interp_space(axes[n], axis_interp[n]) for n in names]
        qi, qf = q_interp[qname]
        keep = [k for k, a in enumerate(grid_axes) if len(a) > 1]
        table_vals, sim_vals = [], []
        for i, (ci, vals) in enumerate(draws):
            status, payload = sims.get(i, (None, {}))
            if status not in (OK, RETRIED):
                continue
            arr = to_interp_space(data[qname][ci], qi, qf)
            arr = arr.reshape([len(a) for a in grid_axes])
            arr = arr.squeeze(tuple(k for k in range(arr.ndim) if k not in keep))
            interp = RegularGridInterpolator([grid_axes[k] for k in keep], arr)
            coords = [float(to_interp_space(np.array(vals[n]), axis_interp[n])) for n in outer]
            if len(grid_axes) > len(outer):
                pts = np.array([[*coords, x] for x in grid_axes[-1]])
            else:
                pts = np.array([coords])
            pts = pts[:, keep]
            table_vals.append(np.atleast_1d(from_interp_space(interp(pts), qi, qf)))
            sim_vals.append(np.atleast_1d(payload[qname]))
        report[qname] = _errors(np.concatenate(table_vals) if table_vals else np.array([]),
                                np.concatenate(sim_vals) if sim_vals else np.array([]),
                                len(table_vals), points)
        if convergence:
            pairs = [(np.atleast_1d(sims[i][1][qname]), np.atleast_1d(fine[i][1][qname]))
                     for i in range(len(draws)) if sims.get(i, (None,))[0] in (OK, RETRIED)
                     and fine.get(i, (None,))[0] in (OK, RETRIED)]
            report[qname]["convergence"] = _errors(
                np.concatenate([a for a, _ in pairs]) if pairs else np.array([]),
                np.concatenate([b for _, b in pairs]) if pairs else np.array([]),
                len(pairs), points)
    return report


def meets_target(r: dict) -> bool | None:
    """RMS <= 0.5% and max <= 2%: relative, or of full scale where values cross zero.
    None where nothing could be compared."""
    if not r.get("values"):
        return None
    if r["crosses_zero"]:
        rms, mx = r["rms_abs"] / r["full_scale"], r["max_abs"] / r["full_scale"]
    else:
        rms, mx = r["rms_rel"], r["max_rel"]
    return bool(rms <= RMS_TARGET and mx <= MAX_TARGET)


def _errors(t, s, ok, asked):
    good = np.isfinite(t) & np.isfinite(s)
    t, s = t[good], s[good]
    if t.size == 0:
        return {"points": ok, "asked": asked, "values": 0}
    scale = float(np.max(np.abs(s)))
    crosses = bool(np.min(s) < 0 < np.max(s))
    d = t - s
    floor = 1e-3 * scale  # relative error is reported where |value| is above 0.1% of full scale
    big = np.abs(s) > floor
    rel = np.abs(d[big]) / np.abs(s[big]) if big.any() else np.array([math.nan])
    return {"points": ok, "asked": asked, "values": int(t.size), "crosses_zero": crosses,
            "rms_rel": float(np.sqrt(np.mean(rel ** 2))), "max_rel": float(np.max(rel)),
            "rms_abs": float(np.sqrt(np.mean(d ** 2))), "max_abs": float(np.max(np.abs(d))),
            "full_scale": scale}


def format_report(name: str, report: dict) -> str:
    rows = [f"{name}:"]
    for q, r in report.items():
        if "why" in r:
            rows.append(f"  {r['why']}")
            continue
        if not r.get("values"):
            rows.append(f"  {q:12s} no comparable points ({r['points']} of {r['asked']} ran)")
            continue
        rows.append(_line(q, "off-grid", r))
        if "convergence" in r:
            rows.append(_line("", "step/4", r["convergence"]))
    return "\n".join(rows)


def _line(q: str, what: str, r: dict) -> str:
    if not r.get("values"):
        return f"  {q:12s} {what:8s} no comparable points ({r['points']} of {r['asked']} ran)"
    verdict = {True: "ok  ", False: "FAIL", None: "    "}[meets_target(r)]
    return (f"  {q:12s} {what:8s} {verdict} RMS rel {r['rms_rel']:.3%}  max rel "
            f"{r['max_rel']:.3%}  RMS abs {r['rms_abs']:.3g}  max abs {r['max_abs']:.3g} "
            f"(full scale {r['full_scale']:.3g}{', crosses zero' if r['crosses_zero'] else ''};"
            f" {r['points']}/{r['asked']} points)")
