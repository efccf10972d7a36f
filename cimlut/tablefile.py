"""The HDF5 table format, shared by the writer (characterize) and the reader (models).

One file per cell, one group per table. Each axis is a 1-D dataset made an h5py dimension
scale with `units` and `long_name` (the corner axis holds strings and is never
interpolated); each quantity is an N-D float dataset with the scales attached and `units`;
`status` (int8, CF flag attributes) says per outer point whether the values are real (NaN
where not). xarray opens every group with named dims: `xr.open_dataset(f, group=name,
engine="h5netcdf")`.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from .errors import FileFormatError

SCHEMA_VERSION = 1
# missed_target: a procedure that ran to its end without meeting its target (program-and-
# verify overshoot or too few pulses): its values are real (what the procedure reached).
STATUS = ("ok", "retried_ok", "no_convergence", "measure_failed", "error", "missed_target")


@dataclass
class TableData:
    """A table in memory: named axes (outer first, inner last), quantities, status."""
    name: str
    axes: list[tuple[str, str, str, np.ndarray]]  # (name, units, long_name, values)
    quantities: dict[str, tuple[str, np.ndarray]]  # name -> (units, values over the axes)
    status: np.ndarray                              # over the outer axes
    outer_dims: int
    attrs: dict = field(default_factory=dict)
    axis_interp: dict[str, str] = field(default_factory=dict)
    quantity_interp: dict[str, tuple[str, float]] = field(default_factory=dict)
    per_sample: dict[str, np.ndarray] = field(default_factory=dict)  # Monte Carlo draws
    montecarlo: str = ""


def to_interp_space(values, interp: str, floor: float = 0.0, xp=np):
    """Map values to the space in which the table is interpolated linearly (`xp`: numpy,
    or torch for tensors)."""
    if interp == "log":
        return xp.log(values)
    if interp == "asinh":
        return xp.asinh(values / floor) if xp is not np else np.arcsinh(values / floor)
    return values


def from_interp_space(values, interp: str, floor: float = 0.0, xp=np):
    if interp == "log":
        return xp.exp(values)
    if interp == "asinh":
        return xp.sinh(values) * floor
    return values


@contextmanager
def open_h5(path: Path, what: str = "table file"):
    """Open an HDF5 file to read; the one place that does. A missing, truncated, empty or
    corrupt file, and an item a damaged file lacks, raise FileFormatError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileFormatError(f"{path}: no such {what}")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        size = path.stat().st_size
        why = "empty (0 bytes)" if size == 0 else f"not a readable HDF5 file ({size} bytes)"
        raise FileFormatError(f"{path}: the {what} is {why}: it was truncated or is not "
                              f"what it should be ({_reason(exc)}); rebuild or restore it"
                              ) from None
    try:
        with f:
            yield f
    except (KeyError, OSError, RuntimeError, TypeError) as exc:
        raise FileFormatError(f"{path}: the {what} is damaged or incomplete "
                              f"({_reason(exc)}); rebuild or restore it") from None


def _reason(exc: Exception) -> str:
    text = str(exc).strip().strip('"')
    return text.splitlines()[0][:200] if text else type(exc).__name__


@contextmanager
def atomic_h5(path: Path):
    """An HDF5 file written beside `path` and renamed over it only when complete: a killed
    or failed write leaves the old file as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as f:
            yield f
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_tables(path: Path, tables: list[TableData], attrs: dict) -> Path:
    with atomic_h5(path) as f:
        f.attrs.update({"schema_version": SCHEMA_VERSION, **attrs})
        for t in tables:
            _write_group(f.create_group(t.name), t)
    return Path(path)


def _write_group(g: h5py.Group, t: TableData) -> None:
    g.attrs.update(t.attrs)
    scales = []
    for name, units, long_name, values in t.axes:
        if values.dtype.kind in "OUS":
            ds = g.create_dataset(name, data=np.asarray(values, dtype=object),
                                  dtype=h5py.string_dtype())
        else:
            ds = g.create_dataset(name, data=np.asarray(values, dtype=float))
        ds.make_scale(name)
        ds.attrs.update(units=units, long_name=long_name,
                        interp=t.axis_interp.get(name, "linear"))
        scales.append(ds)
    for qname, (units, values) in t.quantities.items():
        ds = g.create_dataset(qname, data=values, compression="gzip", shuffle=True)
        interp, floor = t.quantity_interp.get(qname, ("linear", 0.0))
        ds.attrs.update(units=units, long_name=qname, interp=interp, interp_floor=floor)
        for i, sc in enumerate(scales[: values.ndim]):
            ds.dims[i].attach_scale(sc)
            ds.dims[i].label = t.axes[i][0]
    if t.per_sample:
        g.attrs["montecarlo"] = t.montecarlo
        sample = g["sample"]
        for name, values in t.per_sample.items():
            ds = g.create_dataset(name, data=values)
            ds.attrs.update(units="", long_name=f"drawn {name[3:]} of each Monte Carlo device")
            ds.dims[0].attach_scale(sample)
            ds.dims[0].label = "sample"
    st = g.create_dataset("status", data=t.status.astype(np.int8), compression="gzip")
    st.attrs.update(flag_values=np.arange(len(STATUS), dtype=np.int8),
                    flag_meanings=" ".join(STATUS), long_name="per-point simulation status")
    for i, sc in enumerate(scales[: t.outer_dims]):
        st.dims[i].attach_scale(sc)
        st.dims[i].label = t.axes[i][0]


def describe(path: Path) -> str:
    """Axes with units, quantities, status counts and provenance of a table file."""
    rows = [str(path)]
    with open_h5(path) as f:
        for k in ("schema_version", "cell", "cimlut_version", "ngspice_version", "created",
                  "netlist_sha256", "models_sha256", "spec_file"):
            if k in f.attrs:
                rows.append(f"  {k}: {f.attrs[k]}")
        for name, g in f.items():
            rows.append(f"  table {name}: {g.attrs.get('doc', '')} [{g.attrs.get('testbench', '')}]")
            for ds in g.values():
                if ds.is_scale:
                    v = ds[()]
                    if v.dtype.kind in "OS":
                        span = ", ".join(x.decode() if isinstance(x, bytes) else str(x) for x in v)
                    else:
                        span = f"{v.min():.4g} .. {v.max():.4g}"
                    rows.append(f"    axis {ds.name.split('/')[-1]:12s} {len(v):4d} "
                                f"[{ds.attrs.get('units', '')}] {span}")
            for ds in g.values():
                if not ds.is_scale and ds.name.split("/")[-1] != "status":
                    dims = ", ".join(d.label or "?" for d in ds.dims)
                    rows.append(f"    {ds.name.split('/')[-1]:17s} ({dims}) [{ds.attrs['units']}]")
            st = g["status"][()]
            counts = ", ".join(f"{STATUS[i]} {int((st == i).sum())}" for i in range(len(STATUS))
                               if (st == i).any())
            rows.append(f"    status: {counts}")
    return "\n".join(rows)
