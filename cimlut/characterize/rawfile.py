"""Read ngspice rawfiles (binary or ASCII), the format `ngspice -b -r` and `write` produce."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class RawPlot:
    title: str
    plotname: str
    names: list[str]
    types: list[str]
    data: np.ndarray  # (points, variables); complex128 for complex plots

    def __getitem__(self, name: str) -> np.ndarray:
        return self.data[:, self.names.index(name)]


def read_raw(path: str | Path) -> list[RawPlot]:
    """Every plot in the file, in order (a file may hold several analyses)."""
    buf = Path(path).read_bytes()
    plots, pos = [], 0
    while pos < len(buf):
        header, pos = _read_header(buf, pos)
        if header is None:
            break
        nvars, npts = int(header["no. variables"]), int(header["no. points"])
        complex_ = "complex" in header.get("flags", "").lower()
        names, types = header["_names"], header["_types"]
        if header["_format"] == "binary":
            width = 2 if complex_ else 1
            count = nvars * npts * width
            arr = np.frombuffer(buf, dtype="<f8", count=count, offset=pos).copy()
            pos += count * 8
            arr = arr.reshape(npts, nvars * width)
            data = arr[:, 0::2] + 1j * arr[:, 1::2] if complex_ else arr
        else:
            data, pos = _read_ascii_values(buf, pos, nvars, npts, complex_)
        plots.append(RawPlot(header.get("title", ""), header.get("plotname", ""),
                             names, types, data))
    return plots


def _read_header(buf: bytes, pos: int):
    header: dict = {}
    while True:
        end = buf.find(b"\n", pos)
        if end < 0:
            return None, len(buf)
        line = buf[pos:end].decode("latin-1")
        pos = end + 1
        if not line.strip():
            continue
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key == "variables":
            n = int(header["no. variables"])
            names, types = [], []
            first = value.split()
            rows = [first] if first else []
            while len(rows) < n:
                end = buf.find(b"\n", pos)
                row = buf[pos:end].decode("latin-1").split()
                pos = end + 1
                if row:
                    rows.append(row)
            for row in rows:
                names.append(row[1].lower())
                types.append(row[2].lower())
            header["_names"], header["_types"] = names, types
        elif key in ("binary", "values"):
            header["_format"] = key
            return header, pos
        else:
            header[key] = value.strip()


def _read_ascii_values(buf, pos, nvars, npts, complex_):
    end = buf.find(b"\nTitle:", pos)
    end = len(buf) if end < 0 else end + 1
    chunk = buf[pos:end].decode("latin-1").split()
    vals = []
    i = 0
    for _ in range(npts):
        i += 1  # point index
        for _ in range(nvars):
            tok = chunk[i]
            i += 1
            if complex_:
                re_, im = tok.split(",")
                vals.append(complex(float(re_), float(im)))
            else:
                vals.append(float(tok))
    data = np.array(vals).reshape(npts, nvars)
    return data, end
