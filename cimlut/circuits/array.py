"""A crossbar tile as a SPICE deck: R x C cells of a 1T1R declaration, with wires.

The tile is the circuit `cimlut.models.parasitics` solves: row i's driver (a source at
the row's input voltage) feeds its bit line at column 0, one `wire_row` resistor per cell
segment; column j's source line runs from row 0 down through one `wire_col` resistor per
segment to its readout below row R-1: an ideal virtual ground (a 0 V source, whose current
is the output) or a finite-gain clamp (an amplifier of gain A from the column to its
output, feedback R_f back to the column; the output current is the current through R_f).
Differential pairs are neighbouring columns (2k: G+, 2k+1: G-). Every word line is at
`vwl`; each cell's memristor state is the gap [nm] that programming produced, frozen
(dyn = 0) as in the read table's testbench. An optional capacitance per wire node
(`wire_cap`) only matters for transients; the deck's analysis is a DC sweep over the input
vectors (a source `vsel` stepped 0, 1, ..., K-1 selects vector k on every driver).

Pulse-width inputs (`widths` given, one per row, seconds): every driver holds its row at
the one drive vector (normally v_read on every row) and each row has its own word line,
a PULSE from 0 to `vwl` (the access transistors' gate, the declaration's word-line role)
that rises at `t_start`, takes `edge` seconds per edge and is `width` long between its
50% points; a row of width 0 stays off. The analysis is a `.tran` to `t_start + max width +
edge + settle`, and each column's readout charge is `.meas tran q_j INTEG i(vout_j)` over
the whole window, which starts and ends at rest (every word line at 0 V, the wires and
junctions back at their DC state), so what the gate edges couple into a column through the
wire and junction capacitances comes back out within the window. What does not: each
pulse of a cell leaves a fixed charge q_edge in its column, independent of the width once
the cell has settled (a pulse of width w reads as g v w + q_edge). Measured on single
cells (widths 5 and 10 ns, 20 ps edges): 0.26 fC at gap 0.3 nm and 0.44 fC at 1.2 nm for
v_read = 0.2 V, 0.22 / 0.33 fC at 0.1 V, 0.25 / 0.42 fC at vwl = 1.5 V; 50 ps edges add
~0.06 fC a pulse. The figures read as about 1.1 fF times what the node between memristor
and transistor drops when the transistor turns on (v_read less the transistor's on-drop;
after the fall that node is recharged from the bit line through the memristor, not from
the column) plus ~0.22 fC of switching charge that does not scale with v_read: an
interpretation of these figures, not a simulation of each part. q_edge is 24% of a 5 ns
pulse of a 1.9 uS cell. The behavioural reference `cimlut.models.parasitics.
gated_pulse_charge` has no edges, so the tests compare it with the difference of two decks,
widths w and 2w, where q_edge cancels, and bound q_edge (2 Q(w) - Q(2w)) separately. A
window 1.5 ns longer moves a column charge by 0.003 fC, 1 fF per wire node by 0.003 fC.

Time step: the edges are breakpoints, and the step is set by ngspice's truncation-error
control tightened for the deck (`.option reltol=1e-5 trtol=1`: at ngspice's defaults a
column charge moved by 1.5-2% between maximum steps of 5 and 1.25 ps, the edges' channel
transient under-resolved); the maximum step, 100 ps by default, only bounds the flat
parts. On a 16x16 tile at 30 ohm per segment, widths 2-20 ns, cutting the maximum step 4x
moves no column charge by more than `STEP_CONVERGENCE` (measured 0.030%; 25 -> 6.25 ps:
0.012%; 400 -> 100 ps: 0.10%).

The access transistor is the cell's own sky130 nFET, with one change: sky130's
`nfet_01v8` subcircuit carries 48 binned `.model` cards that ngspice copies per instance
(a 32x32 tile: 191 s and 1 GB), so the one bin that matches the cell's W/L is hoisted to a
top-level `.model` with the subcircuit's parameters evaluated at the cell's size (the same
currents; the tests compare a single cell both ways). The deck runs on its own with
`ngspice -b`, and through the package's runner (cimlut.characterize) like every deck.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import CimlutError
from ..paths import netlists_dir
from .base import Cell
from .rram import RRAM


class ArrayError(CimlutError, ValueError):
    """A tile the generator cannot build: a cell without a 1T1R declaration, a bad size,
    resistance, state or drive. The message names the value."""


@dataclass(frozen=True)
class OneT1R:
    """What the generator needs to know of a 1T1R cell: its subcircuit and port roles
    (input line, gate, readout line), the access transistor's subcircuit, the parameter
    that holds the memristor state and the ones that freeze it for a read."""
    cell: Cell
    bit_line: str = "bl"       # the input (row) line: memristor top
    word_line: str = "wl"      # access transistor gate
    source_line: str = "sl"    # the readout (column) line: access transistor source
    access: str = "sky130_fd_pr__nfet_01v8"
    state: str = "gini"        # nm
    frozen: tuple[tuple[str, float], ...] = (("dyn", 0.0),)
    # the memristor's current at a frozen state, as one B-source expression of the top and
    # bottom nodes, the state and the cell's parameters (rram_1t1r.inc: irr(v, g); the
    # gap and filament-temperature nodes carry no current when dyn = 0, and its sinh guard
    # starts at |V/v0| = 20, far above any read)
    read_law: str = "{i0*exp(-min(max(gini,0.1),1.7)/g0)}*sinh(v(top,bot)/{v0})"
    memristor: str = "rram_hfox"


DECLARATIONS = {"rram_1t1r": OneT1R(RRAM)}


def declaration(cell: str) -> OneT1R:
    """The 1T1R declaration of `cell`, or ArrayError naming it and the cells that have one."""
    try:
        return DECLARATIONS[cell]
    except KeyError:
        raise ArrayError(f"cell {cell!r} has no 1T1R declaration: a crossbar tile is built "
                         f"only from {', '.join(sorted(DECLARATIONS))} "
                         "(cimlut/circuits/array.py: DECLARATIONS)") from None


# ---------------------------------------------------------------- sky130 bin hoisting
_PAIR = re.compile(r"([A-Za-z_]\w*)\s*=\s*(\{[^}]*\}|[^\s{}]+)")


def _logical_lines(lines: list[str]) -> list[str]:
    """Continuation lines joined, comments and blank lines dropped."""
    out: list[str] = []
    for line in lines:
        s = line.strip()
        if not s or s.startswith("*"):
            continue
        if s.startswith("+"):
            if out:
                out[-1] += " " + s[1:]
            continue
        out.append(s)
    return out


def _subckt_block(path: Path, name: str) -> list[str]:
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    start = None
    for i, line in enumerate(lines):
        words = line.split()
        if start is None and len(words) > 1 and words[0].lower() == ".subckt" \
                and words[1].lower() == name.lower():
            start = i
        elif start is not None and words and words[0].lower() == ".ends":
            return lines[start:i + 1]
    raise ArrayError(f"{path}: no subcircuit {name!r}")


def hoisted_access(models_dir: Path, name: str, w: float, l: float, prefix: str = "cimlut_nfet"
                   ) -> tuple[list[str], str]:
    """Top-level lines that replace sky130 subcircuit `name` at W/L = w/l [um]: its
    parameters as `.param {prefix}_*`, the one matching bin as `.model {prefix}`, and a
    subcircuit `{prefix}` (ports d g s b) holding only the transistor line. Returns (lines,
    subcircuit name)."""
    block = _logical_lines(_subckt_block(models_dir / "models_fet.spice", name))
    header = block[0].split()
    params: dict[str, str] = {}
    for word in header[2:]:
        if "=" in word:
            k, v = word.split("=", 1)
            params[k.lower()] = v
    device, cards = None, {}
    for line in block[1:-1]:
        low = line.lower()
        if low.startswith(".param"):
            params.update({k.lower(): v for k, v in _PAIR.findall(line[6:])})
        elif low.startswith(".model"):
            words = line.split()
            cards[words[1]] = line
        elif low[0] == "m":
            device = line
    if device is None or not cards:
        raise ArrayError(f"{models_dir}: subcircuit {name} has no transistor or no .model")
    params["w"], params["l"] = repr(float(w)), repr(float(l))
    nf = float(params.get("nf", "1"))
    width, length = float(w) / nf * 1e-6, float(l) * 1e-6        # .option scale=1u
    chosen = None
    for card_name, card in cards.items():
        bounds = {k.lower(): float(v) for k, v in _PAIR.findall(card)
                  if k.lower() in ("lmin", "lmax", "wmin", "wmax")}
        if len(bounds) == 4 and bounds["lmin"] * (1 - 1e-9) <= length < bounds["lmax"] \
                and bounds["wmin"] * (1 - 1e-9) <= width < bounds["wmax"]:
            chosen = card_name
            break
    if chosen is None:
        raise ArrayError(f"{name}: no binned .model covers W = {w} um, L = {l} um")

    def rename(text: str) -> str:
        return re.sub(r"(?<![\w.])([A-Za-z_]\w*)(?![\w(])",
                      lambda m: f"{prefix}_{m.group(1).lower()}"
                      if m.group(1).lower() in params else m.group(1), text)

    out = [f"* {name}: bin {chosen} (W = {w} um, L = {l} um) hoisted to one top-level .model"]
    for k, v in params.items():
        out.append(f".param {prefix}_{k} = {rename(v) if v.startswith('{') else v}")
    model = cards[chosen].split(None, 3)
    body = model[3] if len(model) > 3 else ""
    body = re.sub(r"\{[^}]*\}", lambda m: rename(m.group(0)), body)
    out.append(f".model {prefix} {model[2]} {body}")
    words = device.split(None, 6)                                # M d g s b model rest
    rest = re.sub(r"\{[^}]*\}", lambda m: rename(m.group(0)), words[6] if len(words) > 6 else "")
    sub = f"{prefix}_sub"   # takes (and ignores) the size the cell passes: it is fixed above
    out += [f".subckt {sub} d g s b w={float(w)!r} l={float(l)!r}",
            f"M1 d g s b {prefix} {rest}", f".ends {sub}"]
    return out, sub


# ---------------------------------------------------------------- the tile
@dataclass(frozen=True)
class Tile:
    """One tile's netlist inputs. gaps [R, C] nm; drives [K, R] V (row i of vector k);
    wires and clamp in ohm; clamp_gain 0 = ideal virtual ground, else the amplifier's
    open-loop gain A with feedback clamp_rf."""
    gaps: np.ndarray
    drives: np.ndarray
    wire_row: float = 0.0
    wire_col: float = 0.0
    wire_cap: float = 0.0
    clamp_gain: float = 0.0
    clamp_rf: float = 0.0
    vwl: float = 1.8
    corner: str = "tt"
    temperature: float = 27.0
    cell: str = "rram_1t1r"
    fast: bool = True          # False: the cell file's own subcircuits as they are (slow)
    widths: np.ndarray | None = None   # [R] s: pulse-width inputs on the word lines (a .tran)
    edge: float = 20e-12       # s, each word-line edge (0 -> vwl and back)
    t_start: float = 100e-12   # s, when every word line starts to rise
    settle: float = 500e-12    # s, after the last fall, before the window closes
    max_step: float | None = None   # s, the .tran's maximum step; None: 100 ps

    def __post_init__(self):
        declaration(self.cell)
        if self.widths is not None:
            self._check_pulses()
        gaps = np.asarray(self.gaps, dtype=np.float64)
        drives = np.atleast_2d(np.asarray(self.drives, dtype=np.float64))
        if gaps.ndim != 2 or min(gaps.shape) < 1:
            raise ArrayError(f"gaps of shape {gaps.shape}: need [rows, cols] with >= 1 each")
        if drives.ndim != 2 or drives.shape[1] != gaps.shape[0] or drives.shape[0] < 1:
            raise ArrayError(f"drives of shape {drives.shape}: need [vectors, {gaps.shape[0]}] "
                             "(one voltage per row)")
        for name in ("wire_row", "wire_col", "wire_cap", "clamp_gain", "clamp_rf"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value >= 0):
                raise ArrayError(f"{name} = {value!r}: must be a finite number >= 0")
        if self.clamp_gain > 0 and not self.clamp_rf > 0:
            raise ArrayError(f"clamp_gain = {self.clamp_gain!r} needs clamp_rf > 0 (the "
                             "feedback resistance), got {self.clamp_rf!r}")
        if not np.isfinite(gaps).all() or not np.isfinite(drives).all():
            raise ArrayError("gaps and drives must be finite numbers")
        object.__setattr__(self, "gaps", gaps)
        object.__setattr__(self, "drives", drives)

    def _check_pulses(self) -> None:
        rows = np.asarray(self.gaps).shape[0] if np.ndim(self.gaps) == 2 else None
        try:
            widths = np.asarray(self.widths, dtype=np.float64)
        except (TypeError, ValueError):
            raise ArrayError(f"pulse widths {self.widths!r}: expected numbers (seconds), one "
                             "per row") from None
        if widths.ndim != 1 or (rows is not None and widths.shape[0] != rows):
            raise ArrayError(f"pulse widths of shape {widths.shape}: need one width per row, "
                             f"shape ({rows},)")
        for name in ("edge", "t_start", "settle"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and np.isfinite(value) and value > 0):
                raise ArrayError(f"{name} = {value!r}: must be a finite number > 0 (seconds)")
        if self.max_step is not None and not (np.isfinite(self.max_step) and self.max_step > 0):
            raise ArrayError(f"max_step = {self.max_step!r}: must be a finite number > 0 "
                             "(seconds) or None")
        for i, w in enumerate(widths.tolist()):
            if not np.isfinite(w) or w < 0:
                raise ArrayError(f"pulse width of row {i} = {w!r}: must be a finite number "
                                 ">= 0 (seconds)")
            if 0 < w < self.edge:
                raise ArrayError(f"pulse width of row {i} = {w!r} s: shorter than one edge "
                                 f"({self.edge!r} s); 0 (off) or >= edge")
        if not widths.any():
            raise ArrayError("pulse widths are all 0: no row is read")
        drives = np.atleast_2d(np.asarray(self.drives, dtype=np.float64))
        if drives.shape[0] != 1:
            raise ArrayError(f"drives of shape {drives.shape}: pulse-width inputs hold every "
                             "row at one drive vector, shape (1, rows)")
        object.__setattr__(self, "widths", widths)

    @property
    def pulsed(self) -> bool:
        return self.widths is not None

    @property
    def t_stop(self) -> float:
        """The end of the .tran window [s] (pulse-width inputs)."""
        return self.t_start + float(self.widths.max()) + self.edge + self.settle

    def charges(self) -> list[str]:
        """The .meas names of the readout charges [C], one per column (pulse-width inputs)."""
        return [f"q_{j}" for j in range(self.shape[1])]

    @property
    def shape(self) -> tuple[int, int]:
        return self.gaps.shape

    @property
    def clamp_resistance(self) -> float:
        """The input resistance [ohm] the behavioural model gives the same readout."""
        return self.clamp_rf / (1 + self.clamp_gain) if self.clamp_gain > 0 else 0.0

    def outputs(self) -> list[str]:
        """The vector names of the readout currents [A], one per column (into the readout)."""
        return [f"i(vout_{j})" for j in range(self.shape[1])]


def _n(x: float) -> str:
    return repr(float(x))


# the largest relative change of a column's charge when the default maximum step (100 ps)
# is cut 4x: 16x16 tile, 30 ohm per segment, widths 2-20 ns, measured 3.0e-4
STEP_CONVERGENCE = 5e-4
DEFAULT_MAX_STEP = 100e-12


def _max_step(tile: Tile) -> float:
    return tile.max_step if tile.max_step is not None else DEFAULT_MAX_STEP


def tile_netlist(tile: Tile) -> str:
    """The deck text of `tile` (see the module docstring)."""
    decl = declaration(tile.cell)
    cell = decl.cell
    rows, cols = tile.shape
    k = tile.drives.shape[0]
    models = netlists_dir() / "models" / "sky130"
    inc = cell.path
    defaults = {p.name: p.default for p in cell.params}
    access, sub = [], decl.access
    body = _subckt_block(inc, cell.subckt)
    text = "\n".join(body)
    for name in (decl.access, decl.memristor):
        if not re.search(rf"\b{re.escape(name)}\b", text):
            raise ArrayError(f"{inc}: subcircuit {cell.subckt} has no {name}")
    text = re.sub(rf"^(\.subckt\s+){re.escape(cell.subckt)}\b", rf"\g<1>{cell.subckt}_array",
                  text, flags=re.I | re.M)
    text = re.sub(rf"^(\.ends)\s+{re.escape(cell.subckt)}\b", rf"\g<1> {cell.subckt}_array",
                  text, flags=re.I | re.M)
    frozen = " ".join(f"{n}={_n(v)}" for n, v in decl.frozen)
    if tile.fast:
        access, sub = hoisted_access(models.resolve(), decl.access, defaults.get("w", 1.0),
                                     defaults.get("l", 0.15))
        text = re.sub(rf"\b{re.escape(decl.access)}\b", sub, text)
        # the memristor at its frozen state: its I-V law alone, with no .func (ngspice 39
        # expands a subcircuit's .func per instance: 16x16 cells 0.6 s, 28x28 52 s)
        law = decl.read_law
        for p in cell.params:
            law = re.sub(rf"\b{p.name}\b", repr(float(p.default)), law)
        access += [f".subckt {decl.memristor}_read top bot {decl.state}=1",
                   f"B1 top bot I = {law}", f".ends {decl.memristor}_read"]
        text = "\n".join(_logical_lines(text.splitlines()))
        text = re.sub(rf"^(X\w*\s+\S+\s+\S+\s+){decl.memristor}\b.*$",
                      rf"\g<1>{decl.memristor}_read {decl.state}={{{decl.state}}}",
                      text, flags=re.I | re.M)
        frozen = ""

    lines = [f"* cimlut tile: {rows} x {cols} {cell.name} cells, wires {tile.wire_row} / "
             f"{tile.wire_col} ohm per segment, "
             + ("ideal virtual-ground readout" if not tile.clamp_gain else
                f"finite-gain clamp (A = {tile.clamp_gain:g}, R_f = {tile.clamp_rf:g} ohm)"),
             "* generated by cimlut.circuits.array; runs on its own with ngspice -b",
             "* SPDX-License-Identifier: GPL-3.0-or-later",
             f'.lib "{models.absolute() / "sky130.lib.spice"}" {tile.corner}',
             f'.include "{inc.absolute()}"',
             f".temp {_n(tile.temperature)}",
             "* KLU sparse solver where the ngspice has it (46: a 128x128 tile in seconds); "
             "ngspice 39 ignores the option",
             ".option klu",
             *([f"* pulse-width inputs: word lines rise at {tile.t_start:g} s, {tile.edge:g} s "
                "edges, widths between 50% points; readout charge over the whole window",
                f"* max step {_max_step(tile):g} s, truncation error control tightened: "
                f"a 4x smaller step moves a column charge by < {STEP_CONVERGENCE:g} "
                "(relative; measured 3.0e-4 at 100 -> 25 ps, 16x16 tile, 30 ohm, 2-20 ns)",
                ".option reltol=1e-5 trtol=1"]
               if tile.pulsed else []),
             f".param vwl={_n(tile.vwl)}",
             *access,
             f"* the {cell.name} cell with the hoisted access transistor",
             *text.splitlines(),
             *(["Vsel sel 0 0", "Vwl wl 0 {vwl}"] if not tile.pulsed else [])]

    def node(kind: str, i: int, j: int) -> str:
        return f"{kind}{i}_{j}"

    if tile.pulsed:
        for i, w in enumerate(tile.widths):
            lines.append(f"Vwl{i} wl{i} 0 " + (
                f"PULSE(0 {{vwl}} {_n(tile.t_start)} {_n(tile.edge)} {_n(tile.edge)} "
                f"{_n(w - tile.edge)} {_n(2 * tile.t_stop)} 1)" if w > 0 else "0"))
    for i in range(rows):
        pts = ", ".join(f"{m}, {_n(tile.drives[m, i])}" for m in range(k))
        lines.append(f"B{i} d{i} 0 V = pwl(v(sel), {pts})" if k > 1
                     else f"V{i} d{i} 0 {_n(tile.drives[0, i])}")
    a = [[f"d{i}" if tile.wire_row == 0 else node("a", i, j) for j in range(cols)]
         for i in range(rows)]
    b = [[f"c{j}" if tile.wire_col == 0 else node("b", i, j) for j in range(cols)]
         for i in range(rows)]
    if tile.wire_row:
        for i in range(rows):
            prev = f"d{i}"
            for j in range(cols):
                lines.append(f"Rr{i}_{j} {prev} {a[i][j]} {_n(tile.wire_row)}")
                prev = a[i][j]
    if tile.wire_col:
        for j in range(cols):
            for i in range(rows):
                nxt = b[i + 1][j] if i + 1 < rows else f"c{j}"
                lines.append(f"Rc{i}_{j} {b[i][j]} {nxt} {_n(tile.wire_col)}")
    if tile.wire_cap:
        nodes = sorted({n for row in a + b for n in row if n[0] in "ab"})
        lines += [f"C{n} {n} 0 {_n(tile.wire_cap)}" for n in nodes]
    for i in range(rows):
        for j in range(cols):
            wl = f"wl{i}" if tile.pulsed else "wl"
            lines.append(f"X{i}_{j} {a[i][j]} {wl} {b[i][j]} {cell.subckt}_array "
                         f"{decl.state}={_n(tile.gaps[i, j])} {frozen}")
    for j in range(cols):
        if tile.clamp_gain:
            lines += [f"E{j} o{j} 0 0 c{j} {_n(tile.clamp_gain)}",
                      f"Rf{j} c{j} f{j} {_n(tile.clamp_rf)}",
                      f"Vout_{j} f{j} o{j} 0"]
        else:
            lines.append(f"Vout_{j} c{j} 0 0")
    lines.append(".save " + " ".join(tile.outputs()))
    if tile.pulsed:
        lines.append(f".tran {_n(_max_step(tile))} {_n(tile.t_stop)} 0 {_n(_max_step(tile))}")
        lines += [f".meas tran q_{j} INTEG i(vout_{j}) from=0 to={_n(tile.t_stop)}"
                  for j in range(cols)]
    else:
        lines.append(f".dc vsel 0 {max(k - 1, 0)} 1")
    lines += [".control", "set num_threads=1", "run", "quit 0", ".endc", ".end"]
    return "\n".join(lines) + "\n"


def write_tile(tile: Tile, path: str | Path) -> Path:
    """Write the deck of `tile` to `path` (a .cir file) and return it."""
    path = Path(path)
    path.write_text(tile_netlist(tile), encoding="utf-8")
    return path


def simulate(tile: Tile, path: str | Path, backend: str = "subprocess",
             timeout: float | None = None) -> np.ndarray:
    """Write and run the tile's deck through the package's runner (its sandbox: no init
    files, a time limit, data never runs code); readout currents [K, C] [A], or with
    pulse-width inputs the readout charges [C] [C]."""
    from ..characterize.runner import run
    deck = write_tile(tile, path)
    result = run(deck, backend=backend, timeout=timeout)
    if tile.pulsed:
        q = np.array([result.measures.get(name, np.nan) for name in tile.charges()])
        if not np.isfinite(q).all():
            raise ArrayError(f"{deck}: readout charge measures failed: "
                             f"{[n for n, v in zip(tile.charges(), q) if not np.isfinite(v)]}")
        return q
    k = tile.drives.shape[0]
    out = np.stack([np.asarray(result[name], dtype=np.float64).real for name in tile.outputs()], 1)
    if out.shape[0] != k:
        raise ArrayError(f"{deck}: expected {k} sweep points, got {out.shape[0]}")
    return out
