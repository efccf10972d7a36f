"""Sweep specs: which testbench, which axes, which quantities make a cell's tables.

A spec is a TOML file beside the cell's netlists (`netlists/<cell>/tables.toml`):

    cell = "gaincell_2t"

    [tables.read]
    testbench = "read"
    doc = "read charge vs stored voltage and pulse width"
    corners = ["tt", "ss", "ff"]
    temperature = { units = "degC", values = [0, 27, 85] }
    axes.vstore = { units = "V", linspace = [0.0, 0.9, 10] }
    axes.tpw = { units = "s", values = [2e-9, 5e-9, 10e-9, 15e-9] }
    quantities.qread = { measure = "qread", units = "C" }

    [tables.retention]
    testbench = "hold"
    inner = { name = "time", units = "s", logspace = [-6, -2.7, 25] }
    quantities.v_sn = { signal = "v(sn)", units = "V" }

Outer axes are deck `.param`s, set point by point; the optional inner axis samples the
analysis' own scale (time of a .tran, the swept source of a .dc), so one simulation fills
it. Everything is checked against the deck and the cell declaration before any
simulation, and every error names the spec file and the key.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..circuits import CELLS
from ..errors import CimlutError
from .deck import CORNERS, spice_number


class SpecError(CimlutError, ValueError):
    def __init__(self, path: Path, key: str, message: str):
        self.path, self.key = Path(path), key
        super().__init__(f"{path}: [{key}] {message}")


@dataclass(frozen=True)
class Axis:
    name: str
    units: str
    values: np.ndarray
    long_name: str = ""
    interp: str = "linear"  # "log": interpolate in log(axis); for decades-wide axes


@dataclass(frozen=True)
class Quantity:
    name: str
    units: str
    source: str  # "measure" | "signal"
    ref: str     # the .meas name or the vector name
    interp: str = "linear"  # "log" (positive values) | "asinh" (log-like, sign-safe)
    floor: float = 0.0      # asinh scale: linear below it, logarithmic above


@dataclass(frozen=True)
class MonteCarlo:
    """Seeded device-to-device spread: sample k draws every parameter from
    numpy.random.default_rng([seed, k]), so a sample does not change when more are added."""
    seed: int
    samples: int
    params: tuple[tuple[str, str, float, float], ...]  # (name, "rel"|"abs", nominal, sigma)

    def draw(self, k: int) -> dict[str, float]:
        import numpy as np
        rng = np.random.default_rng([self.seed, k])
        out = {}
        for name, kind, nominal, sigma in self.params:
            z = rng.standard_normal()
            out[name] = nominal * float(np.exp(sigma * z)) if kind == "rel" else nominal + sigma * z
        return out


PROCEDURES = {
    # name: (testbench, outputs {name: units}, settings with defaults)
    "program_verify": ("set", {"g_reached": "S", "pulses": "1", "energy": "J"},
                       {"vp": 1.8, "tpw": 1e-3, "vwl_start": 0.8, "vwl_step": 0.02,
                        "vwl_max": 1.3, "gini": 1.7, "tol": 0.05, "max_pulses": 30}),
}


@dataclass(frozen=True)
class TableSpec:
    name: str
    cell: str
    testbench: str
    doc: str
    corners: tuple[str, ...]
    temperature: Axis
    axes: tuple[Axis, ...]
    inner: Axis | None
    quantities: tuple[Quantity, ...]
    montecarlo: MonteCarlo | None = None
    procedure: str | None = None
    settings: tuple[tuple[str, float], ...] = ()

    @property
    def tb(self):
        return next(t for t in CELLS[self.cell].testbenches if t.name == self.testbench)

    @property
    def outer_shape(self) -> tuple[int, ...]:
        mc = (self.montecarlo.samples,) if self.montecarlo else ()
        return (len(self.corners), len(self.temperature.values)) + tuple(
            len(a.values) for a in self.axes) + mc


@dataclass(frozen=True)
class CellSpec:
    path: Path
    cell: str
    tables: tuple[TableSpec, ...]
    text: str


MAX_AXIS = 100_000  # values per axis: a larger count is a typo, refused before it is made
_TABLE_KEYS = {"testbench", "doc", "corners", "temperature", "axes", "inner", "quantities",
               "montecarlo", "procedure", "settings"}
_AXIS_KEYS = {"units", "values", "linspace", "logspace", "long_name", "name", "interp"}
_QUANTITY_KEYS = {"measure", "signal", "procedure", "units", "interp", "floor"}


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _table(path, key, value, what: str) -> dict:
    """A spec entry that must be a TOML table."""
    if not isinstance(value, dict):
        raise SpecError(path, key, f"{what} is a table ({{...}} or a [section]), "
                        f"not {type(value).__name__} {value!r}")
    return value


def _known(path, key, d: dict, allowed, what: str = "key") -> None:
    extra = set(d) - set(allowed)
    if extra:
        raise SpecError(path, key, f"unknown {what}(s) {', '.join(sorted(extra))}; "
                        f"allowed: {', '.join(sorted(allowed))}")


def _number(path, key, value, what: str, integer: bool = False) -> float:
    if not _is_number(value) or (integer and not float(value).is_integer()):
        kind = "an integer" if integer else "a number"
        raise SpecError(path, key, f"{what} = {value!r} must be {kind} (TOML numbers are "
                        f"written without quotes)")
    return float(value)


def _values(path, key, d) -> np.ndarray:
    given = [k for k in ("values", "linspace", "logspace") if k in d]
    if len(given) != 1:
        raise SpecError(path, key, "give exactly one of values, linspace, logspace")
    kind = given[0]
    raw = d[kind]
    if kind == "values":
        if not isinstance(raw, list) or not all(_is_number(v) for v in raw):
            raise SpecError(path, key, f"values = {raw!r} must be a list of numbers "
                            f"(without quotes)")
        vals = np.asarray(raw, dtype=float)
    else:
        if not isinstance(raw, list) or len(raw) != 3:
            raise SpecError(path, key, f"{kind} = {raw!r} must be [start, stop, count]")
        lo = _number(path, key, raw[0], f"{kind} start")
        hi = _number(path, key, raw[1], f"{kind} stop")
        n = _number(path, key, raw[2], f"{kind} count", integer=True)
        if not 1 <= n <= MAX_AXIS:
            raise SpecError(path, key, f"{kind} asks for {int(n):,} values; an axis holds "
                            f"1 to {MAX_AXIS:,}")
        fn = np.linspace if kind == "linspace" else np.logspace
        vals = fn(lo, hi, int(n))
    if vals.ndim != 1 or vals.size == 0:
        raise SpecError(path, key, f"empty range from {kind} = {d[kind]!r}")
    if not np.all(np.isfinite(vals)):
        raise SpecError(path, key, "values must be finite")
    if vals.size > 1 and not (np.all(np.diff(vals) > 0)):
        raise SpecError(path, key, "values must be strictly increasing")
    return vals


def _axis(path, key, name, d, want_units: str | None) -> Axis:
    if not isinstance(d, dict):
        raise SpecError(path, key, "an axis is a table: {units = ..., values|linspace|logspace}")
    _known(path, key, d, _AXIS_KEYS)
    units = d.get("units")
    if units is None:
        raise SpecError(path, key, "units missing")
    if not isinstance(units, str):
        raise SpecError(path, key, f"units = {units!r} must be a string")
    if want_units is not None and units != want_units:
        raise SpecError(path, key, f"unit mismatch: {units!r} given, the deck parameter is "
                        f"in {want_units!r}")
    values = _values(path, key, d)
    interp = d.get("interp", "linear")
    if interp not in ("linear", "log"):
        raise SpecError(path, key, f"interp must be linear or log, not {interp!r}")
    if interp == "log" and values[0] <= 0:
        raise SpecError(path, key, "interp = log needs positive values")
    return Axis(name, units, values, d.get("long_name", name), interp)


def load_spec(path: str | Path) -> CellSpec:
    """Read and check a spec; raise SpecError naming the file and key on the first fault."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(path, "file", f"cannot read the spec: {exc}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(path, "toml", str(exc)) from None
    cell = raw.get("cell")
    if not isinstance(cell, str) or cell not in CELLS:
        raise SpecError(path, "cell", f"unknown cell {cell!r}; known: {', '.join(CELLS)}")
    extra = set(raw) - {"cell", "tables"}
    if extra:
        raise SpecError(path, ", ".join(sorted(extra)), "unknown top-level key(s)")
    tables = []
    for tname, t in _table(path, "tables", raw.get("tables") or {}, "tables").items():
        k = f"tables.{tname}"
        _table(path, k, t, "a table spec")
        _known(path, k, t, _TABLE_KEYS)
        for sub in ("axes", "quantities", "settings", "montecarlo", "inner", "temperature"):
            if sub in t:
                _table(path, f"{k}.{sub}", t[sub], sub)
        tbs = {tb.name: tb for tb in CELLS[cell].testbenches}
        procedure, settings = t.get("procedure"), ()
        if procedure is not None:
            if not isinstance(procedure, str) or procedure not in PROCEDURES:
                raise SpecError(path, f"{k}.procedure", f"unknown procedure {procedure!r}; "
                                f"known: {', '.join(PROCEDURES)}")
            ptb, _, defaults = PROCEDURES[procedure]
            if t.get("testbench", ptb) != ptb:
                raise SpecError(path, f"{k}.testbench", f"{procedure} runs testbench {ptb!r}")
            t = {**t, "testbench": ptb}
            given = t.get("settings", {})
            bad = set(given) - set(defaults)
            if bad:
                raise SpecError(path, f"{k}.settings", f"unknown setting(s) {', '.join(sorted(bad))};"
                                f" {procedure} takes {', '.join(defaults)}")
            settings = tuple((n, _number(path, f"{k}.settings.{n}", given.get(n, v), n,
                                         integer=isinstance(v, int)))
                             for n, v in defaults.items())
        if not isinstance(t.get("testbench"), str) or t["testbench"] not in tbs:
            raise SpecError(path, f"{k}.testbench", f"unknown testbench {t.get('testbench')!r};"
                            f" {cell} has {', '.join(tbs)}")
        tb = tbs[t["testbench"]]
        deck = tb.deck()
        in_deck = deck.default_params()
        declared = {p.name: p for p in CELLS[cell].params + tb.params}
        corners = t.get("corners", ["tt"])
        if not isinstance(corners, list):
            raise SpecError(path, f"{k}.corners", f"corners = {corners!r} must be a list, "
                            f"e.g. [\"tt\"]")
        corners = tuple(corners)
        if not all(isinstance(c, str) for c in corners):
            raise SpecError(path, f"{k}.corners", "corners must be names, e.g. [\"tt\", \"ss\"]")
        if len(set(corners)) != len(corners):
            raise SpecError(path, f"{k}.corners", f"a corner is listed twice: {list(corners)}")
        bad = [c for c in corners if c not in CORNERS]
        if bad or not corners:
            raise SpecError(path, f"{k}.corners", f"unknown or no corner(s) {bad}; "
                            f"choose from {', '.join(CORNERS)}")
        temp = _axis(path, f"{k}.temperature", "temperature",
                     t.get("temperature", {"units": "degC", "values": [27.0]}), "degC")
        axes = []
        for aname, a in (t.get("axes") or {}).items():
            ak = f"{k}.axes.{aname}"
            _table(path, ak, a, "an axis")
            if procedure == "program_verify" and aname == "target":
                axes.append(_axis(path, ak, aname, a, "S"))
                continue
            if aname not in in_deck:
                raise SpecError(path, ak, f"unknown axis: {tb.path.name} has no .param {aname} "
                                f"(it has {', '.join(sorted(in_deck))})")
            want = declared[aname].unit if aname in declared else None
            axes.append(_axis(path, ak, aname, a, want))
        inner = None
        if "inner" in t:
            ik = f"{k}.inner"
            name = t["inner"].get("name")
            if not name or not isinstance(name, str):
                raise SpecError(path, ik, "inner axis needs a name (a string)")
            inner = _axis(path, ik, name, t["inner"], None)
            lo, hi = deck.analysis_range()
            if inner.values[0] < lo or inner.values[-1] > hi:
                raise SpecError(path, ik, f"inner axis [{inner.values[0]:g}, "
                                f"{inner.values[-1]:g}] leaves the analysis range "
                                f"[{lo:g}, {hi:g}] of {tb.path.name}")
        quantities = []
        measures = {m.name: m for m in tb.measures}
        signals = {s.name: s for s in tb.signals}
        for qname, q in (t.get("quantities") or {}).items():
            qk = f"{k}.quantities.{qname}"
            _table(path, qk, q, "a quantity")
            _known(path, qk, q, _QUANTITY_KEYS)
            interp = q.get("interp", "linear")
            floor = _number(path, qk, q.get("floor", 0.0), "floor")
            if interp not in ("linear", "log", "asinh") or (interp == "asinh" and floor <= 0):
                raise SpecError(path, qk, "interp must be linear, log, or asinh with floor > 0")
            if sum(x in q for x in ("measure", "signal", "procedure")) != 1:
                raise SpecError(path, qk, "give exactly one of measure, signal, procedure")
            if "procedure" in q:
                outputs = PROCEDURES[procedure][1] if procedure else {}
                if q["procedure"] not in outputs:
                    raise SpecError(path, qk, f"{q['procedure']!r} is not an output of "
                                    f"{procedure or 'a non-procedure table'}")
                src, ref, unit = "procedure", q["procedure"], outputs[q["procedure"]]
            elif "measure" in q:
                if q["measure"] not in measures:
                    raise SpecError(path, qk, f"{tb.path.name} has no .meas {q['measure']!r}")
                src, ref, unit = "measure", q["measure"], measures[q["measure"]].unit
            else:
                if inner is None:
                    raise SpecError(path, qk, "a signal quantity needs an inner axis")
                if q["signal"] not in signals:
                    raise SpecError(path, qk, f"signal {q['signal']!r} is not declared for "
                                    f"{tb.id} ({', '.join(signals)})")
                src, ref, unit = "signal", q["signal"], signals[q["signal"]].unit
            if q.get("units") != unit:
                raise SpecError(path, qk, f"unit mismatch: {q.get('units')!r} given, "
                                f"{ref} is in {unit!r}")
            quantities.append(Quantity(qname, unit, src, ref, interp, floor))
        if not quantities:
            raise SpecError(path, f"{k}.quantities", "no quantities")
        if procedure == "program_verify" and "target" not in {a.name for a in axes}:
            raise SpecError(path, f"{k}.axes", "program_verify needs a target axis (S)")
        mc = None
        if "montecarlo" in t:
            mk, m = f"{k}.montecarlo", t["montecarlo"]
            _known(path, mk, m, {"seed", "samples", "params"})
            if not all(_is_number(m.get(x)) and float(m[x]).is_integer() for x in ("seed", "samples")):
                raise SpecError(path, mk, "needs integer seed and samples")
            seed, samples = int(m["seed"]), int(m["samples"])
            if samples < 1:
                raise SpecError(path, mk, "samples must be >= 1")
            drawn = []
            for pname, d in sorted(_table(path, f"{mk}.params", m.get("params") or {},
                                          "params").items()):
                _table(path, f"{mk}.params.{pname}", d, "a varied parameter")
                _known(path, f"{mk}.params.{pname}", d, {"rel_sigma", "sigma"})
                if pname not in in_deck:
                    raise SpecError(path, f"{mk}.params.{pname}", f"{tb.path.name} has no "
                                    f".param {pname}")
                if pname in {a.name for a in axes}:
                    raise SpecError(path, f"{mk}.params.{pname}", "is also a swept axis")
                kinds = [x for x in ("rel_sigma", "sigma") if x in d]
                if len(kinds) != 1 or not _is_number(d[kinds[0]]) or float(d[kinds[0]]) < 0:
                    raise SpecError(path, f"{mk}.params.{pname}", "give rel_sigma (lognormal) "
                                    "or sigma (normal, in the parameter's units), >= 0")
                nominal = spice_number(in_deck[pname])
                drawn.append((pname, "rel" if kinds[0] == "rel_sigma" else "abs", nominal,
                              float(d[kinds[0]])))
            if not drawn:
                raise SpecError(path, f"{mk}.params", "no parameters to vary")
            mc = MonteCarlo(seed, samples, tuple(drawn))
        tables.append(TableSpec(tname, cell, tb.name, t.get("doc", tb.doc), corners, temp,
                                tuple(axes), inner, tuple(quantities), mc, procedure, settings))
    if not tables:
        raise SpecError(path, "tables", "no tables")
    return CellSpec(path, cell, tuple(tables), text)


def spec_path(cell: str) -> Path:
    return CELLS[cell].path.parent / "tables.toml"


