"""`tables build`: sweep a cell's spec into its HDF5 tables.

Points are grouped by corner into chunks; a worker process keeps one ngspice `Session` per
(deck, corner) and runs each point with `alterparam` + `reset`, so the models are parsed
once per chunk stream, not once per point. A point that fails is retried once in a fresh
run with robust options (gear, a quarter of the time step, more iterations, gmin and source
stepping) and then recorded with its status; the build goes on. Every finished chunk is
stored in the content-hash cache at once, and the table file is replaced atomically at the
end.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

import numpy as np

from .. import __version__
from ..tablefile import STATUS, TableData, write_tables
from .cache import PointCache
from .deck import Deck, models_hash
from .errors import DeckError, DeckParamError, SpiceError
from .spec import CellSpec, SpecError, TableSpec

OK, RETRIED, NO_CONV, MEAS_FAILED, ERROR, MISSED = range(len(STATUS))
ROBUST = {"method": "gear", "itl1": 500, "itl4": 100, "gminsteps": 100, "srcsteps": 100}
CHUNK = 16

_session = None  # this worker's (key, Session)


def _extract(res, inner, quantities):
    payload, status = {}, OK
    for name, source, ref in quantities:
        if source == "measure":
            v = float(res.measures.get(ref, math.nan))
            if math.isnan(v):
                status = MEAS_FAILED
            payload[name] = v
        else:
            scale = res.scale.values.real
            payload[name] = np.interp(inner, scale, res[ref].real)
    return status, payload


def _session_for(deck_path: str, corner: str, temp):
    """This worker's ngspice session for (deck, corner), loaded on first use; the first
    point's temperature goes into the deck, so points at it need no `option temp`."""
    global _session
    from .shared import Session
    skey = (deck_path, corner)
    if _session is None or _session[0] != skey or not _session[1].alive:
        if _session is not None:
            _session[1].close()
        _session = (skey, Session(Deck(deck_path).with_(corner=corner, temp=temp)))
    return _session[1]


def _drop_session() -> None:
    global _session
    if _session is not None:
        _session[1].close()
        _session = None


def run_chunk(deck_path: str, corner: str, inner, quantities, points):
    """Worker side: [(key, params, temp)] -> [(key, status, payload)]."""
    from .runner import run
    out = []
    for key, params, temp in points:
        try:
            res = _session_for(deck_path, corner, temp).run(params, temp)
            out.append((key, *_extract(res, inner, quantities)))
        except (DeckError, DeckParamError):
            raise
        except SpiceError as first:
            _drop_session()
            try:
                res = run(Deck(deck_path).with_(params=params, corner=corner, temp=temp,
                                                options=ROBUST, step_scale=0.25))
                status, payload = _extract(res, inner, quantities)
                out.append((key, RETRIED if status == OK else status, payload))
            except SpiceError as second:
                why = NO_CONV if "convergence" in type(second).__name__.lower() else ERROR
                out.append((key, why, {"error": f"{first.message} | retry: {second.message}"}))
    return out


def run_pv_chunk(deck_path: str, corner: str, settings, quantities, points):
    """Worker side of program-and-verify: from the high-resistance state, SET pulses of
    amplitude vp and width tpw with the word line (the compliance current) stepped up from
    vwl_start by vwl_step (capped at vwl_max), each followed by a verify read, until the
    read conductance reaches target (1 - tol) or max_pulses ran. In this model SET is a
    runaway limited by the compliance, so the word line, not the bit-line amplitude, sets
    the level. The gap is carried from pulse to pulse; energies add up."""
    cfg = dict(settings)
    out = []
    for key, params, temp in points:
        params = dict(params)
        target = params.pop("target")
        try:
            session = _session_for(deck_path, corner, temp)
            gap, vwl, energy, g, n = cfg["gini"], cfg["vwl_start"], 0.0, 0.0, 0
            while n < int(cfg["max_pulses"]):
                res = session.run({**params, "gini": gap, "vp": cfg["vp"],
                                       "tpw": cfg["tpw"], "vwl": vwl}, temp)
                n += 1
                m = res.measures
                energy += m["energy"]
                gap, g = m["gap_end"], m["g_after"]
                if g >= target * (1 - cfg["tol"]):
                    break
                vwl = min(vwl + cfg["vwl_step"], cfg["vwl_max"])
            payload = {"g_reached": g, "pulses": float(n), "energy": energy}
            out.append((key, OK, {q: payload[ref] for q, _, ref in quantities}))
        except (DeckError, DeckParamError):
            raise
        except SpiceError as exc:
            _drop_session()
            out.append((key, NO_CONV if "Convergence" in type(exc).__name__ else ERROR,
                        {"error": exc.message}))
    return out


@dataclass
class BuildSummary:
    ok: int = 0
    retried: int = 0
    failed: int = 0
    cached: int = 0
    missed: int = 0
    seconds: float = 0.0

    def line(self) -> str:
        missed = f", missed their target {self.missed}" if self.missed else ""
        return (f"points ok {self.ok}, retried {self.retried}, failed {self.failed}{missed}, "
                f"from cache {self.cached} ({self.seconds:.1f} s)")


