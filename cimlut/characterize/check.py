"""`tables check`: how well does a table stand for SPICE between its grid points?

N random points are drawn off the grid (uniform in every continuous outer axis, a random
corner), simulated in SPICE, and compared with multilinear interpolation of the table
(along the inner axis too, where the table has one). Per quantity it reports the RMS and
max relative error, and the absolute error, which is the meaningful figure for quantities
that cross zero.
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
from .sweep import OK, RETRIED, _execute, run_chunk


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


def check_table(path: Path, table: str, points: int = 20, seed: int = 0, jobs: int = 2):
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
    calls = [partial(run_chunk, str(tb.deck().path), corners[ci], axes.get(inner),
                     [tuple(q) for q in quantities], pts) for ci, pts in chunks.items()]
    sims = {}
    for rows in _execute(calls, jobs, "local", None):
        for key, status, payload in rows:
            sims[int(key)] = (status, payload)
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
    return report


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
        rows.append(f"  {q:12s} RMS rel {r['rms_rel']:.3%}  max rel {r['max_rel']:.3%}  "
                    f"RMS abs {r['rms_abs']:.3g}  max abs {r['max_abs']:.3g} "
                    f"(full scale {r['full_scale']:.3g}{', crosses zero' if r['crosses_zero'] else ''};"
                    f" {r['points']}/{r['asked']} points)")
    return "\n".join(rows)
