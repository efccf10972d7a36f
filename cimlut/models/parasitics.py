"""Wire parasitics of a crossbar tile: its effective conductance matrix, solved exactly.

Geometry (the array netlist generator, `cimlut.circuits.array`, builds the same circuit):
row i's driver sits at the left end of its row wire (the bit line, the input) and reaches
the cell of column 0 through one wire segment of `r_row` ohms, then column 1 through
another, and so on; column j's wire (the source line) runs from the cell of row 0 down to
row R-1 and on through one more segment of `r_col` to the column readout, a clamp that
holds it at 0 V (ideal virtual ground, `r_clamp` = 0) or presents an input resistance
`r_clamp` (a transimpedance amplifier of feedback resistance R_f and open-loop gain A
presents R_f / (1 + A)).

With linear cells (conductance g[i, j] from the read table at v_read) and idle rows driven
at 0 V, the tile is linear: the current into column j's readout is sum_i V_i M[i, j], and
M is exact for any inputs by superposition. M = g when every resistance is zero.

The solve walks the columns from the far end towards the drivers with R x R matrices
(exact up to rounding, no iteration):

  H_j = (diag(1/g[:, j]) + Rc)^-1     column j's cells and wire seen from the row wires,
                                      Rc[i, m] = r_col (min(R-1-i, R-1-m) + 1) + r_clamp
  Y_j = H_j + Y_{j+1} T_{j+1}         all columns j.. seen from row nodes of column j
  T_j = (I + r_row Y_j)^-1            a_j = T_j a_{j-1}: one row segment (a_{-1} = drive)
  M[:, j] = (T_j ... T_0)^T H_j 1     column j's readout current per volt on each driver

Cost ~ 4 R^3 C flops per tile (batched over tiles); `benchmarks/bench_parasitics.py`
measures it. `nodal_solve` is the plain sparse nodal analysis of the same circuit, the
reference the tests hold the fast solve to.

The cells are not linear: the read table's I-V is sinh-like, so a cell that the IR drop
leaves below v_read conducts less than its chord conductance at v_read (~0.3% per 10 mV).
`effective_conductance(..., chord=...)` linearises each cell at its voltage with every row
on (`cell_voltages`, then the chord conductance there, then the matrix of those): on a
64x64 SmolLM2 tile at 1 ohm per segment it takes the model's error against SPICE from
0.084% to 0.043% of full scale RMS (max 0.60 -> 0.16 ADC steps), and 128x128 from 0.21% to
0.08% (1.23 -> 0.30 steps). `driver_admittance` gives the drivers' admittance matrix A
(power d^T A d, wires included); `gated_pulse_charge` solves word-line-gated pulse-width
inputs in time slices (a reference: one solve per distinct width).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import UsageError

BATCH_ELEMENTS = 1 << 16   # tiles solved together: bound on batch x R x R (cache)
TOL = 1e-7                 # bound on the relative error of M the series may leave (an 8-bit
                           # ADC step is 4e-3 of full scale; a 16-bit one 3e-5)


def _check(r_row: float, r_col: float, r_clamp: float) -> None:
    for name, value in (("wire_row", r_row), ("wire_col", r_col), ("clamp_resistance", r_clamp)):
        if not (value >= 0 and np.isfinite(value)):
            raise UsageError(f"{name} = {value!r} ohm: a wire or clamp resistance must be a "
                             "finite number >= 0")


def column_resistance(rows: int, r_col: float, r_clamp: float, dtype=torch.float64) -> torch.Tensor:
    """Rc [R, R]: the resistance shared by rows i and m on their way to the readout."""
    k = torch.arange(rows, dtype=dtype)
    to_end = rows - 1 - k
    return r_col * (torch.minimum(to_end[:, None], to_end[None, :]) + 1) + r_clamp


def effective_conductance(g: torch.Tensor, r_row: float, r_col: float,
                          r_clamp: float = 0.0, chord=None) -> torch.Tensor:
    """M [..., R, C] [S]: readout current of column j per volt on row i's driver (others
    at 0 V), for cell conductances g [..., R, C] [S] (all > 0) and wire resistances per
    segment [ohm]. Leading dimensions are tiles, solved as one batch; float64 inside.

    `chord(g, u)`: the cells' conductances at their operating point, for conductances g
    (read at v_read) and cell voltages u [fraction of v_read]. The tile is then linearised
    where it works: solved once with g, each cell's voltage taken with every row driven
    (the largest IR drop: the vector that sets the ADC range), g replaced by chord(g, u)
    and solved again. The voltages come from a fixed-point iteration where the drop lets it
    converge (`_jacobi_voltages`), else from the walk (`cell_voltages`): 38 ms of CPU per
    128x128 tile at 1 ohm against 31 ms unlinearised (68 ms with the walk)."""
    _check(r_row, r_col, r_clamp)
    g = torch.as_tensor(g)
    if g.dim() < 2:
        raise UsageError(f"cell conductances of shape {tuple(g.shape)}: need [..., rows, cols]")
    dtype = g.dtype
    g = g.to(torch.float64)
    if not bool((g > 0).all()):
        bad = float(g[~(g > 0)].flatten()[0])
        raise UsageError(f"cell conductance {bad!r} S: every cell needs a conductance > 0")
    if r_row == 0 and r_col == 0 and r_clamp == 0:
        return g.to(dtype)
    lead, (rows, cols) = g.shape[:-2], g.shape[-2:]
    g = g.reshape(-1, rows, cols)
    per = max(1, BATCH_ELEMENTS // (rows * rows))
    parts = []
    for s in range(0, g.shape[0], per):
        part = g[s:s + per]
        if chord is not None:
            u = _jacobi_voltages(part, r_row, r_col, r_clamp)
            if u is None:                                        # IR drop too large for it
                u = _solve(part, r_row, r_col, r_clamp, voltages=True)
            part = torch.as_tensor(chord(part, u), dtype=torch.float64)
        parts.append(_solve(part, r_row, r_col, r_clamp))
    return torch.cat(parts).reshape(*lead, rows, cols).to(dtype)


def _jacobi_voltages(g: torch.Tensor, r_row: float, r_col: float, r_clamp: float,
                     tol: float = 1e-7, limit: int = 100) -> torch.Tensor | None:
    """Every row on: the cell voltages u [b, R, C] per volt by the fixed point
    u = 1 - L (g u), L the wires' drop per cell current (row segment k carries the row's
    currents from k on, column segment below row i the column's currents down to i).
    Converges when the drop is well below the drive (a few to 15 iterations at 64-128 rows
    and 1-2 ohm, ~0.3 ms per tile each); None when it does not within `limit` (the exact
    walk then)."""
    u = torch.ones_like(g)
    last = math.inf
    for _ in range(limit):
        i = g * u
        new = torch.ones_like(g)
        if r_row:
            new -= r_row * i.flip(-1).cumsum(-1).flip(-1).cumsum(-1)
        if r_col:
            new -= r_col * i.cumsum(-2).flip(-2).cumsum(-2).flip(-2)
        if r_clamp:
            new -= r_clamp * i.sum(-2, keepdim=True)
        change = float((new - u).abs().max())
        u = new
        if change <= tol:
            return u
        if change > last or not math.isfinite(change):
            return None
        last = change
    return None


def cell_voltages(g: torch.Tensor, r_row: float, r_col: float,
                  r_clamp: float = 0.0) -> torch.Tensor:
    """u [..., R, C]: each cell's voltage per volt of drive with every row driven at once
    (the same solve, walked back out from the drivers: a_j = T_j a_(j-1))."""
    _check(r_row, r_col, r_clamp)
    g = torch.as_tensor(g).to(torch.float64)
    lead, (rows, cols) = g.shape[:-2], g.shape[-2:]
    if r_row == 0 and r_col == 0 and r_clamp == 0:
        return torch.ones_like(g).reshape(*lead, rows, cols)
    g = g.reshape(-1, rows, cols)
    per = max(1, BATCH_ELEMENTS // (rows * rows))
    out = torch.cat([_solve(g[s:s + per], r_row, r_col, r_clamp, voltages=True)
                     for s in range(0, g.shape[0], per)])
    return out.reshape(*lead, rows, cols)


class _Columns:
    """Each column's admittance H_j = (diag(1/g) + Rc)^-1, made one column at a time.

    With r_col > 0, Rc^-1 is the column chain's tridiagonal Laplacian L, and by Woodbury
    H = G - G (L + G)^-1 G, whose tridiagonal inverse has the closed form
    X[i, m] = theta_{i-1} phi_{m+1} / theta_{R-1} (i <= m; Usmani 1994), O(R^2) a column
    (the recurrences run on L / y, so they grow linearly and never overflow)."""

    def __init__(self, g: torch.Tensor, r_col: float, r_clamp: float):
        b, rows, cols = g.shape
        self.gt = g.transpose(1, 2).contiguous()                 # [b, C, R]
        self.kind = "diag" if r_col == 0 and r_clamp == 0 else ("node" if r_col == 0 else "chain")
        self.r_clamp = r_clamp
        if self.kind != "chain":
            return
        y = 1.0 / r_col
        a = self.gt / y + 2.0                                    # diagonal of (L + G) / y
        a[..., 0] -= 1.0                                         # row 0: one neighbour
        a[..., -1] += r_col / (r_col + r_clamp) - 1.0            # last: segment to the clamp
        theta = torch.empty(b, cols, rows + 1, dtype=g.dtype)    # theta[k] = theta_{k-1}
        theta[..., 0] = 1.0
        theta[..., 1] = a[..., 0]
        for i in range(1, rows):
            theta[..., i + 1] = a[..., i] * theta[..., i] - theta[..., i - 1]
        phi = torch.empty(b, cols, rows + 1, dtype=g.dtype)      # phi[k] = phi_k
        phi[..., rows] = 1.0
        phi[..., rows - 1] = a[..., rows - 1]
        for i in range(rows - 2, -1, -1):
            phi[..., i] = a[..., i] * phi[..., i + 1] - phi[..., i + 2]
        scale = -1.0 / (theta[..., rows] * y)
        self.u = self.gt * theta[..., :rows] * scale[..., None]  # -g_i theta_{i-1} / (theta y)
        self.v = self.gt * phi[..., 1:]                          # g_m phi_{m+1}
        self.upper = torch.ones(rows, rows, dtype=torch.bool).triu()

    def __call__(self, j: int) -> torch.Tensor:
        g = self.gt[:, j]
        if self.kind == "diag":
            return torch.diag_embed(g)
        if self.kind == "node":
            z = torch.diag_embed(1.0 / g) + self.r_clamp
            return torch.cholesky_inverse(torch.linalg.cholesky(z))
        outer = self.u[:, j, :, None] * self.v[:, j, None, :]    # i <= m half of -G X G
        h = torch.where(self.upper, outer, outer.transpose(1, 2))
        h.diagonal(dim1=-2, dim2=-1).add_(g)
        return h

    def times(self, j: int, a: torch.Tensor) -> torch.Tensor:
        """H_j a for a [b, R]: O(R) on the chain (the halves are rank one: u_i sum_(m>=i)
        v_m a_m + v_i sum_(m<i) u_m a_m)."""
        if self.kind != "chain":
            return (self(j) @ a[..., None])[..., 0]
        u, v = self.u[:, j], self.v[:, j]
        upper = (v * a).flip(-1).cumsum(-1).flip(-1)
        lower = (u * a).cumsum(-1) - u * a
        return self.gt[:, j] * a + u * upper + v * lower


class _Transfer:
    """T = (I + rY)^-1 of one row segment. rY = D + E with D its diagonal: T = S (I + F)^-1 S
    with S = (I + D)^-1/2 and F = S E S, whose Neumann series converges fast (E holds only
    the coupling through the column wires): T = S (I + K) S with K = -F + F^2 - ..., terms
    added until the bound C ||F||^(k+1) (the caller's `tol`) is met. K is a correction of
    relative size ||F|| (~1e-3 at 1 ohm per segment): float32 carries it to ~1e-10 of T, and
    runs its products ~2x faster than float64. Past four terms, `dense` holds T from a
    Cholesky inverse instead (float64).

    `from_y` makes it from Y; `next_y` gives the next segment's Y = H + (I - T) / r from S
    and K, with no T formed; `apply` is T @ w = S (Sw + K Sw)."""

    def __init__(self, s: torch.Tensor, f: torch.Tensor, r_row: float, tol):
        self.dense = None
        self.s = s
        norm = float(f.abs().sum(-1).max())
        order = 0
        while norm > 0 and tol(norm ** (order + 1)) and order < 4:
            order += 1
        if norm > 0 and tol(norm ** (order + 1)):
            x = f / (s[:, :, None] * s[:, None, :])             # back to rY, diagonal kept
            x.diagonal(dim1=-2, dim2=-1).copy_(s.pow(-2) - 1.0)
            x.diagonal(dim1=-2, dim2=-1).add_(1.0)
            self.dense = torch.cholesky_inverse(torch.linalg.cholesky(x))
            return
        if order == 0:
            self.k = None
            return
        f32 = f if f.dtype == torch.float32 else f.float()
        k, term = -f32, f32
        for n in range(2, order + 1):
            term = term @ f32
            k = k + term if n % 2 == 0 else k - term              # -F + F^2 - F^3 ...
        self.k = k

    @classmethod
    def from_y(cls, y: torch.Tensor, r_row: float, tol) -> "_Transfer":
        sr = (1.0 / r_row + y.diagonal(dim1=-2, dim2=-1)).rsqrt()  # S / sqrt(r)
        f = sr[:, :, None] * y * sr[:, None, :]
        f.diagonal(dim1=-2, dim2=-1).zero_()
        return cls(sr * r_row ** -0.5, f, r_row, tol)

    def next_y(self, h: torch.Tensor, r_row: float) -> torch.Tensor:
        """Y of the next segment towards the drivers: H + (I - T) / r."""
        if self.dense is not None:
            yt = -self.dense
            yt.diagonal(dim1=-2, dim2=-1).add_(1.0)
            return h + yt / r_row
        s = self.s
        y = h.clone() if self.k is None else h - (s[:, :, None] / r_row) * self.k * s[:, None, :]
        y.diagonal(dim1=-2, dim2=-1).add_((1.0 - s * s) / r_row)
        return y

    def apply(self, w: torch.Tensor) -> torch.Tensor:
        """T @ w for w [b, R, n] (float64)."""
        if self.dense is not None:
            return self.dense @ w
        sw = self.s[:, :, None] * w
        if self.k is not None:
            sw += self.k @ sw.float()
        return sw.mul_(self.s[:, :, None])

    def matrix(self) -> torch.Tensor:
        if self.dense is not None:
            return self.dense
        b, rows = self.s.shape
        t = torch.eye(rows, dtype=torch.float64).expand(b, rows, rows).clone()
        if self.k is not None:
            t += self.k
        return self.s[:, :, None] * t * self.s[:, None, :]


def _transfer(y: torch.Tensor, r_row: float, tol) -> torch.Tensor:
    """T = (I + rY)^-1 as a matrix (see `_Transfer`)."""
    return _Transfer.from_y(y, r_row, tol).matrix()


def _solve(g: torch.Tensor, r_row: float, r_col: float, r_clamp: float,
           voltages: bool = False) -> torch.Tensor:
    """Walk the columns from the far end: Y_j = H_j + Y_{j+1} T_{j+1}, and carry every
    column's readout vector H_j 1 back through the row segments to the drivers
    (W <- T_j [H_j 1, W]): the result is M with no transfer matrix stored.
    `voltages`: the cell voltages per volt with every row driven instead (the T_j are kept,
    then a_j = T_j a_(j-1) from a_(-1) = 1, and column j's cell currents are H_j a_j)."""
    b, rows, cols = g.shape
    columns = _Columns(g, r_col, r_clamp)
    if voltages:
        return _voltages(g, columns, r_row)
    if r_row == 0:                                               # every row node at its drive
        return torch.stack([columns(j).sum(-1) for j in range(cols)], -1)
    # a term dropped from a series costs at most ~C ||F||^(k+1) relative, over C segments
    tol = lambda rest: cols * rest > TOL                          # noqa: E731
    w = g.new_empty(b, rows, cols)
    h = columns(cols - 1)
    y = h
    for j in range(cols - 1, -1, -1):
        t = _Transfer.from_y(y, r_row, tol)
        w[:, :, j] = h.sum(-1)
        w[:, :, j:] = t.apply(w[:, :, j:])
        if j:
            h = columns(j - 1)
            y = t.next_y(h, r_row)
    return w


def driver_admittance(g: torch.Tensor, r_row: float, r_col: float,
                      r_clamp: float = 0.0) -> torch.Tensor:
    """A [..., R, R] [S]: the current into the tile at driver i per volt on driver m (the
    others at 0 V). A drive d draws the power d^T A d: cells, wires and clamps together.
    A is symmetric and A 1 = M 1 (what the drivers deliver reaches the readouts), so with
    every row on each driver delivers v sum_j M[i, j]; a row alone draws A_ii v^2, a little
    more (its off-diagonal terms are <= 0: the other rows raise the column wires).
    From the walk to column 0: A = Y_0 T_0 (A = Y_0 with r_row = 0)."""
    _check(r_row, r_col, r_clamp)
    g = torch.as_tensor(g).to(torch.float64)
    lead, (rows, cols) = g.shape[:-2], g.shape[-2:]
    g = g.reshape(-1, rows, cols)
    out = []
    for s in range(0, g.shape[0], max(1, BATCH_ELEMENTS // (rows * rows))):
        part = g[s:s + max(1, BATCH_ELEMENTS // (rows * rows))]
        columns = _Columns(part, r_col, r_clamp)
        y = columns(cols - 1)
        for j in range(cols - 2, -1, -1):              # (I - T) / r: T to 1e-3 of TOL
            y = (y + columns(j) if r_row == 0 else
                 _Transfer.from_y(y, r_row, lambda rest: cols * rest > 1e-3 * TOL)
                 .next_y(columns(j), r_row))
        if r_row:                                    # Y_0 (I + r Y_0)^-1, dense: (I - T_0) / r
            x = r_row * y                            # would cancel where r Y_0 is small
            x.diagonal(dim1=-2, dim2=-1).add_(1.0)
            y = y @ torch.cholesky_inverse(torch.linalg.cholesky(x))
        out.append(y)
    return torch.cat(out).reshape(*lead, rows, rows)


def _voltages(g: torch.Tensor, columns: "_Columns", r_row: float) -> torch.Tensor:
    b, rows, cols = g.shape
    u = torch.empty_like(g)
    a = g.new_ones(b, rows)
    if r_row == 0:
        for j in range(cols):
            u[:, :, j] = columns.times(j, a) / g[:, :, j]
        return u
    tol = lambda rest: cols * rest > TOL                          # noqa: E731
    ts = [None] * cols
    h = columns(cols - 1)
    y = h
    for j in range(cols - 1, -1, -1):
        t = ts[j] = _Transfer.from_y(y, r_row, tol)
        if j:
            y = t.next_y(columns(j - 1), r_row)
    for j in range(cols):
        a = ts[j].apply(a[..., None])[..., 0]
        ts[j] = None
        u[:, :, j] = columns.times(j, a) / g[:, :, j]
    return u


def gated_pulse_charge(g: torch.Tensor, widths: torch.Tensor, r_row: float, r_col: float,
                       r_clamp: float = 0.0, chord=None, g_off: float = 1e-15) -> torch.Tensor:
    """Word-line-gated pulse-width inputs, solved in time slices: Q [K, C] [S x t_read], the
    readout charge of each column per volt of row drive, for pulse widths [K, R] (t_read
    units, all pulses starting together) on a tile of conductances g [R, C].

    A row's word line is on for its pulse: its cells conduct, the others' access
    transistors are off (a cell of g_off S). Sorting the widths, slice k runs while the
    rows S_k with width > t are on, and Q = sum_k dt_k sum_(i in S_k) M^(S_k)[i, :] with
    M^(S) the effective matrix of the tile with only S's cells on. (The one-matrix model,
    widths @ M, keeps every cell on, the idle rows' at 0 V.) The read energy is
    v_read^2 t_read sum_j Q[:, j] (every active driver at v_read, and what they deliver
    reaches the readouts). `chord`: each slice linearised at its own cell voltages. Costs
    one tile solve per distinct width: a reference, not the simulator's forward."""
    g = torch.as_tensor(g, dtype=torch.float64)
    widths = torch.as_tensor(widths, dtype=torch.float64)
    rows, cols = g.shape
    if widths.dim() != 2 or widths.shape[1] != rows:
        raise UsageError(f"pulse widths of shape {tuple(widths.shape)}: need [vectors, {rows}]")
    if not bool((widths >= 0).all()):
        raise UsageError("pulse widths must be >= 0")
    out = torch.zeros(widths.shape[0], cols, dtype=torch.float64)
    for k, w in enumerate(widths):
        levels = torch.unique(w[w > 0])                           # ascending
        if not len(levels):
            continue
        lower = torch.cat([levels.new_zeros(1), levels[:-1]])
        active = w[None, :] >= levels[:, None]                    # [slices, R]
        tiles = torch.where(active[:, :, None], g, torch.full_like(g, g_off))
        if chord is not None and (r_row or r_col or r_clamp):
            u = cell_voltages(tiles, r_row, r_col, r_clamp)
            tiles = torch.where(active[:, :, None], torch.as_tensor(chord(tiles, u)), tiles)
        m = effective_conductance(tiles, r_row, r_col, r_clamp)
        per_slice = (m * active[:, :, None]).sum(1)               # [slices, C]
        out[k] = ((levels - lower)[:, None] * per_slice).sum(0)
    return out


def effective_pairs(g_pos: torch.Tensor, g_neg: torch.Tensor, tile_rows: int, tile_outputs: int,
                    r_row: float, r_col: float, r_clamp: float = 0.0, chord=None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Effective conductances of a layer's differential pairs, tile by tile.

    g_pos, g_neg [in, out] [S]; a tile holds `tile_rows` inputs and `tile_outputs` outputs,
    output k of a tile on physical columns 2k (G+) and 2k+1 (G-). Edge tiles hold what is
    left (their unused cells are left out of the circuit: the used ones sit next to the
    drivers and the readout). `chord`: see `effective_conductance`. Returns the effective
    (M+, M-) [in, out]."""
    _check(r_row, r_col, r_clamp)
    n_in, n_out = g_pos.shape
    m_pos, m_neg = torch.empty_like(g_pos), torch.empty_like(g_neg)
    shapes: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for r0 in range(0, n_in, tile_rows):
        for c0 in range(0, n_out, tile_outputs):
            key = (min(tile_rows, n_in - r0), min(tile_outputs, n_out - c0))
            shapes.setdefault(key, []).append((r0, c0))
    for (nr, nc), where in shapes.items():
        tiles = torch.empty(len(where), nr, 2 * nc, dtype=torch.float64)
        for k, (r0, c0) in enumerate(where):
            tiles[k, :, 0::2] = g_pos[r0:r0 + nr, c0:c0 + nc]
            tiles[k, :, 1::2] = g_neg[r0:r0 + nr, c0:c0 + nc]
        m = effective_conductance(tiles, r_row, r_col, r_clamp, chord)
        for k, (r0, c0) in enumerate(where):
            m_pos[r0:r0 + nr, c0:c0 + nc] = m[k, :, 0::2].to(m_pos.dtype)
            m_neg[r0:r0 + nr, c0:c0 + nc] = m[k, :, 1::2].to(m_neg.dtype)
    return m_pos, m_neg


def nodal_solve(g: np.ndarray, drive: np.ndarray, r_row: float, r_col: float,
                r_clamp: float = 0.0, detail: bool = False):
    """Readout currents [K, C] [A] of one tile for drive voltages [K, R] [V], by plain
    nodal analysis of every wire and cell node (scipy sparse LU). Zero resistances are
    merged nodes. The reference for `effective_conductance`; slow for big tiles.
    `detail`: a dict instead, with the readout currents ("out"), each cell's voltage
    ("cell_v" [K, R, C] [V]), each driver's current ("driver_i" [K, R] [A]) and the power
    dissipated in the cells and in the wires and clamp ("cell_w", "wire_w" [K] [W])."""
    import scipy.sparse as sp
    from scipy.sparse.linalg import splu

    _check(r_row, r_col, r_clamp)
    g = np.asarray(g, dtype=np.float64)
    rows, cols = g.shape
    drive = np.atleast_2d(np.asarray(drive, dtype=np.float64))
    # node ids: row nodes a[i, j], column nodes b[i, j]; fixed: driver i, ground
    ids: dict = {}

    def node(key):
        return ids.setdefault(key, len(ids))

    a = np.empty((rows, cols), dtype=object)
    bnode = np.empty((rows, cols), dtype=object)
    entries: list[tuple] = []          # (node or ('drv', i) or 'gnd', node..., conductance)
    for i in range(rows):
        prev = ("drv", i)
        for j in range(cols):
            if r_row == 0:
                a[i, j] = prev if j == 0 else a[i, j - 1]
            else:
                a[i, j] = node(("a", i, j))
                entries.append((prev, a[i, j], 1.0 / r_row))
            prev = a[i, j]
    for j in range(cols):
        last = "gnd" if r_clamp == 0 else node(("clamp", j))
        if r_clamp:
            entries.append((last, "gnd", 1.0 / r_clamp))
        nxt = last
        for i in range(rows - 1, -1, -1):
            if r_col == 0:
                bnode[i, j] = nxt
            else:
                bnode[i, j] = node(("b", i, j))
                entries.append((bnode[i, j], nxt, 1.0 / r_col))
            nxt = bnode[i, j]
    for i in range(rows):
        for j in range(cols):
            entries.append((a[i, j], bnode[i, j], g[i, j]))
    n = len(ids)
    mat = sp.lil_matrix((max(n, 1), max(n, 1)))
    rhs = np.zeros((max(n, 1), drive.shape[0]))

    def fixed(x):
        return x == "gnd" or (isinstance(x, tuple) and x[0] == "drv")

    def volts(x):
        return np.zeros(drive.shape[0]) if x == "gnd" else drive[:, x[1]]

    for p, q, y in entries:
        for u, v in ((p, q), (q, p)):
            if fixed(u):
                continue
            mat[u, u] += y
            if fixed(v):
                rhs[u] += y * volts(v)
            else:
                mat[u, v] -= y
    volt = splu(mat.tocsc()).solve(rhs) if n else rhs

    def v_of(x):
        return volts(x) if fixed(x) else volt[x]

    out = np.zeros((drive.shape[0], cols))
    cell_v = np.empty((drive.shape[0], rows, cols))
    for j in range(cols):
        for i in range(rows):
            cell_v[:, i, j] = v_of(a[i, j]) - v_of(bnode[i, j])
            out[:, j] += g[i, j] * cell_v[:, i, j]
    if not detail:
        return out
    driver_i = np.zeros((drive.shape[0], rows))
    wire_w = np.zeros(drive.shape[0])
    n_wires = len(entries) - rows * cols                 # the cells were added last
    for k, (p, q, y) in enumerate(entries):
        i_pq = y * (v_of(p) - v_of(q))
        for x, sign in ((p, 1.0), (q, -1.0)):
            if isinstance(x, tuple) and x[0] == "drv":
                driver_i[:, x[1]] += sign * i_pq
        if k < n_wires:
            wire_w += i_pq * (v_of(p) - v_of(q))
    cell_w = (g * cell_v ** 2).sum((1, 2))
    return {"out": out, "cell_v": cell_v, "driver_i": driver_i, "cell_w": cell_w,
            "wire_w": wire_w}