def pv_status(settings: dict, target: float, reached: float) -> int:
    """Program-and-verify ran to its end: OK when the conductance reached is within `tol` of
    the target, MISSED when it overshot (a SET pulse jumped past it) or stopped short."""
    return OK if abs(reached / target - 1) <= float(settings["tol"]) else MISSED


def _points(t: TableSpec, deck: Deck):
    inner = None if t.inner is None else t.inner.values
    qsig = repr([(q.name, q.source, q.ref) for q in t.quantities]).encode()
    isig = b"" if inner is None else inner.tobytes()
    psig = repr((t.procedure, t.settings)).encode()
    axes = [t.temperature.values] + [a.values for a in t.axes]
    if t.montecarlo:
        axes.append(np.arange(t.montecarlo.samples))
    draws = [t.montecarlo.draw(k) for k in range(t.montecarlo.samples)] if t.montecarlo else []
    for ci, corner in enumerate(t.corners):
        base = deck.with_(corner=corner)
        for idx in itertools.product(*(range(len(v)) for v in axes)):
            temp = float(axes[0][idx[0]])
            params = {a.name: float(a.values[i]) for a, i in zip(t.axes, idx[1:])}
            if t.montecarlo:
                params.update(draws[idx[-1]])
            deck_params = {k: v for k, v in params.items() if k != "target"}
            h = hashlib.sha256(base.with_(params=deck_params, temp=temp).content_hash().encode())
            h.update(qsig)
            h.update(isig)
            h.update(psig)
            h.update(repr(params.get("target")).encode())
            yield (ci, *idx), corner, temp, params, h.hexdigest()


MAX_POINTS = 200_000
# Measured: the shipped specs from an empty cache on one worker of a loaded 2-core machine,
# sky130 parses included: gaincell_2t 8,420 points in 644 s, rram_1t1r 4,139 in 322 s.
SECONDS_PER_POINT = 0.078


def check_size(spec: CellSpec, max_points: int | None = None, jobs: int = 1) -> int:
    """Refuse a spec whose grid is larger than `max_points` (default MAX_POINTS) before any
    point is hashed, with the count and a time estimate; return the count."""
    limit = MAX_POINTS if max_points is None else max_points
    sizes = {t.name: math.prod(t.outer_shape) for t in spec.tables}
    total = sum(sizes.values())
    if total > limit:
        hours = total * SECONDS_PER_POINT / max(jobs, 1) / 3600
        took = f"{hours:,.1f} h" if hours >= 1 else f"{hours * 60:.0f} min"
        parts = ", ".join(f"{n} {c:,}" for n, c in sizes.items())
        raise SpecError(spec.path, "tables", f"{total:,} points ({parts}): about {took} "
                        f"on {jobs} worker(s) at {SECONDS_PER_POINT * 1e3:g} ms per point; "
                        f"more than --max-points {limit:,}. Coarsen the grid, or raise "
                        f"--max-points to build it")
    return total


def build(spec: CellSpec, out_dir: Path, jobs: int = 2, executor: str = "local",
          scheduler: str | None = None, progress: bool = True, log=print,
          chunk: int = CHUNK) -> tuple[Path, BuildSummary]:
    from tqdm import tqdm

    out_dir = Path(out_dir)
    cache = PointCache(out_dir / ".cache" / f"{spec.cell}.sqlite")
    summary = BuildSummary()
    t0 = time.perf_counter()
    tables, version = [], None
    try:
        for t in spec.tables:
            deck = t.tb.deck()
            pts = list(_points(t, deck))
            found = cache.get_many([p[-1] for p in pts])
            summary.cached += len(found)
            todo = [p for p in pts if p[-1] not in found]
            chunks = []
            for corner in t.corners:
                mine = [p for p in todo if p[1] == corner]
                chunks += [mine[i:i + chunk] for i in range(0, len(mine), chunk)]
            quantities = [(q.name, q.source, q.ref) for q in t.quantities]
            inner = None if t.inner is None else t.inner.values
            bar = tqdm(total=len(pts), initial=len(found), desc=f"{spec.cell}.{t.name}",
                       unit="pt", disable=not progress, dynamic_ncols=True)
            results = dict(found)
            if t.procedure == "program_verify":
                calls = [partial(run_pv_chunk, str(deck.path), c[0][1], t.settings, quantities,
                                 [(p[-1], p[3], p[2]) for p in c]) for c in chunks]
            else:
                calls = [partial(run_chunk, str(deck.path), c[0][1], inner, quantities,
                                 [(p[-1], p[3], p[2]) for p in c]) for c in chunks]
            for rows in _execute(calls, jobs, executor, scheduler):
                cache.put_many([r for r in rows if r[1] in (OK, RETRIED, MEAS_FAILED)])
                for key, status, payload in rows:
                    results[key] = (status, payload)
                    summary.ok += status == OK
                    summary.retried += status == RETRIED
                    summary.failed += status not in (OK, RETRIED)
                bar.update(len(rows))
            bar.close()
            table = _assemble(t, pts, results)
            summary.missed += int((table.status == MISSED).sum())
            tables.append(table)
        from .batch import ngspice_version
        version = ngspice_version()
        attrs = _provenance(spec, version)
        path = write_tables(out_dir / f"{spec.cell}.h5", tables, attrs)
    finally:
        cache.close()
    summary.seconds = time.perf_counter() - t0
    log(f"{path}: {summary.line()}")
    return path, summary


