"""RRAM 1T1R cell for crossbar weights, built only from the `rram_1t1r` tables.

The device state is the filament gap [nm]. Program-and-verify aims at a conductance read at
`v_read` and `program_temperature`; what it reaches scatters as the `program_verify` Monte
Carlo table says. The crossbar then reads the cell at the operating `temperature` and
`corner`, so a gap programmed for one conductance can read as another: weights drift with
temperature because the tables say so, not because a fit says so.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import json

import torch

from .table import OutOfRangeError, Table, TableError

FILE = "rram_1t1r.h5"
PV_CORNER = "tt"    # the program_verify table holds the typical corner only
FINE = 64           # gap map points per table gap step: a log-G interpolation error < 1e-6


def tables_path(config) -> Path:
    return config.tables_folder() / FILE


class _Knots:
    """Ascending knots: locate x once (arithmetic when uniform), then interpolate any
    values on the knots piecewise-linearly, constant beyond the ends (float64)."""

    def __init__(self, xs: torch.Tensor):
        self.xs = xs.to(torch.float64)
        n = len(xs)
        self.step = float(self.xs[-1] - self.xs[0]) / (n - 1)
        even = self.xs[0] + self.step * torch.arange(n, dtype=torch.float64)
        self.uniform = bool(torch.allclose(self.xs, even, rtol=0, atol=1e-9 * abs(self.step)))

    def locate(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = len(self.xs)
        if self.uniform:
            f = ((x - self.xs[0]) / self.step).clamp(0, n - 1)
            i = f.floor().long().clamp(max=n - 2)
            return i, f - i
        i = (torch.searchsorted(self.xs, x.contiguous(), right=True) - 1).clamp(0, n - 2)
        x0, x1 = self.xs[i], self.xs[i + 1]
        return i, ((x - x0) / (x1 - x0)).clamp(0, 1)

    @staticmethod
    def lerp(ys: torch.Tensor, where: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        i, w = where
        y0 = ys[i]
        return y0 + w * (ys[i + 1] - y0)

    def __call__(self, x: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
        return self.lerp(ys, self.locate(x))


class RramDevice:
    """Program conductances into gaps and read gaps back as currents, from the tables.

    `config.ideal`: a linear device (read current = target conductance x voltage), no spread.
    `out_of_range` counts clamped queries: targets outside the program_verify levels
    (`target`) and programmed conductances beyond what any gap reads (`g_programmed`);
    the tables' own counts are in `report()`.
    """

    def __init__(self, config):
        self.config = config
        self.ideal = bool(config.ideal)
        self.spread = bool(config.weight_spread) and not self.ideal
        self.policy = config.out_of_range
        self.v_read = float(config.v_read)
        self.out_of_range: Counter[str] = Counter()
        path = tables_path(config)
        axes = {"temperature": "degC", "gini": "nm", "vbl": "V"}
        self.read = Table.load(path, "read", config.corner, axes=axes,
                               quantities={"i_cell": "A"}, policy=self.policy)
        self.pv = Table.load(path, "program_verify", PV_CORNER,
                             axes={"temperature": "degC", "target": "S", "sample": ""},
                             quantities={"g_reached": "S", "pulses": "1", "energy": "J"}, policy=self.policy)
        self.read.require_within("temperature", config.temperature, "temperature")
        self.read.require_within("temperature", config.program_temperature, "program_temperature")
        self._build_maps()
        self._build_spread()
        self.g_usable = self._lowest_usable_level()
        self.g_min = float(config.g_min) or self.g_usable
        self.g_max = float(config.g_max)
        self._check_window()

    # ------------------------------------------------------------------ tables -> maps
    def _g_of_gap(self, temperature: float) -> torch.Tensor:
        i = self.read("i_cell", temperature=temperature, gini=self.gap, vbl=self.v_read)
        return i / self.v_read

    def _build_maps(self) -> None:
        """G(gap) at the verify read (program temperature) and at the operating read."""
        ax = self.read.axis("gini")
        self.gap = torch.linspace(ax.lo, ax.hi, (len(ax.values) - 1) * FINE + 1,
                                  dtype=torch.float64)
        g_prog = self._g_of_gap(float(self.config.program_temperature))
        if not bool((g_prog[1:] < g_prog[:-1]).all()):
            raise TableError(f"{self.read.path}:read: i_cell/vbl at {self.v_read} V is not "
                             "monotonic in the gap: conductances cannot be mapped to gaps")
        self._log_g_prog = g_prog.log()
        self._gap_knots = _Knots(self.gap)
        self._inverse_knots = _Knots(-self._log_g_prog)
        g_op = self._g_of_gap(float(self.config.temperature))
        self._log_g_read = (g_prog if self.ideal else g_op).log()
        self._chord = None               # chord_conductance's grid, made on first use

    def _build_spread(self) -> None:
        """Log-mean bias and log-std of reached/target at each program_verify level."""
        targets = torch.as_tensor(self.pv.axis("target").values, dtype=torch.float64)
        samples = torch.as_tensor(self.pv.axis("sample").values, dtype=torch.float64)
        t_prog = float(self.config.program_temperature)
        grid = dict(temperature=t_prog, target=targets[:, None], sample=samples[None, :])
        ratio = (self.pv("g_reached", **grid) / targets[:, None]).log()
        ok = ~ratio.isnan()
        n = ok.sum(1)
        if bool((n < 2).any()):
            raise TableError(f"{self.pv.path}:program_verify: a target level has fewer than "
                             "two valid samples")
        r = ratio.nan_to_num(0.0)
        self._log_target = targets.log()
        self._target_knots = _Knots(self._log_target)
        self._bias = r.sum(1) / n
        self._pulses = self.pv("pulses", **grid).nan_to_num(0.0)
        self._sigma = (((r - self._bias[:, None]) ** 2 * ok).sum(1) / (n - 1)).sqrt()
        self._energy = self.pv("energy", **grid).nanmean(1)

    def _lowest_usable_level(self) -> float:
        """The lowest program_verify target from which up program-and-verify is in control:
        every sample took at least two pulses, i.e. started below its target and stepped the
        compliance onto it. Below, the first SET pulse already decides where the cell lands
        (up to 3.4x past the target in the shipped table); the simulator still models what
        it reached there (the table's spread), but a designer would not program such a
        level."""
        first_decides = (self._pulses < 2).any(1)
        if bool(first_decides[-1]):
            raise TableError(f"{self.pv.path}:program_verify: even the highest target level "
                             "is reached by the first pulse in some samples: no level is "
                             "under program-and-verify control")
        i = len(first_decides) - 1
        while i > 0 and not bool(first_decides[i - 1]):
            i -= 1
        return float(self._log_target[i].exp())

    def _check_window(self) -> None:
        g_min, g_max = self.g_min, self.g_max
        if not 0 < g_min < g_max:
            raise ValueError(f"g_min={g_min:g} S, g_max={g_max:g} S: need 0 < g_min < g_max "
                             f"(the lowest usable program_verify level is {self.g_usable:.4g} S)")
        if self.policy == "raise":
            self._targets(torch.tensor([g_min, g_max], dtype=torch.float64))

    # ------------------------------------------------------------------ public
    @property
    def g_range(self) -> tuple[float, float]:
        """Conductances [S] that some gap reads at the verify read (smallest, largest)."""
        return float(self._log_g_prog[-1].exp()), float(self._log_g_prog[0].exp())

    def _targets(self, g: torch.Tensor) -> torch.Tensor:
        lo, hi = self._log_target[0].exp().item(), self._log_target[-1].exp().item()
        outside = (g < lo * (1 - 1e-9)) | (g > hi * (1 + 1e-9))
        if bool(outside.any()):
            bad = g[outside].flatten()[0].item()
            if self.policy == "raise":
                raise OutOfRangeError(
                    f"{self.pv.path}:program_verify: target conductance {bad:.4g} S is outside "
                    f"the characterized levels [{lo:.4g}, {hi:.4g}] S (g_min/g_max)")
            self.out_of_range["target"] += int(outside.sum())
        return g.clamp(lo, hi)

    def gap_for(self, g: torch.Tensor) -> torch.Tensor:
        """Gap [nm] whose verify read gives conductance g [S], clamped to the table's gaps."""
        log_g = torch.as_tensor(g, dtype=torch.float64).log()
        lo, hi = self._log_g_prog[-1], self._log_g_prog[0]
        outside = (log_g < lo) | (log_g > hi)
        if bool(outside.any()):
            self.out_of_range["g_programmed"] += int(outside.sum())
        return self._inverse_knots(-log_g, self.gap)

    def program(self, g_target: torch.Tensor, generator: torch.Generator | None = None
                ) -> torch.Tensor:
        """Program-and-verify each cell towards g_target [S]; returns the gap [nm] reached.

        Reached = target x exp(bias + sigma z), z ~ N(0, 1), with bias and sigma of the
        program_verify samples interpolated in log target. Exact without spread."""
        g = torch.as_tensor(g_target, dtype=torch.float64)
        below = int((g < self.g_usable * (1 - 1e-9)).sum())
        if below:
            self.out_of_range["below_usable_level"] += below
        if self.spread:
            g = self._targets(g)
            at = self._target_knots.locate(g.log())
            z = torch.randn(g.shape, generator=generator, dtype=torch.float64)
            g = g * (_Knots.lerp(self._bias, at) + _Knots.lerp(self._sigma, at) * z).exp()
        return self.gap_for(g)

    def read_conductance(self, gap: torch.Tensor) -> torch.Tensor:
        """I_cell(gap, v_read) / v_read [S] at the operating temperature and corner."""
        gap = torch.as_tensor(gap, dtype=torch.float64)
        return self._gap_knots(gap, self._log_g_read).exp()

    def read_current(self, gap: torch.Tensor, v) -> torch.Tensor:
        """Cell current [A] at gap [nm] and bit-line voltage v [V] (the table's I-V)."""
        if self.ideal:
            gap = torch.as_tensor(gap, dtype=torch.float64)
            return self._gap_knots(gap, self._log_g_prog).exp() * torch.as_tensor(v, dtype=torch.float64)
        return self.read("i_cell", temperature=float(self.config.temperature), gini=gap, vbl=v)

    def chord_conductance(self, g: torch.Tensor, v) -> torch.Tensor:
        """Conductance I(v) / v [S] of cells that read g [S] at v_read, at cell voltages v
        [V] (the table's I-V: g x I(gap, v) v_read / (I(gap, v_read) v), so v = v_read
        gives g back exactly). The sinh-like I-V conducts less below v_read (~0.3% per 10 mV
        in the shipped table). v is held within [v_read / 4, table top]: the table's
        interpolation near 0 V is not an I-V (I/v drops to ~0 within 3 mV of 0 V)."""
        g = torch.as_tensor(g, dtype=torch.float64)
        if self.ideal:
            return g
        if self._chord is None:
            self._build_chord()
        volts, ratio = self._chord
        v = torch.as_tensor(v, dtype=torch.float64).clamp(float(volts.xs[0]), float(volts.xs[-1]))
        k, wk = self._read_knots.locate(-g.log())
        m, wm = volts.locate(v)
        n = ratio.shape[1]
        flat = ratio.reshape(-1)
        base = k * n + m
        r0 = flat[base] + wm * (flat[base + 1] - flat[base])
        r1 = flat[base + n] + wm * (flat[base + n + 1] - flat[base + n])
        return g * (r0 + wk * (r1 - r0)) * (self.v_read / v)

    def _build_chord(self) -> None:
        """I(gap, v) / I(gap, v_read) on the fine gap grid x the table's voltages from
        v_read / 4 up, interpolated bilinearly by `chord_conductance` (one table call)."""
        ax = torch.as_tensor(self.read.axis("vbl").values, dtype=torch.float64)
        volts = ax[ax >= self.v_read / 4 - 1e-12]
        t = float(self.config.temperature)
        i = self.read("i_cell", temperature=t, gini=self.gap[:, None], vbl=volts[None, :])
        i_r = self.read("i_cell", temperature=t, gini=self.gap,
                        vbl=torch.full_like(self.gap, self.v_read))
        ratio = i / i_r[:, None]                      # linear in v between knots, as the table
        if not bool((self._log_g_read[1:] < self._log_g_read[:-1]).all()):
            raise TableError(f"{self.read.path}:read: i_cell/vbl at {self.v_read} V is not "
                             "monotonic in the gap at the operating temperature")
        self._read_knots = _Knots(-self._log_g_read)
        self._chord = (_Knots(volts), ratio.contiguous())

    def program_energy(self, g_target: torch.Tensor) -> torch.Tensor:
        """Mean program-and-verify energy [J] per cell (one-time), log-log in target."""
        g = torch.as_tensor(g_target, dtype=torch.float64)
        lo, hi = self._log_target[0].exp().item(), self._log_target[-1].exp().item()
        return self._target_knots(g.clamp(lo, hi).log(), self._energy.log()).exp()

    def report(self) -> str:
        """Clamped-query counts of the device and of its tables, or ''."""
        why = {"below_usable_level": f" (targets below {self.g_usable:.4g} S, where the first "
                                     f"SET pulse decides the level)"}
        parts = [f"rram.{k}: {v}{why.get(k, '')}" for k, v in self.out_of_range.items() if v]
        parts += [r for r in (self.read.report(), self.pv.report()) if r]
        return ", ".join(parts)

    def __repr__(self) -> str:
        mode = "ideal" if self.ideal else ("spread" if self.spread else "no spread")
        return (f"RramDevice({self.read.path.name} @ {self.read.corner}, read "
                f"{self.config.temperature} C / programmed {self.config.program_temperature} C, "
                f"{self.v_read} V, {mode})")
