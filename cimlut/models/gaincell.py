"""Gain-cell K/V storage and charge-to-pulse readout as device models read from the tables.

`GainCellDevice` answers per-element questions (stored voltage after a write, decay with
time, read charge and energy for a pulse, pulse width for a charge) from the tables of the
K/V cell the config names (`kv_cell`: `<kv_cell>.h5`, e.g. gaincell_pp or gaincell_2t) and of
its readout circuit (`readout_cell`: `charge_to_pulse.h5`) at the config's corner and
temperature. The cell's levels (write range, the mid-level that stands for zero) and its
signed-product convention come from the table file's attributes (`CellLevels`), so a
designer's cell characterized with a spec like netlists/gaincell_pp/tables.toml runs without
code changes.
`GainCellArrays` precomputes, once per config, low-rank factors of the read charge and
energy over (input level or pulse width) x (write level) x (token age), so that attention
runs as a few matmuls instead of one table lookup per (query, key, dim) product.
Internal units: fC, ns, fJ, V.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from .config import HardwareConfig
from .table import Table, TableError

FC, NS, FJ = 1e-15, 1e-9, 1e-15


def _f64(x) -> torch.Tensor:
    return torch.as_tensor(x, dtype=torch.float64)


SIGNED_PRODUCTS = ("reference_column", "push_pull")

# what the simulator reads from a K/V cell's table file: group -> (axes, quantities), units
KV_TABLES = {
    "write": ({"vwrite": "V"}, {"vstored": "V", "ewrite": "J"}),
    "retention": ({"vinit": "V", "time": "s"}, {"v_sn": "V"}),
    "read": ({"vstore": "V", "tpw": "s"}, {"qread": "C", "eread": "J"}),
}
READOUT_TABLES = {"transfer": ({"qin": "C"}, {"tpulse": "s", "econv": "J"})}
LEVEL_ATTRS = ("kv_vwrite_lo", "kv_vwrite_hi", "kv_vmid", "signed_product")


class CellTablesError(TableError):
    """A K/V cell or readout circuit whose table file is missing, lacks a table, axis,
    quantity or attribute, or has other units; the message names the cell and the file."""


@dataclass(frozen=True)
class CellLevels:
    """A K/V cell's levels, from its table file's attributes (written by `cimlut tables
    build` from the cell's declaration, `cimlut.circuits.StorageLevels`): values are written
    as voltages in [lo, hi], `mid` stands for zero; `signed_product` says how the sign reaches
    the readout: `reference_column` (a twin column of cells at mid; products Q(v) - Q(mid)) or
    `push_pull` (the cell's own charge is signed about mid; no twin)."""
    lo: float
    hi: float
    mid: float
    signed_product: str

    @property
    def span(self) -> float:
        return self.hi - self.lo

    @property
    def offset(self) -> float:
        """The mid-level as a fraction of the write range (what k_hat = offset stores)."""
        return (self.mid - self.lo) / self.span

    @property
    def has_reference(self) -> bool:
        return self.signed_product == "reference_column"

    @classmethod
    def from_attrs(cls, attrs: dict, cell: str, path: Path) -> "CellLevels":
        missing = [k for k in LEVEL_ATTRS if k not in attrs]
        if missing:
            raise CellTablesError(
                f"kv_cell {cell!r}: {path} has no attribute(s) {', '.join(missing)} (the cell's "
                "write range, mid-level and signed-product convention); declare `levels` in the "
                "cell's declaration (cimlut.circuits) and rebuild with `cimlut tables build`")
        units = attrs.get("kv_units", "V")
        if units != "V":
            raise CellTablesError(f"kv_cell {cell!r}: {path}: levels are in {units!r}, expected 'V'")
        lv = cls(float(attrs["kv_vwrite_lo"]), float(attrs["kv_vwrite_hi"]),
                 float(attrs["kv_vmid"]), str(attrs["signed_product"]))
        if lv.signed_product not in SIGNED_PRODUCTS:
            raise CellTablesError(f"kv_cell {cell!r}: {path}: signed_product "
                                  f"{lv.signed_product!r}, expected one of {', '.join(SIGNED_PRODUCTS)}")
        if not lv.lo < lv.mid < lv.hi:
            raise CellTablesError(f"kv_cell {cell!r}: {path}: levels need kv_vwrite_lo < kv_vmid < "
                                  f"kv_vwrite_hi, got {lv.lo}, {lv.mid}, {lv.hi} V")
        return lv


def _load_cell(kind: str, cell: str, path: Path, groups: dict, corner: str, policy: str) -> dict[str, Table]:
    """The tables `groups` names from `path`, or a CellTablesError naming the cell, the file
    and what is missing."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", cell):
        raise CellTablesError(f"{kind} {cell!r}: a cell name is letters, digits and '_' (its "
                              f"tables are <name>.h5 in the tables folder)")
    if not path.is_file():
        raise CellTablesError(f"{kind} {cell!r}: no table file {path} (build it with `cimlut "
                              f"tables build {cell} --out {path.parent}`, or set tables_dir)")
    out = {}
    for group, (axes, quantities) in groups.items():
        try:
            out[group] = Table.load(path, group, corner, axes=axes, quantities=quantities,
                                    policy=policy)
        except TableError as exc:
            raise CellTablesError(f"{kind} {cell!r}: {exc}") from None
    return out


class GainCellDevice:
    """The K/V cell's write/retention/read tables and the readout circuit's transfer table at
    one corner and temperature, with the edge rules each docstring states (SI units)."""

    def __init__(self, config: HardwareConfig):
        d, c, pol = config.tables_folder(), config.corner, config.out_of_range
        self.cell, self.readout_cell = config.kv_cell, config.readout_cell
        gc, cp = d / f"{self.cell}.h5", d / f"{self.readout_cell}.h5"
        kv = _load_cell("kv_cell", self.cell, gc, KV_TABLES, c, pol)
        self.write, self.retention, self.read = kv["write"], kv["retention"], kv["read"]
        self.c2p = _load_cell("readout_cell", self.readout_cell, cp, READOUT_TABLES, c, pol)["transfer"]
        self.levels = CellLevels.from_attrs(self.write.attrs["file"], self.cell, gc)
        self.temperature = float(config.temperature)
        for t in (self.write, self.retention, self.read, self.c2p):
            t.require_within("temperature", self.temperature, "temperature")

    def tables(self) -> list[Table]:
        return [self.write, self.retention, self.read, self.c2p]

    def stored(self, vwrite) -> torch.Tensor:
        """Storage-node voltage right after writing `vwrite` (the write table's transfer:
        a pass gate's threshold loss, feed-through at the word-line edges)."""
        return self.write("vstored", temperature=self.temperature, vwrite=_f64(vwrite))

    def write_energy(self, vwrite) -> torch.Tensor:
        return self.write("ewrite", temperature=self.temperature, vwrite=_f64(vwrite))

    def decayed(self, v0, seconds) -> torch.Tensor:
        """Storage voltage `seconds` after the write. Times below the table's first time
        point (1e-7 s) use that point: the node has not moved measurably by then. A start
        outside the vinit axis (gaincell_2t's pass gate stores -0.11 V for a 0 V write) takes
        the decay of the nearest tabulated start, v0 + (v(clamp(v0), t) - clamp(v0))."""
        ax = self.retention.axes
        v0, t = _f64(v0), _f64(seconds).clamp(min=ax["time"].lo)
        v0c = v0.clamp(ax["vinit"].lo, ax["vinit"].hi)
        return v0 + self.retention("v_sn", temperature=self.temperature, vinit=v0c, time=t) - v0c

    def _along_tpw(self, quantity: str, v, t) -> torch.Tensor:
        """Read `quantity` for a pulse of width t on a cell at v. No pulse reads nothing:
        below the first pulse width (1 ns) the value goes linearly to 0 at t = 0; above the
        last (15 ns; the charge-to-pulse saturates at ~15.02 ns) it extends the last
        segment linearly (charge and energy are affine in t there). v is clamped to the
        vstore axis (gaincell_2t: below 0 V the read nFET is further off than at the 0 V
        point, whose charge, ~1e-19 C, is already 1e-6 of a full cell; gaincell_pp: the axis
        spans 0.35-1.45 V, beyond what its writes store)."""
        ax = self.read.axes
        v, t = torch.broadcast_tensors(_f64(v).clamp(ax["vstore"].lo, ax["vstore"].hi), _f64(t))
        tw = ax["tpw"].values
        lo, hi, prev = float(tw[0]), float(tw[-1]), float(tw[-2])
        out = self.read(quantity, temperature=self.temperature, vstore=v, tpw=t.clamp(lo, hi))
        below, above = t < lo, t > hi
        if bool(below.any()):
            vb, tb = v[below], t[below]
            out[below] = self.read(quantity, temperature=self.temperature, vstore=vb, tpw=lo) * (tb.clamp(min=0) / lo)
        if bool(above.any()):
            va, ta = v[above], t[above]
            q_hi = self.read(quantity, temperature=self.temperature, vstore=va, tpw=hi)
            q_prev = self.read(quantity, temperature=self.temperature, vstore=va, tpw=prev)
            out[above] = q_hi + (q_hi - q_prev) * (ta - hi) / (hi - prev)
        return out

    def charge(self, v, t) -> torch.Tensor:
        """Charge [C] a cell at storage voltage v puts on its column for a pulse t [s]."""
        return self._along_tpw("qread", v, t)

    def read_energy(self, v, t) -> torch.Tensor:
        return self._along_tpw("eread", v, t)

    def ref_charge(self, v, t) -> torch.Tensor:
        """Charge of the reference twin at storage voltage v for a pulse t: `charge` for a
        reference-column cell, 0 for a push-pull cell (it has no twin)."""
        if self.levels.has_reference:
            return self.charge(v, t)
        return torch.zeros(torch.broadcast_shapes(_f64(v).shape, _f64(t).shape), dtype=torch.float64)

    def ref_read_energy(self, v, t) -> torch.Tensor:
        """Read energy of the reference twin (0 for a push-pull cell)."""
        if self.levels.has_reference:
            return self.read_energy(v, t)
        return torch.zeros(torch.broadcast_shapes(_f64(v).shape, _f64(t).shape), dtype=torch.float64)

    def _qin(self, q) -> torch.Tensor:
        a = self.c2p.axes["qin"]
        return _f64(q).clamp(a.lo, a.hi)

    def pulse(self, q) -> torch.Tensor:
        """Output pulse width [s] for input charge q [C]. Negative charge is no charge (the
        integrator starts at its reset level); beyond the qin axis the converter is
        saturated (its pulse is flat at T_max from ~150 fC = 10 uA x 15 ns)."""
        return self.c2p("tpulse", temperature=self.temperature, qin=self._qin(q))

    def conversion_energy(self, q) -> torch.Tensor:
        return self.c2p("econv", temperature=self.temperature, qin=self._qin(q))

    def report(self) -> str:
        """Clamped-query counts of the tables, or ''."""
        return ", ".join(f"{t.path.name}:{r}" for t in self.tables() if (r := t.report()))


# --------------------------------------------------------------------------- low rank
@dataclass
class Factors:
    """G[x, b, a] ~= sum_m u[r[m], x] p[m, b] c[m, a]: x the pulse axis (input level or
    pulse-width grid), b the write level, a the token age."""
    u: torch.Tensor      # (R, X)
    p: torch.Tensor      # (M, B)
    c: torch.Tensor      # (M, A)
    r: list[int]         # (M,) which u row term m uses
    residual: float      # max |G - approx| / max |G|
    energy_rows: int = 0  # trailing u rows (and their terms, p = 0) that carry energy only

    @property
    def ranks(self) -> tuple[int, int]:
        """(pulse rows, terms) of the charge itself, energy-only modes left out."""
        extra = sum(1 for r in self.r if r >= len(self.u) - self.energy_rows)
        return len(self.u) - self.energy_rows, len(self.p) - extra

    def expand(self) -> torch.Tensor:
        return torch.einsum("mx,mb,ma->xba", self.u[self.r], self.p, self.c)


def _trunc_error(U, s, Vh, k, M) -> float:
    return float(((U[:, :k] * s[:k]) @ Vh[:k] - M).abs().max())


def lowrank(G: torch.Tensor, rtol: float, floor: float | None = None, max_modes: int = 4) -> Factors:
    """Two-level SVD of G (X, B, A): over x against (b, a), then each kept mode's (b, a)
    matrix. Of the splits whose max residual is <= rtol x max|G|, the one with the fewest
    terms (one matmul each) wins. With `floor`, each write level b is held to rtol of its
    own largest value (but not below floor x max|G|): the read charge grows ~13x per level,
    so a residual relative to the top level would swamp the middle levels."""
    if floor is not None:
        w = G.abs().amax((0, 2))
        w = w.clamp(min=floor * float(w.max())).clamp(min=1e-300)
        f = _lowrank(G / w[None, :, None], rtol, max_modes)
        f.p = f.p * w[None, :].to(f.p.dtype)
        return f
    return _lowrank(G, rtol, max_modes)


def _lowrank(G: torch.Tensor, rtol: float, max_modes: int) -> Factors:
    X, B, A = G.shape
    scale = float(G.abs().max()) or 1.0
    tol = rtol * scale
    M = G.reshape(X, B * A)
    U, s, Vh = torch.linalg.svd(M, full_matrices=False)
    inner = [torch.linalg.svd((s[r] * Vh[r]).reshape(B, A), full_matrices=False)
             for r in range(min(max_modes, len(s)))]
    best = None
    for R in range(1, len(inner) + 1):
        budget = tol - _trunc_error(U, s, Vh, R, M)
        if budget <= 0 and R < len(inner):
            continue
        us, ps, cs, rs = [], [], [], []
        for r in range(R):
            P, s2, Ch = inner[r]
            W = (s[r] * Vh[r]).reshape(B, A)
            umax = float(U[:, r].abs().max())
            k = next((k for k in range(1, len(s2) + 1)
                      if _trunc_error(P, s2, Ch, k, W) * umax <= max(budget, 0) / R), len(s2))
            us.append(U[:, r])
            for j in range(k):
                ps.append(P[:, j] * s2[j])
                cs.append(Ch[j])
                rs.append(r)
        f = Factors(torch.stack(us), torch.stack(ps), torch.stack(cs), rs, 0.0)
        f.residual = float((f.expand() - G).abs().max()) / scale
        if best is None or (f.residual <= rtol and (best.residual > rtol or len(f.p) < len(best.p))):
            best = f
    return best


def with_energy_modes(basis: Factors, G: torch.Tensor, rtol: float, max_rows: int = 2,
                      max_terms: int = 4) -> Factors:
    """`basis` with pulse modes added for what `project(G, basis)` leaves (terms with p = 0:
    they add no charge). A push-pull cell's read energy has a part that does not scale with
    the pulse width (its read word lines' edges move the storage node by an amount that
    depends on the stored value), which the charge's own pulse mode (~t) cannot carry."""
    X, B, A = G.shape
    f = basis
    for _ in range(max_rows):
        e, res = project(G, f)
        if res <= rtol:
            break
        fit = torch.einsum("mx,ma,mb->xba", f.u[f.r], f.c, e)
        U, s, Vh = torch.linalg.svd((G - fit).reshape(X, B * A), full_matrices=False)
        P, s2, Ch = torch.linalg.svd((s[0] * Vh[0]).reshape(B, A), full_matrices=False)
        k = min(max_terms, len(s2))
        row = len(f.u)
        f = Factors(torch.cat([f.u, U[:, :1].T]), torch.cat([f.p, f.p.new_zeros(k, B)]),
                    torch.cat([f.c, Ch[:k]]), f.r + [row] * k, f.residual, f.energy_rows + 1)
    return f


def project(G: torch.Tensor, basis: Factors, scale: float = 0.0) -> tuple[torch.Tensor, float]:
    """Coefficients e[m, b] with G[x, b, a] ~= sum_m u[r[m], x] c[m, a] e[m, b] (least
    squares in the charge's own x and age bases), and the max residual / (scale or max |G|)."""
    X, B, A = G.shape
    Phi = torch.einsum("mx,ma->xam", basis.u[basis.r], basis.c).reshape(X * A, -1)
    rhs = G.permute(0, 2, 1).reshape(X * A, B)
    e = torch.linalg.lstsq(Phi, rhs).solution                      # (M, B)
    fit = (Phi @ e).reshape(X, A, B).permute(0, 2, 1)
    return e, float((fit - G).abs().max()) / (scale or float(G.abs().max()) or 1.0)


# --------------------------------------------------------------------------- arrays
def predistorted_levels(dev: GainCellDevice, n: int, t: float, grid: int = 4097) -> torch.Tensor:
    """Write predistortion: the `n` write voltages whose fresh read charge at pulse width `t`
    lies on a straight line through the mid-level, found through the inverse of the cell's
    own tables (write transfer, then read charge) at the operating corner and temperature.
    The line's slope is the smaller half-secant (mid -> top, bottom -> mid), so every level
    is reachable inside the write range; a static nonlinearity of the multiply then cancels
    (decay and the pulse-width dependence stay)."""
    lv = dev.levels
    vw = torch.linspace(lv.lo, lv.hi, grid, dtype=torch.float64)
    ref = dev.ref_charge(dev.stored(lv.mid), t)
    q = dev.charge(dev.stored(vw), t) - ref
    if not bool((q[1:] >= q[:-1]).all()) or not float(q[-1]) > float(q[0]):
        raise CellTablesError(f"kv_cell {dev.cell!r}: the read charge at {t:g} s is not "
                              f"increasing in the write voltage over {lv.lo}-{lv.hi} V: it cannot "
                              f"be inverted for write predistortion (kv_predistort)")
    qm = float(dev.charge(dev.stored(lv.mid), t) - ref)
    slope = min((float(q[-1]) - qm) / (lv.hi - lv.mid), (qm - float(q[0])) / (lv.mid - lv.lo))
    nominal = torch.linspace(lv.lo, lv.hi, n, dtype=torch.float64)
    target = qm + slope * (nominal - lv.mid)
    i = (torch.searchsorted(q, target) - 1).clamp(0, grid - 2)
    dq = q[i + 1] - q[i]
    w = torch.where(dq > 0, (target - q[i]) / dq.clamp(min=1e-300), torch.zeros_like(dq)).clamp(0, 1)
    return vw[i] + w * (vw[i + 1] - vw[i])


class GainCellArrays:
    """Everything attention needs from the tables for one config, shared by all layers.

    K side: G_K[l, b, a] = Q(V(b, a), t_l) - Q(Vref(a), t_l) [fC] over q levels l, write
    levels b (kv_levels from the cell's write range lo..hi, `CellLevels`) and ages a (in
    tokens), V(b, a) the stored voltage of level b after a x token_period, Vref the
    reference twin written at the cell's mid-level (reference_column cells; a push-pull
    cell's charge is already signed about its mid-level: no twin, Q(Vref) = 0). V side: the
    same over a grid of pulse widths t in [0, max tpulse]. Read energies are split into a
    floor e_floor(t) = eread(lowest vstore, t) (the read path's own switching, counted
    exactly, once per cell and once per twin) and the stored-value part, factored the same
    way (K side) or projected on the V charge factors (V side). `residuals` reports each approximation
    (max error / max value; per write level if `level_floor` is set, see `lowrank`).
    """

    N_X = 65537   # qin grid of the composite readout tables (nearest point, <=1.5e-3 fC off)
    SUB_T = 8     # V-side pulse-width grid: each tpw segment of the read table split in 8

    def __init__(self, config: HardwareConfig, rtol: float = 1e-4, energy_rtol: float = 1e-3,
                 level_floor: float | None = None):
        self.config, self.rtol, self.energy_rtol = config, rtol, energy_rtol
        dev = self.device = GainCellDevice(config)
        cfg = config
        self.Lq, self.Lkv = int(cfg.q_levels), int(cfg.kv_levels)
        if self.Lq < 2 or self.Lkv < 2 or cfg.out_levels < 2:
            raise ValueError("q_levels, kv_levels and out_levels must be >= 2")
        self.t_max = cfg.t_max / NS
        self.t_levels = torch.arange(self.Lq, dtype=torch.float64) / (self.Lq - 1) * cfg.t_max
        lv = self.levels = dev.levels
        self.v_lo, self.v_hi, self.v_mid, self.v_span = lv.lo, lv.hi, lv.mid, lv.span
        self.offset, self.has_reference = lv.offset, lv.has_reference
        self.v_twins = int(lv.has_reference)          # reference cells per V-array row
        self.vw_levels = torch.linspace(lv.lo, lv.hi, self.Lkv, dtype=torch.float64)
        if cfg.kv_predistort:
            self.vw_levels = predistorted_levels(dev, self.Lkv, cfg.t_max)
        self.ages = (2 * cfg.window + 1) if cfg.decay else 1
        age_s = torch.arange(self.ages, dtype=torch.float64) * cfg.token_period

        vs, vref = dev.stored(self.vw_levels), dev.stored(lv.mid)
        if cfg.decay:
            V = dev.decayed(vs[:, None], age_s[None, :])                 # (B, A)
            Vr = dev.decayed(vref, age_s)                                # (A,)
        else:
            V, Vr = vs[:, None], vref.reshape(1)
        self.v_stored, self.v_ref = V, Vr
        self.ewrite = (dev.write_energy(self.vw_levels) / FJ).float()
        self.ewrite_ref = float(dev.write_energy(lv.mid)) / FJ if lv.has_reference else 0.0
        v0 = dev.read.axes["vstore"].lo

        twins = 1 + lv.has_reference                                   # cells read per product

        def cell(fn, ref, t):   # fn(V(b,a), t), ref(Vref(a), t) on t (X,) -> (X, B, A), (X, 1, A)
            t = t[:, None, None]
            return fn(V[None], t), ref(Vr[None, None], t)

        # K side: pulse levels
        qc, qr = cell(dev.charge, dev.ref_charge, self.t_levels)
        self.K = lowrank((qc - qr) / FC, rtol, level_floor)
        ec, er = cell(dev.read_energy, dev.ref_read_energy, self.t_levels)
        floor_k = dev.read_energy(v0, self.t_levels)[:, None, None]
        er = (er - floor_k) if lv.has_reference else er                # no twin: nothing
        self.EK = lowrank(((ec - floor_k) + er) / FJ, energy_rtol)
        self.ek_floor = (twins * floor_k.flatten() / FJ).float()      # cell (+ reference twin)

        # charge-to-pulse: the HardSigmoid, and its linear idealization
        qax = dev.c2p.axes["qin"]
        self.dq = (qax.hi - qax.lo) / FC / (self.N_X - 1)
        x = torch.linspace(qax.lo, qax.hi, self.N_X, dtype=torch.float64)
        tp = dev.pulse(x)
        self.t_sat = float(tp.max()) / NS
        lin = tp < 0.9 * tp.max()
        slope = float((x[lin] * tp[lin]).sum() / (x[lin] ** 2).sum())  # s/C through 0
        self.q_sat = cfg.t_max / slope / FC
        self.phi_table = (tp / NS).float()
        ecv = dev.conversion_energy(x) / FJ
        spread = float(ecv.max() - ecv.min()) / max(float(ecv.abs().max()), 1e-300)
        self.econv_const = float(ecv.mean()) if spread < 1e-6 else None
        self.econv_table = ecv.float()

        # V side: pulse-width grid, composite tables over the c2p input charge
        tg = self._t_grid()
        qc, qr = cell(dev.charge, dev.ref_charge, tg)
        self.V = lowrank((qc - qr) / FC, rtol, level_floor)
        ec, er = cell(dev.read_energy, dev.ref_read_energy, tg)
        floor_v = dev.read_energy(v0, tg)[:, None, None]
        self.V = with_energy_modes(self.V, (ec - floor_v) / FJ, energy_rtol)
        self.ev, res_ev = project((ec - floor_v) / FJ, self.V)
        er = (er - floor_v) if lv.has_reference else torch.zeros_like(er)   # no twin: nothing
        self.ev_ref, res_evr = project(er / FJ,
                                       self.V, float((ec - floor_v).abs().max()) / FJ)
        self.ev, self.ev_ref = self.ev.float(), self.ev_ref[:, 0].float()
        i0 = (torch.searchsorted(tg, tp, right=True) - 1).clamp(0, len(tg) - 2)
        w = ((tp - tg[i0]) / (tg[i0 + 1] - tg[i0])).clamp(0, 1).unsqueeze(0)
        self.hv_table = ((1 - w) * self.V.u[:, i0] + w * self.V.u[:, i0 + 1]).T.float().contiguous()
        fl = floor_v.flatten()
        self.ev_floor_table = ((1 - w[0]) * fl[i0] + w[0] * fl[i0 + 1]).float() / FJ

        # ideal: Q = g_lin (v - mid) t, the secant of the tables from the mid-level to the top
        top = self.vw_levels[-1]   # lv.hi, or the predistorted top level
        full = dev.charge(dev.stored(top), cfg.t_max) - dev.ref_charge(vref, cfg.t_max)
        self.g_lin = float(full) / FC / ((lv.hi - lv.mid) * self.t_max)

        self.residuals = {"qk_charge": self.K.residual, "pv_charge": self.V.residual,
                          "qk_energy": self.EK.residual, "pv_energy": res_ev,
                          "pv_energy_ref": res_evr}
        self.K_f, self.V_f, self.EK_f = (self._float(f) for f in (self.K, self.V, self.EK))
        self._lookup_tables()
        self.workspace = Workspace()
        self._geometry = None

    def _t_grid(self) -> torch.Tensor:
        """Pulse widths 0 .. the longest pulse (the charge-to-pulse saturation, or the
        pulse-width DAC's t_max, whichever is longer: on ngspice 46 the saturation is 4e-5 ns
        short of 15 ns) with the read table's tpw points as grid nodes (the charge has kinks
        there), each segment split in SUB_T: u(t) is then linear to ~2e-6."""
        end = max(self.t_sat * NS, self.config.t_max)
        nodes = [0.0, *self.device.read.axes["tpw"].values.tolist()]
        nodes = sorted({n for n in nodes if n < end} | {end})
        segs = [torch.linspace(a, b, self.SUB_T + 1, dtype=torch.float64)[:-1]
                for a, b in zip(nodes[:-1], nodes[1:])]
        return torch.cat(segs + [torch.tensor([nodes[-1]], dtype=torch.float64)])

    def _lookup_tables(self):
        """Per-level rows gathered once per call: q level -> (u_K..., u_E..., floor);
        write level -> (p_K..., p_E...) and (p_V..., e_V...), with an all-zero level Lkv
        for padding slots; c_m(0) folded in when nothing decays."""
        K, E, V = self.K_f, self.EK_f, self.V_f
        self.q_tab = torch.cat([K.u, E.u, self.ek_floor[None]]).T.contiguous()
        const = self.ages == 1
        pk = K.p * K.c[:, :1] if const else K.p
        zero = lambda t: torch.cat([t, t.new_zeros(len(t), 1)], 1).T.contiguous()
        self.k_tab = zero(torch.cat([pk, E.p]))
        self.v_tab = zero(torch.cat([V.p, self.ev]))
        self.hf_packed = None
        if self.hv_table.shape[1] == 1:
            two = torch.stack([self.hv_table[:, 0], self.ev_floor_table], 1).contiguous()
            self.hf_packed = two.view(torch.float64).view(-1)

    def report(self) -> str:
        """Clamped-query counts of the tables read, or ''."""
        return self.device.report()

    @staticmethod
    def _float(f: Factors) -> Factors:
        return Factors(f.u.float(), f.p.float(), f.c.float(), f.r, f.residual, f.energy_rows)

    def describe(self) -> str:
        rk = lambda f: f"{f.ranks[0]}x{f.ranks[1]}"
        return (f"gain-cell arrays @ {self.config.corner} {self.config.temperature} C: "
                f"ranks (pulse x terms) QK {rk(self.K)}, PV {rk(self.V)} (+{self.V.energy_rows} "
                f"energy-only pulse modes), QK energy {rk(self.EK)}; "
                "residuals " + ", ".join(f"{k} {v:.2e}" for k, v in self.residuals.items()))


ARRAY_KEYS = ("tables_dir", "kv_cell", "readout_cell", "corner", "temperature", "out_of_range",
              "window", "q_levels", "kv_levels", "out_levels", "t_max", "token_period", "decay",
              "kv_predistort")


@functools.lru_cache(maxsize=8)
def _arrays(key: str, rtol: float, level_floor: float | None) -> GainCellArrays:
    return GainCellArrays(HardwareConfig.from_dict(json.loads(key)), rtol, level_floor=level_floor)


def get_arrays(config: HardwareConfig, rtol: float = 1e-4,
               level_floor: float | None = None) -> GainCellArrays:
    """The shared GainCellArrays of a config (cached on the fields that change them)."""
    d = config.to_dict()
    return _arrays(json.dumps({k: d[k] for k in ARRAY_KEYS}, sort_keys=True), rtol, level_floor)


class Workspace:
    """Scratch buffers reused across query blocks and layers: fresh multi-MB tensors per
    block cost page faults that took as long as the arithmetic. One forward at a time."""

    def __init__(self):
        self._bufs: dict[tuple[str, torch.dtype], torch.Tensor] = {}

    def get(self, name: str, shape, dtype=torch.float32) -> torch.Tensor:
        n = 1
        for s in shape:
            n *= s
        buf = self._bufs.get((name, dtype))
        if buf is None or buf.numel() < n:
            buf = self._bufs[(name, dtype)] = torch.empty(n, dtype=dtype)
        return buf[:n].view(shape)


# --------------------------------------------------------------------------- geometry
@dataclass
class Chunk:
    """A block of queries and the key slots (whole tiles) any of them can see."""
    rows: slice          # query rows of the block
    slots: slice         # slot range (whole tiles)
    tiles: slice         # tile range
    mask: torch.Tensor   # (qc, ns) float 0/1, keys in slot order
    tmask: torch.Tensor  # (nt, 1, qc, n) the same, tile-major (broadcasts over the group)
    ck: torch.Tensor | None   # (M_K, qc, ns) age factors of the QK charge (None: no decay)
    cv: torch.Tensor     # (M_V, nt, 1, qc, n) age factors of the PV charge x mask
    ce: torch.Tensor     # (M_E, qc, ns) age factors of the QK energy x mask
    keys: torch.Tensor   # (qc,) valid keys per query
    tiles_read: torch.Tensor  # (qc,) tiles holding a valid key, per query


class Geometry:
    """Where each key sits (ring-buffer tile of the window) and how old it is when each query
    reads it; depends only on positions, so all heads and layers share it.

    Key j lives in physical tile (k_pos mod window) // subtile. Causal: key j is written at
    time k_pos and read at q_pos, valid if 0 <= q_pos - k_pos < window. Not causal (an
    encoder): every key is written first, then queries are read, query i at time
    max(k_pos) + 1 + q_pos; all keys are valid (at most `window` of them).
    """

    def __init__(self, arrays: GainCellArrays, subtile: int, q_pos: torch.Tensor,
                 k_pos: torch.Tensor, causal: bool, qc: int):
        W, sub = int(arrays.config.window), int(subtile)
        self.q_pos, self.k_pos, self.causal, self.qc, self.subtile = q_pos, k_pos, causal, qc, sub
        Tq, Tk = len(q_pos), len(k_pos)
        if not causal and Tk > W:
            raise ValueError(f"non-causal gain-cell attention holds at most window={W} keys, got {Tk}")
        tile = torch.remainder(k_pos, W) // sub
        order = torch.argsort(tile * (int(k_pos.max()) + 1 - int(k_pos.min()) + 1) + (k_pos - k_pos.min()),
                              stable=True)
        present, counts = torch.unique(tile, return_counts=True)
        self.n = n = int(counts.max())
        self.G = G = len(present)
        slot = torch.full((G, n), Tk, dtype=torch.long)          # Tk = padding (a zero row)
        start = 0
        for g in range(G):
            c = int(counts[g])
            slot[g, :c] = order[start:start + c]
            start += c
        self.slot = slot.reshape(-1)                               # (G*n,) key index or Tk
        self.identity = bool(torch.equal(self.slot[:Tk], torch.arange(Tk))
                             and bool((self.slot[Tk:] == Tk).all()))
        kp = torch.cat([k_pos, k_pos.new_zeros(1)])[self.slot]
        pad = self.slot == Tk
        read = q_pos if causal else q_pos + int(k_pos.max()) + 1
        age = read[:, None] - kp[None, :]                          # (Tq, G*n)
        valid = ~pad[None, :] & (age >= 0) & ((age < W) if causal else True)
        self.valid_count = valid.sum(1)
        A = arrays.ages
        a_idx = age.clamp(0, A - 1)
        self.chunks = []
        for i0 in range(0, Tq, qc):
            r = slice(i0, min(Tq, i0 + qc))
            vm = valid[r]
            tiles_any = vm.view(-1, G, n).any(-1)                  # (qc, G)
            used = tiles_any.any(0).nonzero().flatten()
            if len(used) == 0:
                continue
            g0, g1 = int(used[0]), int(used[-1]) + 1
            s = slice(g0 * n, g1 * n)
            m = vm[:, s].float()
            ai = a_idx[r, s]
            tiled = lambda x: x.view(*x.shape[:-1], g1 - g0, n).transpose(-2, -3).unsqueeze(-3).contiguous()
            ck = arrays.K_f.c[:, ai] if A > 1 else None           # no decay: folded into P
            cv, ce = tiled(arrays.V_f.c[:, ai] * m), arrays.EK_f.c[:, ai] * m
            self.chunks.append(Chunk(r, s, slice(g0, g1), m, tiled(m), ck, cv, ce, vm[:, s].sum(1),
                                     tiles_any[:, g0:g1].sum(1)))

    def matches(self, subtile, q_pos, k_pos, causal, qc) -> bool:
        return (causal == self.causal and qc == self.qc and subtile == self.subtile
                and q_pos.shape == self.q_pos.shape
                and k_pos.shape == self.k_pos.shape and torch.equal(q_pos, self.q_pos)
                and torch.equal(k_pos, self.k_pos))


def geometry(arrays: GainCellArrays, subtile: int, q_pos, k_pos, causal: bool, qc: int) -> Geometry:
    """The Geometry of these positions, reused while consecutive layers ask for the same."""
    g = arrays._geometry
    if g is None or not g.matches(subtile, q_pos, k_pos, causal, qc):
        g = arrays._geometry = Geometry(arrays, subtile, q_pos, k_pos, causal, qc)
    return g
