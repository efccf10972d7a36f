"""Device tables in torch: load one HDF5 group, check it, interpolate it.

A `Table` is one group of a table file (`data/tables/<cell>.h5`) with its corner chosen by
name (never interpolated). Every other axis is interpolated multilinearly in the space the
file declares (`interp` = linear or log per axis; linear, log or asinh per quantity), with
float64 fractional indices on non-uniform axes. Queries outside an axis are clamped and
counted, or raise, as `policy` says; `Table.out_of_range` holds the counts per axis.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch

from ..errors import CimlutError
from ..tablefile import SCHEMA_VERSION, from_interp_space, open_h5, to_interp_space

POLICIES = ("clamp", "raise")


class TableError(CimlutError, ValueError):
    """A table file that is missing, of another schema version, or lacks an expected item."""


class OutOfRangeError(CimlutError, ValueError):
    """A query outside a table axis under the `raise` policy."""


@dataclass(frozen=True)
class Axis:
    name: str
    units: str
    long_name: str
    values: np.ndarray  # ascending, in the axis' own units
    interp: str          # "linear" or "log"

    @property
    def lo(self) -> float:
        return float(self.values[0])

    @property
    def hi(self) -> float:
        return float(self.values[-1])


@dataclass(frozen=True)
class Quantity:
    name: str
    units: str
    interp: str          # "linear", "log" or "asinh"
    floor: float
    values: np.ndarray   # over the table's axes (corner already selected)


def _fwd(x: torch.Tensor, interp: str, floor: float = 0.0) -> torch.Tensor:
    return to_interp_space(x, interp, floor, xp=torch)


def _inv(x: torch.Tensor, interp: str, floor: float = 0.0) -> torch.Tensor:
    return from_interp_space(x, interp, floor, xp=torch)


def _text(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class Table:
    """One table at one corner: named axes with units, quantities, and interpolation."""

    def __init__(self, path: Path, group: str, corner: str, axes: list[Axis],
                 quantities: dict[str, Quantity], attrs: dict, policy: str = "clamp"):
        if policy not in POLICIES:
            raise ValueError(f"out-of-range policy {policy!r}: expected one of {POLICIES}")
        self.path, self.group, self.corner = Path(path), group, corner
        self.axes = {a.name: a for a in axes}
        self.quantities = quantities
        self.attrs = attrs
        self.policy = policy
        self.out_of_range: Counter[str] = Counter()
        self._grids = {}
        for a in axes:
            g = torch.as_tensor(a.values, dtype=torch.float64)
            g = torch.log(g) if a.interp == "log" else g
            step = (g[-1] - g[0]) / max(len(g) - 1, 1)
            uniform = len(g) > 1 and bool(torch.allclose(g, g[0] + step * torch.arange(len(g), dtype=torch.float64), rtol=0, atol=1e-9 * float(abs(step))))
            self._grids[a.name] = (g, uniform)
        self._values = {n: _fwd(torch.as_tensor(q.values, dtype=torch.float64), q.interp, q.floor)
                        for n, q in quantities.items()}

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, path: str | Path, group: str, corner: str = "tt", *,
             axes: dict[str, str] | None = None, quantities: dict[str, str] | None = None,
             policy: str = "clamp") -> "Table":
        """Read `group` of `path` at `corner`, checking the schema version and that each
        expected axis and quantity exists with the expected units (name -> units).

        The table's axes are those of the quantities asked for (all must share them); with
        none asked for, those of the quantities over the most axes."""
        path = Path(path)
        where = f"{path}:{group}"
        if not path.is_file():
            raise TableError(f"{path}: no such table file (build it with `cimlut tables build`)")
        with open_h5(path) as f:
            version = f.attrs.get("schema_version")
            if version is None or int(version) != SCHEMA_VERSION:
                raise TableError(f"{path}: schema version {version if version is None else int(version)}, this cimlut reads "
                                 f"version {SCHEMA_VERSION}; rebuild it with `cimlut tables build`")
            if group not in f:
                raise TableError(f"{path}: no table {group!r} (has {', '.join(f)})")
            g = f[group]
            dims_of = {n: [d.label for d in ds.dims] for n, ds in g.items()
                       if isinstance(ds, h5py.Dataset) and not ds.is_scale and n != "status"
                       and len(ds.dims) >= 2 and ds.dims[0].label == "corner"}
            if quantities:
                for n in quantities:
                    if n not in dims_of:
                        raise TableError(f"{where}: missing quantity {n!r} "
                                         f"(has {', '.join(dims_of) or 'none'})")
                names = list(quantities)
            else:
                longest = max(len(d) for d in dims_of.values()) if dims_of else 0
                names = [n for n, d in dims_of.items() if len(d) == longest]
            if not names:
                raise TableError(f"{where}: holds no quantity over (corner, temperature, ...)")
            dims = dims_of[names[0]]
            for n in names:
                if dims_of[n] != dims:
                    raise TableError(f"{where}: {n!r} is over {dims_of[n]}, {names[0]!r} over "
                                     f"{dims}: load them as separate tables")
            if dims[:2] != ["corner", "temperature"]:
                raise TableError(f"{where}: expected dims (corner, temperature, ...), got {dims}")
            corners = [_text(c) for c in g["corner"][()]]
            if corner not in corners:
                raise TableError(f"{where}: no corner {corner!r} (has {', '.join(corners)})")
            ci = corners.index(corner)
            ax = [Axis(d, _text(g[d].attrs.get("units", "")), _text(g[d].attrs.get("long_name", d)),
                       np.asarray(g[d][()], dtype=float), _text(g[d].attrs.get("interp", "linear")))
                  for d in dims[1:]]
            qs = {}
            for n in names:
                ds = g[n]
                qs[n] = Quantity(n, _text(ds.attrs.get("units", "")),
                                 _text(ds.attrs.get("interp", "linear")),
                                 float(ds.attrs.get("interp_floor", 0.0)),
                                 np.asarray(ds[ci], dtype=float))
            attrs = {k: _text(v) if isinstance(v, (bytes, str)) else v for k, v in g.attrs.items()}
            attrs["file"] = {k: _text(v) if isinstance(v, (bytes, str)) else v
                             for k, v in f.attrs.items()}
            status = np.asarray(g["status"][ci]) if "status" in g else None
        for n, q in qs.items():
            bad = ~np.isfinite(q.values)
            if bad.any():
                flags = ""
                if status is not None:
                    from ..tablefile import STATUS
                    codes, counts = np.unique(status[status != 0], return_counts=True)
                    flags = "; status " + ", ".join(f"{STATUS[c] if 0 <= c < len(STATUS) else c}"
                                                    f" {k}" for c, k in zip(codes, counts))
                raise TableError(f"{where}: {int(bad.sum())} of {bad.size} values of {n!r} at "
                                 f"corner {corner} are not finite (points that did not simulate"
                                 f"{flags}); the simulator needs every point: rebuild the table "
                                 f"(`cimlut tables build`) or widen the retry options")
            if q.interp == "log" and (q.values <= 0).any():
                bad = q.values[q.values <= 0]
                raise TableError(f"{where}: {bad.size} of {q.values.size} values of {n!r} at "
                                 f"corner {corner} are <= 0 (smallest {bad.min():.4g} "
                                 f"{q.units}) but it is interpolated in log space: the deck "
                                 f"measures something that can change sign; fix the .meas "
                                 f"or use interp = \"asinh\" in the spec")
        table = cls(path, group, corner, ax, qs, attrs, policy)
        table.status = status
        table._check(axes or {}, quantities or {})
        return table

    def _check(self, axes: dict[str, str], quantities: dict[str, str]) -> None:
        where = f"{self.path}:{self.group}"
        for kind, want, have in (("axis", axes, self.axes), ("quantity", quantities, self.quantities)):
            for name, units in want.items():
                if name not in have:
                    raise TableError(f"{where}: missing {kind} {name!r} "
                                     f"(has {', '.join(have) or 'none'})")
                if units is not None and have[name].units != units:
                    raise TableError(f"{where}: {kind} {name!r} is in {have[name].units!r}, "
                                     f"expected {units!r}")

    def require_within(self, name: str, value: float, field: str) -> None:
        """A fixed operating point (a config value, not data) outside the table is refused
        whatever the policy: clamping it would evaluate another operating point silently."""
        a = self.axes[name]
        if not a.lo <= float(value) <= a.hi:
            raise OutOfRangeError(f"{self.path}:{self.group}: {name}={float(value):.6g} "
                                  f"{a.units} (config {field}) is outside the table's "
                                  f"[{a.lo:.6g}, {a.hi:.6g}] {a.units}; choose a value inside "
                                  f"or build tables that span it")

    # ------------------------------------------------------------ interpolation
    @property
    def dims(self) -> list[str]:
        return list(self.axes)

    def axis(self, name: str) -> Axis:
        return self.axes[name]

    def _frac_index(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """Fractional index of x along axis `name` (float64), clamped or raising per policy."""
        a = self.axes[name]
        g, uniform = self._grids[name]
        x = x.to(torch.float64)
        n = len(g)
        lo_v, hi_v = a.lo, a.hi
        tol = 1e-9 * max(abs(lo_v), abs(hi_v), 1e-300)
        outside = (x < lo_v - tol) | (x > hi_v + tol)
        if outside.any():
            count = int(outside.sum())
            if self.policy == "raise":
                bad = x[outside].flatten()[0].item()
                raise OutOfRangeError(f"{self.path}:{self.group}: {name}={bad:.6g} {a.units} is "
                                      f"outside [{lo_v:.6g}, {hi_v:.6g}] ({count} queries)")
            self.out_of_range[name] += count
            x = x.clamp(lo_v, hi_v)
        if n == 1:
            return torch.zeros_like(x)
        if a.interp == "log":
            x = torch.log(x)
        if uniform:
            fi = (x - g[0]) / ((g[-1] - g[0]) / (n - 1))
        else:
            i = torch.searchsorted(g, x.contiguous(), right=True).clamp(1, n - 1)
            g0, g1 = g[i - 1], g[i]
            fi = (i - 1).to(torch.float64) + (x - g0) / (g1 - g0)
        return fi.clamp(0, n - 1)

    def __call__(self, quantity: str, **coords) -> torch.Tensor:
        """Interpolate `quantity` at the coordinates (one keyword per axis, broadcastable
        tensors or numbers in the axis' units). Returns float64 in the quantity's units."""
        if quantity not in self.quantities:
            raise KeyError(f"{self.path}:{self.group}: no quantity {quantity!r} "
                           f"(has {', '.join(self.quantities)})")
        missing = [d for d in self.axes if d not in coords]
        extra = [c for c in coords if c not in self.axes]
        if missing or extra:
            raise KeyError(f"{self.path}:{self.group}: {quantity} needs coordinates "
                           f"{', '.join(self.axes)}; missing {missing}, unknown {extra}")
        xs = torch.broadcast_tensors(*[torch.as_tensor(coords[d], dtype=torch.float64)
                                       for d in self.axes])
        q = self.quantities[quantity]
        vals = self._values[quantity]
        shape = xs[0].shape
        flat = vals.reshape(-1)
        strides = [math.prod(vals.shape[k + 1:]) for k in range(vals.ndim)]
        base = torch.zeros(shape, dtype=torch.long)
        parts = []
        for k, d in enumerate(self.axes):
            n = vals.shape[k]
            fi = self._frac_index(d, xs[k])
            i0 = fi.floor().long().clamp(0, max(n - 2, 0))
            w = fi - i0
            base = base + i0 * strides[k]
            parts.append((w, strides[k] if n > 1 else 0))
        out = torch.zeros(shape, dtype=torch.float64)
        for corner in range(1 << len(parts)):
            idx = base
            wt = torch.ones(shape, dtype=torch.float64)
            for k, (w, s) in enumerate(parts):
                if corner >> k & 1:
                    if s == 0:
                        wt = None
                        break
                    idx = idx + s
                    wt = wt * w
                else:
                    wt = wt * (1 - w)
            if wt is None:
                continue
            out = out + wt * flat[idx]
        return _inv(out, q.interp, q.floor)

    def report(self) -> str:
        """Out-of-range counts, one per axis, or '' when every query was inside."""
        return ", ".join(f"{self.group}.{k}: {v}" for k, v in self.out_of_range.items() if v)

    def __repr__(self) -> str:
        ax = ", ".join(f"{a.name}[{len(a.values)}, {a.units}]" for a in self.axes.values())
        return f"Table({self.path.name}:{self.group} @ {self.corner}; {ax}; {', '.join(self.quantities)})"

    def interpolator(self, quantity: str, compile: bool = True, dtype=torch.float32):
        """A fused lookup `f(*coords) -> values` in float32, coordinates in axis order, for
        hot loops. Each grid cell's 2^n corner values are stored together (one cache line
        per lookup, not 2^n scattered reads); a bucket map on a uniform grid finer than the
        smallest segment finds the segment of a non-uniform axis without a search, and the
        fractional index is taken from that segment's own start, so float32 indices stay
        exact to ~1e-6 (`dtype=torch.float64` to check; benchmarks/bench_model.py prints
        both). Counts out-of-range queries like `__call__`; honours policy `raise`."""
        q = self.quantities[quantity]
        names = list(self.axes)
        vals = self._values[quantity].to(torch.float32)
        active = [k for k, d in enumerate(names) if vals.shape[k] > 1]
        core = vals.reshape([vals.shape[k] for k in active])
        m = len(active)
        cells = [s - 1 for s in core.shape]
        stacked = torch.empty(*cells, 1 << m)
        for c in range(1 << m):
            idx = tuple(slice(c >> j & 1, (c >> j & 1) + cells[j])
                        for j in range(m))
            stacked[..., c] = core[idx]
        stacked = stacked.reshape(-1, 1 << m).contiguous()
        strides = [math.prod(cells[j + 1:]) for j in range(m)]
        specs = []
        for j, k in enumerate(active):
            d = names[k]
            g, uniform = self._grids[d]
            a = self.axes[d]
            nb = 1
            if not uniform:
                nb = int(min(65536, math.ceil(float(g[-1] - g[0]) / float(torch.diff(g).min())) * 2))
            edges = g[0] + (g[-1] - g[0]) * torch.arange(nb, dtype=torch.float64) / nb
            bucket = (torch.searchsorted(g, edges, right=True) - 1).clamp(0, len(g) - 2)
            specs.append((k, a.interp == "log", a.lo, a.hi, uniform, g.to(dtype), float(g[0]),
                          float((g[-1] - g[0]) / (len(g) - 1)), len(g), strides[j], bucket,
                          nb / float(g[-1] - g[0])))

        bounds = [(self.axes[d].lo, self.axes[d].hi) for d in names]

        def lookup(*xs):
            base, ws = None, []
            outside = [((x < lo) | (x > hi)).sum() for x, (lo, hi) in zip(xs, bounds)]
            for k, is_log, lo, hi, uniform, g, g0, step, n, stride, bucket, inv_w in specs:
                x = xs[k].to(dtype).clamp(lo, hi)
                if is_log:
                    x = torch.log(x)
                if uniform:
                    fi = (x - g0) / step
                    i = fi.floor().clamp(0, n - 2)
                    w = fi - i
                    i = i.long()
                else:
                    b = ((x - g0) * inv_w).long().clamp(0, bucket.numel() - 1)
                    i = bucket[b]
                    i = i + ((x >= g[(i + 1).clamp(max=n - 1)]) & (i < n - 2)).long()
                    w = ((x - g[i]) / (g[i + 1] - g[i])).clamp(0, 1)
                ws.append(w.to(torch.float32))
                base = i * stride if base is None else base + i * stride
            if base is None:
                out = stacked[0, 0].expand(xs[0].shape).clone()
            else:
                out = torch.zeros(base.shape, dtype=torch.float32)
                for c in range(1 << m):
                    wt = None
                    for j, w in enumerate(ws):
                        wj = w if c >> j & 1 else 1 - w
                        wt = wj if wt is None else wt * wj
                    out = out + wt * stacked[base, c]
            return _inv(out, q.interp, q.floor), torch.stack(outside)

        fn = torch.compile(lookup, dynamic=False) if compile else lookup

        def call(*xs):
            if len(xs) != len(names):
                raise TypeError(f"{self.path}:{self.group}: {quantity} takes {len(names)} "
                                f"coordinates ({', '.join(names)}), got {len(xs)}")
            out, outside = fn(*xs)
            for d, c in zip(names, outside.tolist()):
                if c:
                    if self.policy == "raise":
                        raise OutOfRangeError(f"{self.path}:{self.group}: {c} queries of {d} "
                                              f"outside [{self.axes[d].lo:.6g}, {self.axes[d].hi:.6g}]")
                    self.out_of_range[d] += c
            return out
        return call
