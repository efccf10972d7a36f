"""Turn what ngspice printed into a result or the right error; shared by both backends."""

from __future__ import annotations

import re

from .deck import Deck
from .errors import ConvergenceError, DeckError
from .messages import first_of, netlist_line_no
from .result import UNITS, SimResult, Vector, canonical_name, parse_measures

_HEADER = re.compile(r"\s*error in netlist line no\.?\s*\d+.*:\s*$", re.I)
SCALE_NAMES = ("time", "frequency", "v-sweep", "i-sweep", "temp-sweep", "res-sweep")


def raise_for_messages(deck: Deck, lines: list[str], produced_data: bool) -> None:
    """Raise DeckError or ConvergenceError when the printed output says so."""
    log = "\n".join(lines)
    errors = first_of(lines, "error")
    if errors:
        line_no = netlist_line_no(lines)
        src = deck.source_lines()
        if line_no is not None and (not 1 <= line_no <= len(src)
                                    or src[line_no - 1].lstrip().startswith("*")):
            line_no = None  # not a line of this deck that can be wrong (an included file's)
        if line_no is None:
            line_no = _locate(errors, src, deck)
        line = src[line_no - 1] if line_no and line_no <= len(src) else None
        # ngspice 46 heads a message with "Error in netlist line no. N, new internal line
        # no. M:" (39: "Netlist line no. M:"): where, not what; it is left out when a line says what
        said = [e for e in errors if not _HEADER.match(e)] or errors
        detail = "; ".join(dict.fromkeys(e.strip() for e in said
                                         if not e.lower().startswith("error: fatal error")))
        if "could not find" in detail.lower() and "models/" in detail:
            detail += " (run `make setup` or `cimlut setup` to link the sky130 models)"
        raise DeckError(str(deck.path), detail, line_no, line, log)
    stalls = first_of(lines, "convergence")
    if stalls or not produced_data:
        why = "; ".join(dict.fromkeys(s.strip() for s in stalls)) or "no data rows produced"
        raise ConvergenceError(str(deck.path), f"no convergence: {why}", log)


def _locate(errors: list[str], src: list[str], deck: Deck) -> int | None:
    """Find the deck line an error is about: an instance name, or a file it names."""
    for err in errors:
        m = (re.search(r"unknown (?:subckt|model)[^:]*:\s*(\S+)", err, re.I)
             or re.search(r"^\s*warning:\s*([\w.]+):", err, re.I)
             # 46: "Warning: 'r9 in 0' is not a valid resistor instance line, ignored!"
             or re.search(r"^\s*warning:\s*'([\w.]+)[^']*' is not a valid", err, re.I))
        if m:
            inst = m.group(1).split(".")[0].lower()
            for i, line in enumerate(src, 1):
                if line.strip().lower().split(" ")[0] == inst:
                    return i
        m = re.search(r"\bfile\s+(\S+)", err, re.I)
        if m:
            base = m.group(1).rstrip(".,").split("/")[-1]
            for i, line in enumerate(src, 1):
                if base in line and line.strip().startswith("."):
                    return i
    return None


def build_result(deck: Deck, backend: str, version: str, plotname: str,
                 columns: list[tuple[str, str, object]], lines: list[str]) -> SimResult:
    """columns: (ngspice name, type name, values) in any order; the scale goes first."""
    vectors = {}
    named = [(canonical_name(n, t), t, v) for n, t, v in columns]
    scale = [c for c in named if c[0].removeprefix("v(").rstrip(")") in SCALE_NAMES]
    rest = sorted((c for c in named if c not in scale), key=lambda c: c[0])
    for name, vtype, values in scale[:1] + rest:
        vectors[name] = Vector(name, UNITS.get(vtype, ""), values)
    measures, failed = parse_measures(lines, deck.measure_names())
    return SimResult(str(deck.path), backend, version, plotname, vectors, measures, failed, lines)
