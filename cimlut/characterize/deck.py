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

from .errors import DeckParamError, DeckRefused

CORNERS = ("tt", "ff", "ss", "sf", "fs")

_PARAM = re.compile(r"^\s*\.param\s+([A-Za-z_]\w*)\s*=\s*(\S+)(.*)$", re.I)
_INCLUDE = re.compile(r"^(\s*\.(?:include|inc|lib))\s+(\"[^\"]+\"|\S+)(.*)$", re.I)
_MEAS = re.compile(r"^\s*\.meas(?:ure)?\s+\w+\s+([A-Za-z_]\w*)", re.I)
_TRAN = re.compile(r"^\s*\.tran\s+(.*)$", re.I)
_DC = re.compile(r"^\s*\.dc\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)(.*)$", re.I)
_NAME = re.compile(r"[A-Za-z_]\w*")
_WORD = re.compile(r"[A-Za-z_][\w.]*")  # an option value such as gear or trap
# lines that make ngspice run commands: a .control/.exec block, or a file that is a script
_COMMANDS = re.compile(r"^\s*\.(control|endc|exec)\b", re.I)
_SCRIPT = re.compile(r"^\s*\*\s*ng_script", re.I)
_UNIT = {"f": 1e-15, "p": 1e-12, "n": 1e-9, "u": 1e-6, "m": 1e-3, "k": 1e3,
         "meg": 1e6, "g": 1e9, "t": 1e12}


def spice_number(text: str) -> float:
    """Parse a SPICE number with its scale suffix ('1f', '2.5meg', '10ns')."""
    m = re.fullmatch(r"([-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?)(meg|[fpnumkgt])?[a-z]*",
                     text.strip().lower())
    if not m:
        raise ValueError(f"not a SPICE number: {text!r}")
    return float(m.group(1)) * _UNIT.get(m.group(2) or "", 1.0)


def read_deck_text(path: Path) -> str:
    """A netlist file as text. Binary files are refused; bytes that are not UTF-8 are read as
    latin-1, as ngspice reads them (a comment with a latin-1 'µ')."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DeckRefused(str(path), f"cannot read the file: {exc.strerror or exc}") from None
    if b"\0" in data:
        raise DeckRefused(str(path), "is a binary file, not a SPICE netlist")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


@functools.lru_cache(maxsize=256)
def _scan(path: Path, mtime_ns: int, size: int) -> tuple[tuple[tuple[int, str], ...],
                                                        tuple[Path, ...]]:
    """A pulled-in file's command lines and the files it includes, read once per version
    of the file (the sky130 library is megabytes, and every run renders its deck)."""
    lines = read_deck_text(path).splitlines()
    found = [(i, ln) for i, ln in enumerate(lines, 1) if _COMMANDS.match(ln)]
    if lines and _SCRIPT.match(lines[0]):
        found.insert(0, (1, lines[0]))
    return tuple(found), tuple(_include_targets(path, lines))


def _include_targets(path: Path, lines: list[str]) -> list[Path]:
    out = []
    for line in lines:
        m = _INCLUDE.match(line)
        if m:
            target = Path(m.group(2).strip('"'))
            out.append(target if target.is_absolute() else (path.parent / target))
    return out


def check_pulled_in(path: Path) -> list[Path]:
    """Every file the deck at `path` pulls in (.include/.inc/.lib, recursively), each checked
    to hold no ngspice commands: a cell or model file is data, and data never runs code.
    A `.control`/`.exec` block or an `*ng_script` header there raises DeckRefused naming the
    file and line. Returns the files (missing ones are left for ngspice to report)."""
    seen, todo = [], _include_targets(path, read_deck_text(path).splitlines())
    while todo:
        f = todo.pop().resolve()
        if f in seen or not f.is_file():
            continue
        seen.append(f)
        st = f.stat()
        bad, targets = _scan(f, st.st_mtime_ns, st.st_size)
        if bad:
            no, line = bad[0]
            raise DeckRefused(str(path), f"{f}, line {no} ({line.strip()!r}), pulled in by the "
                              f"deck, holds ngspice commands: cimlut runs no commands from the "
                              f"files a deck includes (data never runs code); remove the block")
        todo += targets
    return seen


def _check_value(deck: Path, kind: str, name: str, value) -> None:
    """Parameter and option values reach ngspice as text: only numbers and plain words, so
    that no value can carry a line break or a command into the deck."""
    if not _NAME.fullmatch(str(name)):
        raise DeckParamError(str(deck), f"{kind} name {name!r} is not a SPICE identifier")
    if isinstance(value, bool):
        raise DeckParamError(str(deck), f"{kind} {name} = {value!r}: expected a number")
    if isinstance(value, (int, float)):
        if value != value or value in (float("inf"), float("-inf")):
            raise DeckParamError(str(deck), f"{kind} {name} = {value!r}: not a finite number")
        return
    text = str(value)
    try:
        spice_number(text)
        return
    except ValueError:
        pass
    if kind == "option" and _WORD.fullmatch(text):
        return
    raise DeckParamError(str(deck), f"{kind} {name} = {text!r}: expected a number "
                         f"(SPICE suffixes such as 1f, 2.5meg allowed)"
                         + (" or a plain word" if kind == "option" else ""))


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
            raise DeckRefused(str(self.path), "no such deck file")
        for name, value in self.params.items():
            _check_value(self.path, ".param", name, value)
        for name, value in self.options.items():
            _check_value(self.path, "option", name, value)
        if self.temp is not None:
            _check_value(self.path, "temperature", "temp", self.temp)

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
        return read_deck_text(self.path).splitlines()

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

    def reltol(self) -> float:
        """The deck's `.option reltol` (ngspice's default 1e-3 where it sets none)."""
        m = re.search(r"reltol\s*=\s*(\S+)", "\n".join(self.source_lines()), re.I)
        return spice_number(m.group(1)) if m else 1e-3

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
        includes made absolute (and quoted: a folder may hold spaces), the file's own
        `.control` block replaced by `control`. Every file it pulls in is checked to hold no
        ngspice commands (`check_pulled_in`)."""
        lines = self.source_lines()
        check_pulled_in(self.path)
        known = self.default_params()
        unknown = sorted(set(p.lower() for p in self.params) - set(known))
        if unknown:
            raise DeckParamError(str(self.path), f"no top-level .param {', '.join(unknown)} "
                                 f"in the deck (it has: {', '.join(sorted(known))})")
        wanted = {k.lower(): v for k, v in self.params.items()}
        out, in_control, corner_set, analysis_seen = [], False, False, False
        for i, line in enumerate(lines):
            low = line.strip().lower()
            if i == 0 and _SCRIPT.match(line):
                out.append("* title (an *ng_script header would make the deck a script)")
                continue
            if low.startswith((".control", ".exec")):
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
                line = f'{m.group(1)} "{target}"{rest}'
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
