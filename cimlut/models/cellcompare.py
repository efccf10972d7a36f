"""`cimlut cells compare`: K/V gain cells side by side, read from their tables the way the
simulator reads them (`GainCellDevice`), so a designer sees at a glance what a cell does to
the multiply.

Per cell, at one corner, temperature and pulse width (default tt, 27 C, t_max = 15 ns):

- the signed product P(k) = Q(stored(w(k)), T) - Q_ref(T) against the signed write level
  k in [-1, 1] (w(k) = mid + k (hi - mid) below/above mid, the cell's own levels; Q_ref is
  the reference twin's charge at the mid-level, 0 for a push-pull cell), normalised by P(+1);
- INL: the largest deviation of P from its least-squares line over the write range, % of
  the span of P (write transfer and read together, what attention sees), and the same for
  the read alone over the stored range the write table produces;
- droop: how far the top level's product moves after `window` tokens at `token_period`
  (retention table), and after a 50 mV drop of the stored voltage, % of the span of P;
- read energy per cell read (fJ, mean over the write range), and per signed product (a
  reference-column cell reads its twin as well).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .config import HardwareConfig
from .gaincell import FC, FJ, GainCellDevice

N_LEVELS = 129   # write levels of the curves (a fine grid, not the simulator's kv_levels)


@dataclass
class CellFigures:
    cell: str
    signed_product: str
    levels: tuple[float, float, float]     # write lo, mid, hi [V]
    stored: tuple[float, float]            # stored range of the write table [V]
    k: np.ndarray                          # signed write levels
    product: np.ndarray                    # P(k) [fC]
    inl: float                             # fraction of the span, write + read
    inl_read: float                        # fraction of the span, read alone
    droop_window: float                    # top level, fraction of the span
    droop_window_v: float                  # top level, V
    droop_50mv: float                      # fraction of the span
    e_read: np.ndarray                     # per cell read over k [fJ]
    e_cell: float                          # mean per cell read [fJ]
    e_product: float                       # mean per signed product [fJ]
    age: np.ndarray                        # token ages of the droop curve
    top_decay: np.ndarray                  # P(top, age) / P(top, 0)

    def row(self) -> str:
        return (f"{self.cell:14s} {self.signed_product:16s} {self.levels[0]:.2f}-{self.levels[2]:.2f} V "
                f"(mid {self.levels[1]:.2f}) {self.inl:8.2%} {self.inl_read:9.2%} "
                f"{self.droop_window:10.3%} {self.droop_50mv:9.2%} {self.e_cell:9.1f} {self.e_product:9.1f}")


HEADER = (f"{'cell':14s} {'signed product':16s} {'write range':24s} {'INL':>8s} {'INL read':>9s} "
          f"{'droop win':>10s} {'50 mV':>9s} {'E/cell fJ':>9s} {'E/prod fJ':>9s}")


def _inl(x: np.ndarray, y: np.ndarray) -> float:
    fit = np.polyval(np.polyfit(x, y, 1), x)
    return float(np.max(np.abs(y - fit)) / (y.max() - y.min()))


def figures(config: HardwareConfig, tpw: float | None = None) -> CellFigures:
    """The figures of `config.kv_cell` at the config's corner and temperature, pulse width
    `tpw` (default config.t_max), droop over config.window tokens of config.token_period."""
    dev = GainCellDevice(config)
    lv = dev.levels
    T = float(config.t_max if tpw is None else tpw)
    k = np.linspace(-1.0, 1.0, N_LEVELS)
    w = np.where(k < 0, lv.mid + k * (lv.mid - lv.lo), lv.mid + k * (lv.hi - lv.mid))
    vs = dev.stored(torch.as_tensor(w))
    vmid = dev.stored(lv.mid)
    qref = float(dev.ref_charge(vmid, T))
    p = (dev.charge(vs, T).numpy() - qref) / FC
    span = float(p.max() - p.min())
    e = dev.read_energy(vs, T).numpy() / FJ
    e_twin = float(dev.ref_read_energy(vmid, T)) / FJ

    # the read alone over the stored range
    lo, hi = float(vs.min()), float(vs.max())
    v = np.linspace(lo, hi, N_LEVELS)
    pr = (dev.charge(torch.as_tensor(v), T).numpy() - qref) / FC

    # droop of the top level over the window, and for a 50 mV drop
    top = vs[-1]
    age = np.arange(0, int(config.window) + 1, max(1, int(config.window) // 64))
    secs = torch.as_tensor(age * float(config.token_period))
    vt = dev.decayed(top, secs)
    # the reference twin decays too (it is written at the mid-level with its column)
    qr_t = dev.ref_charge(dev.decayed(vmid, secs), T)
    pt = (dev.charge(vt, T) - qr_t).numpy() / FC
    p50 = (float(dev.charge(top - 0.05, T)) - qref) / FC
    return CellFigures(
        config.kv_cell, lv.signed_product, (lv.lo, lv.mid, lv.hi), (lo, hi), k, p,
        _inl(w, p), _inl(v, pr), abs(pt[-1] - pt[0]) / span, float(top - vt[-1]),
        abs(p[-1] - p50) / span, e, float(e.mean()),
        float(e.mean()) + (e_twin if lv.has_reference else 0.0), age, pt / pt[0])


def compare(configs: list[HardwareConfig], tpw: float | None = None) -> list[CellFigures]:
    return [figures(c, tpw) for c in configs]


def report(figs: list[CellFigures], config: HardwareConfig, tpw: float | None = None) -> str:
    T = float(config.t_max if tpw is None else tpw)
    lines = [f"K/V cells at {config.corner}, {config.temperature:g} C, pulse {T * 1e9:g} ns; "
             f"droop over {config.window} tokens x {config.token_period * 1e9:g} ns "
             f"({config.window * config.token_period * 1e6:.1f} us); % of each cell's product span",
             HEADER] + [f.row() for f in figs]
    return "\n".join(lines)


def plot(figs: list[CellFigures], path: Path, title: str) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(2, 2, figsize=(11, 8))
    a, b, c, d = ax.flat
    a.plot([-1, 1], [-1, 1], color="0.6", lw=1, ls="--", label="ideal multiply")
    for f in figs:
        top = f.product[-1]
        lab = f"{f.cell} (INL {f.inl:.1%} FS)"
        a.plot(f.k, f.product / top, lw=2, label=lab)
        fit = np.polyval(np.polyfit(f.k, f.product, 1), f.k)
        b.plot(f.k, (f.product - fit) / (f.product.max() - f.product.min()) * 100, lw=2, label=f.cell)
        c.plot(f.age, f.top_decay, lw=2,
               label=f"{f.cell}: {f.droop_window:.2%} of span, {f.droop_window_v * 1e3:.1f} mV")
        d.plot(f.k, f.e_read, lw=2, label=f"{f.cell}: {f.e_cell:.1f} fJ/cell, {f.e_product:.1f} fJ/product")
    a.set(xlabel="signed write level k (write range mapped to [-1, 1])",
          ylabel="product P(k) / P(+1)", title="signed product vs stored value")
    b.set(xlabel="signed write level k", ylabel="deviation from best line (% of span)",
          title="straight-line INL")
    c.set(xlabel="token age", ylabel="top-level product / fresh", title="droop of the top level")
    d.set(xlabel="signed write level k", ylabel="read energy per cell read (fJ)",
          title="read energy")
    for x in ax.flat:
        x.grid(alpha=0.3)
        x.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
