"""Classify what ngspice prints.

ngspice >= 42 writes ordinary notes to stderr, and PySpice 1.5 counts every stderr line as
an error; here each line is judged by what it says, whichever stream it came on. The lines
below are those of ngspice 39 and 46 (tests/test_messages.py has both versions' wording).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_CONVERGENCE = re.compile(
    r"timestep too small|transient solution failed|iteration limit reached"
    r"|gmin stepping failed|source stepping failed|dc solution failed"
    r"|no convergence|singular matrix|transient op failed|op failed"
    # ngspice 46 words a failed operating point as errors
    r"|operating point could not be simulated|finding the operating point.* failed",
    re.I,
)
_ERROR = re.compile(
    r"^\s*error\b|\berror:|fatal error|could not find|not found|unknown subckt|unknown model"
    r"|no such|closing \".\" not found|syntax error|unknown parameter"
    r"|can't find|cannot find|undefined",
    re.I,
)
_BENIGN = re.compile(
    r"^\s*(note:|warning:|trying gmin|doing analysis|circuit:|reference value|no\. of data rows"
    r"|using sparse|initial transient|total analysis time|ngspice-\d+ done|\*\*)",
    re.I,
)
_METRIC_NOISE = re.compile(r"^\s*(unsupported ngspice version)|cannot recover and awaits"
                           r"|ngspice exit request|there aren't any circuits loaded|simulation interrupted due to error"
                           # 46: our `write` after a run that made no data; the missing data is
                           # what gets reported (ConvergenceError), as on 39, which said nothing
                           r"|error during 'write': no writable vector found",
                           re.I)
# warnings where ngspice repaired a line the deck got wrong and went on, with a circuit
# nobody drew: an element line without a value ("R1 a 0") becomes 1 mOhm on ngspice 39, and
# is dropped on 46 ("Warning: 'r1 a 0' is not a valid resistor instance line, ignored!")
_REPAIRED = re.compile(r"resistance too? low, set to|is not a valid \w+ instance line, ignored", re.I)
# 39: "Netlist line no. 6:"; 46: "Error in netlist line no. 2222, new internal line no. 6:",
# where only the second number is the deck's line (the first counts lines of included files
# and is off by one without them); 46 also says "line no 7, file x.cir"
_INTERNAL_LINE_NO = re.compile(r"new internal line no\.?:?\s*(\d+)", re.I)
_LINE_NO = re.compile(r"line no\.?:?\s*(\d+)", re.I)


@dataclass(frozen=True)
class Message:
    kind: str  # "convergence" | "error" | "note"
    text: str


def classify(line: str) -> Message:
    text = line.rstrip()
    if _CONVERGENCE.search(text):
        return Message("convergence", text)
    if _REPAIRED.search(text):
        return Message("error", text + " (an element line without its value?)")
    if _METRIC_NOISE.search(text) or _BENIGN.search(text):
        return Message("note", text)
    if _ERROR.search(text):
        return Message("error", text)
    return Message("note", text)


def first_of(lines: list[str], kind: str) -> list[str]:
    return [m.text for m in map(classify, lines) if m.kind == kind]


def netlist_line_no(lines: list[str]) -> int | None:
    for line in lines:
        m = _INTERNAL_LINE_NO.search(line) or _LINE_NO.search(line)
        if m:
            return int(m.group(1))
    return None