def _execute(calls, jobs, executor, scheduler):
    if not calls:
        return
    if executor == "dask":
        from dask.distributed import Client, as_completed as dask_completed
        client = Client(scheduler) if scheduler else Client(n_workers=jobs, threads_per_worker=1,
                                                            dashboard_address=None)
        try:
            futures = [client.submit(c, pure=False) for c in calls]
            for fut in dask_completed(futures):
                yield fut.result()
        finally:
            client.close()
        return
    if executor != "local":
        raise ValueError(f"unknown executor {executor!r}; choose local or dask")
    from .workers import WorkerPool
    with WorkerPool(jobs) as pool:
        ex = ThreadPoolExecutor(len(pool.workers))
        try:
            futures = {ex.submit(pool.call, c, c.args[0]): c for c in calls}
            for fut in as_completed(futures):
                try:
                    rows = fut.result()
                except SpiceError as exc:
                    call = futures[fut]
                    rows = [(key, ERROR, {"error": exc.message}) for key, _, _ in call.args[4]]
                yield rows
        except BaseException:  # Ctrl-C, or the consumer stopped: queued chunks never start
            ex.shutdown(wait=False, cancel_futures=True)
            pool.kill()
            raise
        finally:
            ex.shutdown(wait=True)


def _reached(t: TableSpec) -> str:
    return next(q.name for q in t.quantities if q.ref == "g_reached")


def _assemble(t: TableSpec, pts, results) -> TableData:
    shape = t.outer_shape
    inner_n = 0 if t.inner is None else len(t.inner.values)
    status = np.full(shape, ERROR, dtype=np.int8)
    qs = {}
    for q in t.quantities:
        full = shape + ((inner_n,) if q.source == "signal" else ())
        qs[q.name] = (q.units, np.full(full, np.nan))
    reached = _reached(t) if t.procedure == "program_verify" else None
    for idx, _, _, params, key in pts:
        st, payload = results.get(key, (ERROR, {}))
        if st in (OK, RETRIED):
            for q in t.quantities:
                qs[q.name][1][idx] = payload[q.name]
            if reached is not None:
                st = pv_status(dict(t.settings), params["target"], payload[reached])
        status[idx] = st
    axes = [("corner", "", "process corner (sky130)", np.array(t.corners, dtype=object)),
            ("temperature", "degC", "temperature", t.temperature.values)]
    axes += [(a.name, a.units, a.long_name, a.values) for a in t.axes]
    extra = {}
    if t.montecarlo:
        axes.append(("sample", "", f"Monte Carlo device (seed {t.montecarlo.seed})",
                     np.arange(t.montecarlo.samples, dtype=float)))
        for name, kind, nominal, sigma in t.montecarlo.params:
            extra[f"mc_{name}"] = np.array([t.montecarlo.draw(k)[name]
                                            for k in range(t.montecarlo.samples)])
    if t.inner is not None:
        axes.append((t.inner.name, t.inner.units, t.inner.long_name, t.inner.values))
    return TableData(t.name, axes, qs, status, 2 + len(t.axes) + bool(t.montecarlo),
                     {"testbench": t.tb.id, "doc": t.doc, "deck": t.tb.path.name,
                      "deck_sha256": t.tb.deck().content_hash(),
                      "quantities": json.dumps([(q.name, q.source, q.ref) for q in t.quantities]),
                      "inner_axis": "" if t.inner is None else t.inner.name,
                      "param_axes": json.dumps([a.name for a in t.axes]
                                               + (["sample"] if t.montecarlo else [])),
                      "procedure": t.procedure or "",
                      "settings": json.dumps(dict(t.settings))},
                     axis_interp={a.name: a.interp for a in t.axes + (t.temperature,)
                                  + ((t.inner,) if t.inner else ())},
                     quantity_interp={q.name: (q.interp, q.floor) for q in t.quantities},
                     per_sample=extra,
                     montecarlo="" if not t.montecarlo else json.dumps(
                         {"seed": t.montecarlo.seed, "samples": t.montecarlo.samples,
                          "params": t.montecarlo.params}))


def _provenance(spec: CellSpec, version: str) -> dict:
    from ..circuits import CELLS
    cell = CELLS[spec.cell]
    h = hashlib.sha256(cell.path.read_bytes())
    for tb in cell.testbenches:
        h.update(tb.path.read_bytes())
    return {"cell": spec.cell, "netlist_sha256": h.hexdigest(),
            "models_sha256": models_hash(cell.path.parent), "ngspice_version": version,
            "options": json.dumps({"num_threads": 1, "retry_options": ROBUST}),
            "spec": spec.text, "spec_file": spec.path.name, "cimlut_version": __version__,
            "created": datetime.now(timezone.utc).isoformat(),
            **(cell.levels.attrs() if cell.levels else {})}
