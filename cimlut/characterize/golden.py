"""Golden waveforms: store a testbench's signals and scalars once, then catch any drift.

Comparison (DESIGN.md): scalars gate first, |d| <= atol + rtol |gold|; each signal gets a
Xyce-style norm sqrt(1/T integral(((gold - test) / (rtol |gold| + atol))^2 dt)) after the
golden is interpolated onto the test's points, and a pointwise max of the same ratio.

Tolerances are not guessed. `update` re-simulates the testbench with numerics-only changes
(half time step, the other integration method, reltol/10) and sets every tolerance to
SAFETY times the largest deviation those changes caused, so that the numerical noise floor
sits at 1/SAFETY of the limit and a real device change stands out above it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import FileFormatError
from ..tablefile import atomic_h5, open_h5
from .deck import Deck
from .errors import SpiceError
from .result import SimResult
from .runner import run

SCHEMA = 1
SAFETY = 3.0
BASE_RTOL = 1e-3     # the reference scale of a signal tolerance before calibration
BASE_ATOL_FRAC = 1e-3  # atol as a fraction of the signal's peak magnitude
MIN_SCALE = 1e-2     # calibrated tolerances never go below 1% of the reference scale
MEAS_RTOL = 1e-6     # ngspice prints .meas with 7 significant digits


@dataclass(frozen=True)
class Tolerance:
    rtol: float
    atol: float
    norm_limit: float = 1.0
    max_limit: float = math.inf


@dataclass
class Golden:
    testbench: str
    deck: str
    deck_sha256: str
    ngspice_version: str
    scale_name: str
    scale_unit: str
    scale: np.ndarray
    signals: dict[str, tuple[str, np.ndarray]]
    measures: dict[str, tuple[str, float]]
    signal_tol: dict[str, Tolerance]
    measure_tol: dict[str, Tolerance]
    noise: dict[str, dict[str, float]] = field(default_factory=dict)
    created: str = ""
    cimlut_version: str = __version__


@dataclass(frozen=True)
class Check:
    name: str
    kind: str  # "signal" | "measure" | "info"
    value: float
    limit: float
    passed: bool
    detail: str = ""


@dataclass
class Report:
    testbench: str
    checks: list[Check]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def format(self) -> str:
        head = f"{self.testbench}: {'PASS' if self.passed else 'FAIL'}"
        rows = [f"  {'ok  ' if c.passed else 'FAIL'} {c.kind:8s} {c.name:28s} {c.detail}"
                for c in self.checks]
        return "\n".join([head, *rows])


# ---------------------------------------------------------------- comparison

def _interp_onto(scale_gold, gold, scale_test):
    order = np.argsort(scale_gold, kind="stable")
    return np.interp(scale_test, scale_gold[order], gold[order])


def signal_errors(scale_gold, gold, scale_test, test, tol: Tolerance) -> tuple[float, float]:
    """(norm, pointwise max) of the tolerance-normalised error over the common range."""
    lo, hi = max(scale_gold.min(), scale_test.min()), min(scale_gold.max(), scale_test.max())
    keep = (scale_test >= lo) & (scale_test <= hi)
    t, y = scale_test[keep], test[keep]
    if t.size < 2:
        return math.inf, math.inf
    g = _interp_onto(scale_gold, gold, t)
    e = (g - y) / (tol.rtol * np.abs(g) + tol.atol)
    span = t[-1] - t[0]
    if _is_sweep_back_and_forth(t) or span <= 0:
        norm = float(np.sqrt(np.mean(e ** 2)))
    else:
        norm = float(np.sqrt(np.trapezoid(e ** 2, t) / span))
    return norm, float(np.max(np.abs(e)))


def _is_sweep_back_and_forth(t):
    return np.any(np.diff(t) < 0)


def compare(golden: Golden, result: SimResult) -> Report:
    checks: list[Check] = []
    for name, (unit, gval) in golden.measures.items():
        tol = golden.measure_tol[name]
        tval = result.measures.get(name, math.nan)
        if math.isnan(gval) or math.isnan(tval):
            ok = math.isnan(gval) and math.isnan(tval)
            checks.append(Check(name, "measure", math.nan, math.nan, ok,
                                f"golden {gval:.6g} {unit}, test {tval:.6g} {unit}"))
            continue
        d, lim = abs(tval - gval), tol.atol + tol.rtol * abs(gval)
        checks.append(Check(name, "measure", d, lim, d <= lim,
                            f"golden {gval:.7g} test {tval:.7g} {unit}  |d| {d:.3g} <= {lim:.3g}"))
    scale_test = result.scale.values.real
    for name, (unit, gvals) in golden.signals.items():
        tol = golden.signal_tol[name]
        if name not in result.vectors:
            checks.append(Check(name, "signal", math.inf, tol.norm_limit, False,
                                "missing from the test run"))
            continue
        norm, pmax = signal_errors(golden.scale, gvals, scale_test,
                                   result.vectors[name].values.real, tol)
        ok = norm <= tol.norm_limit and pmax <= tol.max_limit
        checks.append(Check(name, "signal", norm, tol.norm_limit, ok,
                            f"norm {norm:.3g} <= {tol.norm_limit:.3g}, "
                            f"max {pmax:.3g} <= {tol.max_limit:.3g}  "
                            f"(rtol {tol.rtol:.2g}, atol {tol.atol:.2g} {unit})"))
    return Report(golden.testbench, checks)


# ---------------------------------------------------------------- calibration

def noise_variants(deck: Deck) -> dict[str, Deck]:
    """The numerics-only changes whose effect defines the noise floor."""
    text = "\n".join(deck.source_lines()).lower()
    method = "trap" if re.search(r"method\s*=\s*gear", text) else "gear"
    out = {"half_step": deck.with_(step_scale=0.5),
           "reltol/10": deck.with_(options={"reltol": deck.reltol() / 10})}
    if ".tran" in text:
        out[f"method={method}"] = deck.with_(options={"method": method})
    return out


def calibrate(nominal: SimResult, variants: dict[str, SimResult], signals: list[str]):
    """Tolerances from the deviations the numerics-only variants cause."""
    signal_tol, measure_tol, noise = {}, {}, {}
    scale = nominal.scale.values.real
    for name in signals:
        g = nominal[name].real
        base = Tolerance(BASE_RTOL, BASE_ATOL_FRAC * max(float(np.max(np.abs(g))), 1e-30))
        worst_norm, per = 0.0, {}
        for vname, res in variants.items():
            n, _ = signal_errors(scale, g, res.scale.values.real, res[name].real, base)
            per[vname] = n
            worst_norm = max(worst_norm, n)
        k = max(SAFETY * worst_norm, MIN_SCALE)
        tol = Tolerance(base.rtol * k, base.atol * k)
        worst_max = max((signal_errors(scale, g, r.scale.values.real, r[name].real, tol)[1]
                         for r in variants.values()), default=0.0)
        signal_tol[name] = Tolerance(tol.rtol, tol.atol, 1.0, max(SAFETY * worst_max, 1.0))
        noise[name] = per
    for name, gval in nominal.measures.items():
        devs = [abs(r.measures.get(name, math.nan) - gval) for r in variants.values()]
        devs = [d for d in devs if not math.isnan(d)]
        measure_tol[name] = Tolerance(MEAS_RTOL, SAFETY * max(devs, default=0.0))
        noise[f"meas:{name}"] = {v: abs(r.measures.get(name, math.nan) - gval)
                                 for v, r in variants.items()}
    return signal_tol, measure_tol, noise


# ---------------------------------------------------------------- files

def write_golden(g: Golden, path: Path) -> Path:
    """Atomic: a killed write leaves the old golden."""
    with atomic_h5(path) as f:
        f.attrs.update(schema_version=SCHEMA, testbench=g.testbench, deck=g.deck,
                       deck_sha256=g.deck_sha256, ngspice_version=g.ngspice_version,
                       cimlut_version=g.cimlut_version,
                       created=g.created or datetime.now(timezone.utc).isoformat())
        sc = f.create_dataset("scale", data=g.scale, compression="gzip", shuffle=True)
        sc.attrs.update(name=g.scale_name, units=g.scale_unit)
        sg = f.create_group("signals")
        for name, (unit, vals) in g.signals.items():
            ds = sg.create_dataset(_key(name), data=vals, compression="gzip", shuffle=True)
            t = g.signal_tol[name]
            ds.attrs.update(name=name, units=unit, rtol=t.rtol, atol=t.atol,
                            norm_limit=t.norm_limit, max_limit=t.max_limit)
        mg = f.create_group("measures")
        for name, (unit, val) in g.measures.items():
            ds = mg.create_dataset(_key(name), data=val)
            t = g.measure_tol[name]
            ds.attrs.update(name=name, units=unit, rtol=t.rtol, atol=t.atol)
        ng = f.create_group("noise_floor")
        for name, per in g.noise.items():
            ng.attrs[name] = repr({k: float(v) for k, v in per.items()})
    return Path(path)


def read_golden(path: Path) -> Golden:
    with open_h5(path, "golden file") as f:
        if int(f.attrs.get("schema_version", -1)) != SCHEMA:
            raise FileFormatError(f"{path}: golden schema version {f.attrs.get('schema_version')} "
                             f"is not {SCHEMA}; regenerate with `cimlut golden update`")
        signals, stol, measures, mtol = {}, {}, {}, {}
        for ds in f["signals"].values():
            a = ds.attrs
            signals[a["name"]] = (a["units"], ds[()])
            stol[a["name"]] = Tolerance(a["rtol"], a["atol"], a["norm_limit"], a["max_limit"])
        for ds in f["measures"].values():
            a = ds.attrs
            measures[a["name"]] = (a["units"], float(ds[()]))
            mtol[a["name"]] = Tolerance(a["rtol"], a["atol"])
        return Golden(f.attrs["testbench"], f.attrs["deck"], f.attrs["deck_sha256"],
                      f.attrs["ngspice_version"], f["scale"].attrs["name"],
                      f["scale"].attrs["units"], f["scale"][()], signals, measures, stol, mtol,
                      {}, f.attrs["created"], f.attrs["cimlut_version"])


def _key(name: str) -> str:
    return re.sub(r"[^\w.()#-]", "_", name).replace("/", "_")


# ---------------------------------------------------------------- the two verbs

def golden_path(tb, directory: Path | None = None) -> Path:
    from ..paths import golden_dir
    return Path(directory or golden_dir()) / f"{tb.id}.h5"


def make_golden(tb, backend: str = "shared", log=print) -> Golden:
    """Simulate a testbench nominally and with the noise variants; build its golden."""
    deck = tb.deck()
    nominal = run(deck, backend=backend)
    variants = {}
    for vname, vdeck in noise_variants(deck).items():
        try:
            variants[vname] = run(vdeck, backend=backend)
        except SpiceError as exc:
            log(f"  {tb.id}: noise variant {vname} did not run ({exc.message}); left out")
    names = [s.name for s in tb.signals]
    stol, mtol, noise = calibrate(nominal, variants, names)
    units = {m.name: m.unit for m in tb.measures}
    sc = nominal.scale
    return Golden(tb.id, str(deck.path.relative_to(deck.path.parents[1])), deck.content_hash(),
                  nominal.ngspice_version, sc.name, sc.unit, sc.values.real.copy(),
                  {s.name: (s.unit, nominal[s.name].real.copy()) for s in tb.signals},
                  {k: (units.get(k, ""), v) for k, v in nominal.measures.items()},
                  stol, mtol, noise)


def check_testbench(tb, backend: str = "shared", directory: Path | None = None,
                    **edits) -> Report:
    path = golden_path(tb, directory)
    if not path.exists():
        return Report(tb.id, [Check("golden file", "info", math.nan, math.nan, False,
                                    f"{path} missing; run `cimlut golden update {tb.id}`")])
    g = read_golden(path)
    deck = tb.deck(**edits)
    try:
        result = run(deck, backend=backend)
    except SpiceError as exc:
        return Report(tb.id, [Check("simulation", "info", math.nan, math.nan, False,
                                    f"{type(exc).__name__}: {exc.message}")])
    report = compare(g, result)
    if deck.content_hash() != g.deck_sha256:
        report.checks.insert(0, Check("deck", "info", math.nan, math.nan, True,
                                      "deck, includes, models or edits differ from the golden's"))
    if result.ngspice_version != g.ngspice_version:
        report.checks.insert(0, Check("ngspice", "info", math.nan, math.nan, True,
                                      f"golden made with ngspice-{g.ngspice_version}, "
                                      f"this is ngspice-{result.ngspice_version}"))
    return report
