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
"""

from __future__ import annotations

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
                          r_clamp: float = 0.0) -> torch.Tensor:
    """M [..., R, C] [S]: readout current of column j per volt on row i's driver (others
    at 0 V), for cell conductances g [..., R, C] [S] (all > 0) and wire resistances per
    segment [ohm]. Leading dimensions are tiles, solved as one batch; float64 inside."""
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
    out = torch.cat([_solve(g[s:s + per], r_row, r_col, r_clamp)
                     for s in range(0, g.shape[0], per)])
    return out.reshape(*lead, rows, cols).to(dtype)


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


def _transfer(y: torch.Tensor, r_row: float, tol: float) -> torch.Tensor:
    """T = (I + rY)^-1. rY = D + E with D its diagonal: T = S (I + F)^-1 S with
    S = (I + D)^-1/2 and F = S E S, whose Neumann series converges fast (E holds only the
    coupling through the column wires); terms are added until the bound C ||F||^(k+1)
    (the caller's `tol`) is met, else a Cholesky inverse."""
    x = r_row * y
    s = (1.0 + x.diagonal(dim1=-2, dim2=-1)).rsqrt()
    f = s[:, :, None] * x * s[:, None, :]
    f.diagonal(dim1=-2, dim2=-1).zero_()
    norm = float(f.abs().sum(-1).max())
    order = 0
    while norm > 0 and tol(norm ** (order + 1)) and order < 4:
        order += 1
    if norm > 0 and tol(norm ** (order + 1)):
        eye = torch.eye(y.shape[-1], dtype=y.dtype)
        return torch.cholesky_inverse(torch.linalg.cholesky(eye + x))
    # the powers of F are corrections of relative size ||F||^k <= 1e-2: float32 products
    # carry them to ~1e-9 of T (and run ~2x faster than float64 here)
    inner, term = -f if order else torch.zeros_like(f), f
    f32 = f.float() if order > 1 else None
    for k in range(2, order + 1):
        term = (term.float() @ f32).double()
        inner = inner + term if k % 2 == 0 else inner - term      # -f + f^2 - f^3 ...
    inner.diagonal(dim1=-2, dim2=-1).add_(1.0)
    return s[:, :, None] * inner * s[:, None, :]


def _solve(g: torch.Tensor, r_row: float, r_col: float, r_clamp: float) -> torch.Tensor:
    """Walk the columns from the far end: Y_j = H_j + Y_{j+1} T_{j+1}, and carry every
    column's readout vector H_j 1 back through the row segments to the drivers
    (W <- T_j [H_j 1, W]): the result is M with no transfer matrix stored."""
    b, rows, cols = g.shape
    columns = _Columns(g, r_col, r_clamp)
    if r_row == 0:                                               # every row node at its drive
        return torch.stack([columns(j).sum(-1) for j in range(cols)], -1)
    # a term dropped from a series costs at most ~C ||F||^(k+1) relative, over C segments
    tol = lambda rest: cols * rest > TOL                          # noqa: E731
    w = g.new_empty(b, rows, cols)
    h = columns(cols - 1)
    y = h
    for j in range(cols - 1, -1, -1):
        t = _transfer(y, r_row, tol)
        w[:, :, j] = h.sum(-1)
        w[:, :, j:] = t @ w[:, :, j:]
        if j:
            h = columns(j - 1)
            yt = -t
            yt.diagonal(dim1=-2, dim2=-1).add_(1.0)              # Y T = (I - T) / r
            y = h + yt / r_row
    return w


def effective_pairs(g_pos: torch.Tensor, g_neg: torch.Tensor, tile_rows: int, tile_outputs: int,
                    r_row: float, r_col: float, r_clamp: float = 0.0
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Effective conductances of a layer's differential pairs, tile by tile.

    g_pos, g_neg [in, out] [S]; a tile holds `tile_rows` inputs and `tile_outputs` outputs,
    output k of a tile on physical columns 2k (G+) and 2k+1 (G-). Edge tiles hold what is
    left (their unused cells are left out of the circuit: the used ones sit next to the
    drivers and the readout). Returns the effective (M+, M-) [in, out]."""
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
        m = effective_conductance(tiles, r_row, r_col, r_clamp)
        for k, (r0, c0) in enumerate(where):
            m_pos[r0:r0 + nr, c0:c0 + nc] = m[k, :, 0::2].to(m_pos.dtype)
            m_neg[r0:r0 + nr, c0:c0 + nc] = m[k, :, 1::2].to(m_neg.dtype)
    return m_pos, m_neg


def nodal_solve(g: np.ndarray, drive: np.ndarray, r_row: float, r_col: float,
                r_clamp: float = 0.0) -> np.ndarray:
    """Readout currents [K, C] [A] of one tile for drive voltages [K, R] [V], by plain
    nodal analysis of every wire and cell node (scipy sparse LU). Zero resistances are
    merged nodes. The reference for `effective_conductance`; slow for big tiles."""
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
    for j in range(cols):
        for i in range(rows):
            out[:, j] += g[i, j] * (v_of(a[i, j]) - v_of(bnode[i, j]))
    return out
