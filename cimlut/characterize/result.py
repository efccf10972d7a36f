"""What a run returns, the same whichever backend ran it."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

UNITS = {"time": "s", "voltage": "V", "current": "A", "frequency": "Hz",
         "temperature": "degC", "notype": "", "power": "W", "charge": "C"}

_MEAS = re.compile(r"^\s*([A-Za-z_][\w]*)\s*=\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|failed)",
                   re.I)


@dataclass(frozen=True)
class Vector:
    name: str
    unit: str
    values: np.ndarray


@dataclass
class SimResult:
    """Named vectors with units, `.meas` scalars, and where they came from."""

    deck: str
    backend: str
    ngspice_version: str
    plotname: str
    vectors: dict[str, Vector]
    measures: dict[str, float]
    failed_measures: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)

    def __getitem__(self, name: str) -> np.ndarray:
        try:
            return self.vectors[name.lower()].values
        except KeyError:
            raise KeyError(f"{self.deck}: no vector {name!r}; it has "
                           f"{', '.join(sorted(self.vectors))}") from None

    @property
    def scale(self) -> Vector:
        """The independent variable: time for .tran, the swept source for .dc."""
        return next(iter(self.vectors.values()))


def canonical_name(name: str, vtype: str) -> str:
    """One spelling for both backends: `v(node)`, `i(source)`, `time`."""
    n = name.lower()
    if n.startswith(("v(", "i(")):
        return n
    if n.endswith("#branch"):
        return f"i({n[:-7]})"
    if vtype == "voltage":
        return f"v({n})"
    if vtype == "current":
        return f"i({n})"
    return n


def parse_measures(lines: list[str], wanted: list[str] | None = None) -> tuple[dict[str, float], list[str]]:
    """Read `.meas` results from ngspice's printed output (after 'Measurements for')."""
    values, failed, on = {}, [], False
    for line in lines:
        if "measurements for" in line.lower():
            on = True
            continue
        if not on:
            continue
        m = _MEAS.match(line)
        if m:
            name, val = m.group(1).lower(), m.group(2)
            if val.lower() == "failed":
                values[name] = math.nan
                failed.append(name)
            else:
                values[name] = float(val)
    for name in wanted or []:
        if name not in values:
            values[name] = math.nan
            failed.append(name)
    return values, failed
