"""nn.Linear as RRAM crossbar tiles: programmed once, read every token.

Weights become differential pairs (G+, G-) in [g_min, g_max], programmed with the
program_verify spread and read at the operating point (`RramDevice`); the read-back weights
are fixed at conversion, so a forward is batched matmuls per row tile plus elementwise
quantizers. Each row tile's partial sum per column goes through that column's ADC; tiles,
phases and bit planes are added digitally. A tile is tile_rows x tile_cols cells, and a
weight takes two columns, so one tile holds tile_cols // 2 outputs.

Reads are always at +v_read (the read table's I-V spans -0.1..0.3 V and is asymmetric), so
signed inputs need `signed_inputs`: "two_phase" (positive parts, then negative parts, each
converted, subtracted digitally) or "offset" (inputs shifted by the range to unsigned, one
read, the offset x column sums subtracted digitally).

Wires (`wire_row`, `wire_col`, `clamp_resistance`): each tile's nodal system is solved once
at conversion (`parasitics.py`) and `weight_cond` holds its effective matrix, exact for
linear cells with idle rows at 0 V, the cells linearised at their voltage with every row
on; the forward is unchanged. The read energy counts what each row driver delivers with
its tile's rows all on (v_read x the effective matrix's row sum: cells, wires and clamp),
exact when every row is on; with fewer rows on, each conducts a little more (the column
wires carry less): up to A_ii / sum_m A_im for a row alone (`parasitics.py`).
"""

from __future__ import annotations

import math
import zlib
from contextlib import contextmanager

import torch
from torch import nn

from .ledger import Ledger
from .rram import RramDevice

SUBSET = 1 << 16     # elements per range-calibration quantile
CHUNK = 1 << 22      # cells programmed at once
GROUP = 1 << 23      # partial sums (reads x tokens x outputs) per matmul


def layer_seed(config, name: str) -> int:
    """config.seed plus a stable hash of the layer name: layers differ, reruns repeat."""
    return (int(config.seed) + zlib.crc32(name.encode())) % (1 << 63)


def _levels(bits: int) -> int:
    return (1 << (bits - 1)) - 1


def _codes(x: torch.Tensor, step: float, q: int, fresh: bool = False) -> torch.Tensor:
    """round(x / step) clamped to [-q, q]; straight-through gradients when x needs them.
    `fresh`: x is a temporary and may be overwritten."""
    if x.requires_grad:
        return torch.fake_quantize_per_tensor_affine(x, step, 0, -q, q) / step
    y = x.mul_(1 / step) if fresh else x.mul(1 / step)
    return y.round_().clamp_(-q, q)


class CrossbarLinear(nn.Module):
    """A Linear layer run on RRAM crossbar tiles (see the module docstring).

    Ranges are set by `ranges_from_data`: `input_range` in input units, `adc_range` in
    units of drive x weight_cond, i.e. of charge v_read x t_read x (g_max - g_min). A layer
    used before any calibration takes both from its first batch (the adc_range_percentile
    of |x| and of |tile partial sums|) and keeps them. Energy: `program_energy` [J] is the
    one-time program-and-verify cost; reads, DACs and ADCs go to the ledger per forward.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool, config,
                 ledger: Ledger | None = None, name: str = ""):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.config, self.ledger, self.name = config, ledger, name
        self.ideal = bool(config.ideal)
        self.encoding = config.input_encoding
        self.signed = config.signed_inputs
        if config.tile_rows < 1 or config.tile_cols < 2:
            raise ValueError(f"tiles {config.tile_rows}x{config.tile_cols}: need >= 1 row "
                             "and >= 2 columns (one differential pair)")
        self.rows = int(config.tile_rows)
        self.row_tiles = math.ceil(in_features / self.rows)
        self.col_tiles = math.ceil(out_features / (config.tile_cols // 2))
        self.qx, self.qa = _levels(config.input_bits), _levels(config.adc_bits)
        self.register_buffer("weight_cond", torch.zeros(in_features, out_features))
        self.register_buffer("col_scale", torch.ones(out_features))
        self.register_buffer("col_sum", torch.zeros(out_features))
        self.register_buffer("row_current", torch.zeros(in_features))
        self.register_buffer("input_range", torch.zeros(()))
        self.register_buffer("adc_range", torch.zeros(()))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        self.observing = False
        self.program_energy = 0.0
        self.gaps: tuple[torch.Tensor, torch.Tensor] | None = None
        self._subset = torch.Generator().manual_seed(layer_seed(config, name + "/ranges"))

    # ------------------------------------------------------------------ conversion
    @classmethod
    def from_linear(cls, linear: nn.Linear, config, device: RramDevice,
                    ledger: Ledger | None = None, name: str = "",
                    keep_gaps: bool = False) -> "CrossbarLinear":
        """Quantize, program and read back `linear`'s weights once. `keep_gaps`: keep the
        programmed gaps [nm] of the G+ and G- cells ([in, out] each) in `gaps` (the array
        check hands them to SPICE)."""
        m = cls(linear.in_features, linear.out_features, linear.bias is not None,
                config, ledger, name)
        m._program(linear.weight.detach(), device, keep_gaps)
        if linear.bias is not None:
            m.bias.data.copy_(linear.bias.detach())
            m.bias.requires_grad_(linear.bias.requires_grad)
        return m.to(linear.weight.device)

    @torch.no_grad()
    def _program(self, weight: torch.Tensor, device: RramDevice, keep_gaps: bool = False) -> None:
        """With wire or clamp resistance (and not ideal), each tile's conductances become
        its effective matrix (`parasitics.effective_pairs`), linearised at each cell's
        voltage with every row on (`RramDevice.chord_conductance`): the forward stays one
        matmul."""
        cfg = self.config
        half = cfg.tile_cols // 2
        wires = (cfg.wire_row, cfg.wire_col, cfg.clamp_resistance)
        wired = not self.ideal and any(r > 0 for r in wires)
        gaps = ([], [])
        w = weight.to("cpu", torch.float64)
        qw = _levels(cfg.weight_bits)
        scale = w.abs().amax(1) / qw
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        g_min, dg = device.g_min, device.g_max - device.g_min
        gen = torch.Generator().manual_seed(layer_seed(cfg, self.name))
        step = max(1, CHUNK // max(1, self.in_features))
        if wired:                                  # whole tiles per chunk
            step = max(half, step // half * half)
        energy = 0.0
        for lo in range(0, self.out_features, step):
            u = w[lo:lo + step] / scale[lo:lo + step, None]
            if not self.ideal:
                u = u.round()
            u = u / qw
            reads = []
            for k, part in enumerate((u.clamp(min=0), (-u).clamp(min=0))):
                g = g_min + dg * part
                gap = device.program(g, gen)
                reads.append(device.read_conductance(gap))
                energy += float(device.program_energy(g).sum())
                if keep_gaps:
                    gaps[k].append(gap.T)
            if wired:
                from .parasitics import effective_pairs
                v_read = float(cfg.v_read)
                m_pos, m_neg = effective_pairs(
                    reads[0].T, reads[1].T, self.rows, half, *wires,
                    chord=lambda g, u: device.chord_conductance(g, u * v_read))
                w_cond = ((m_pos - m_neg) / dg).T
                # driver i's current with its tile's rows all on: sum_m A[i, m] v_read for
                # the driver admittance A, = sum_j M[i, j] v_read (A is symmetric, and
                # what the drivers deliver reaches the readouts): cells, wires and clamps
                self.row_current += ((m_pos + m_neg) * v_read).sum(1).float()
            else:
                w_cond = (reads[0] - reads[1]) / dg
                self.row_current += ((reads[0] + reads[1]) * cfg.v_read).sum(0).float()
            self.weight_cond[:, lo:lo + step] = w_cond.T.float()
            self.col_sum[lo:lo + step] = w_cond.sum(1).float()
        self.col_scale.copy_((scale * qw).float())
        self.program_energy = energy
        if keep_gaps:
            self.gaps = (torch.cat(gaps[0], 1), torch.cat(gaps[1], 1))

    @property
    def effective_weight(self) -> torch.Tensor:
        """The weight [out, in] the crossbar computes with, before input and ADC quantization."""
        return (self.weight_cond * self.col_scale).T

    # ------------------------------------------------------------------ ranges
    def _quantile(self, x: torch.Tensor) -> float:
        flat = x.detach().reshape(-1)
        if self.config.adc_range_percentile >= 100:  # the true maximum, never a sample's
            return float(flat.abs().max())
        if flat.numel() > SUBSET:
            flat = flat[torch.randint(flat.numel(), (SUBSET,), generator=self._subset)]
        return float(torch.quantile(flat.abs().float(), self.config.adc_range_percentile / 100))

    def observe(self, on: bool = True) -> None:
        """Start recording ranges afresh (on) or freeze them (off)."""
        if on:
            self.input_range.zero_()
            self.adc_range.zero_()
        self.observing = bool(on)

    def calibration_state(self) -> dict[str, torch.Tensor]:
        return {"input_range": self.input_range.clone(), "adc_range": self.adc_range.clone()}

    def load_calibration_state(self, state: dict[str, torch.Tensor]) -> None:
        for k in ("input_range", "adc_range"):
            getattr(self, k).copy_(state[k])
        self.observing = False

    def _range(self, buf: torch.Tensor, sample) -> float:
        """Running max while observing; else the frozen value, or the first batch's."""
        if self.observing or buf.item() == 0:
            buf.fill_(max(buf.item(), sample()))
        return max(buf.item(), 1e-30)

    # ------------------------------------------------------------------ forward
    def _reads(self, x: torch.Tensor, r: float) -> list[tuple[float, object]]:
        """One (digital weight, row drive) per read. A drive [N, in] is each row's pulse
        duration in units of t_read, made on demand; weight x drive @ weight_cond sums to
        the output in input units (less r x col_sum with the offset)."""
        codes = _codes(x, r / self.qx, self.qx)
        offset = self.signed == "offset"
        if self.encoding == "pulse_width":
            if offset:
                return [(2 * r, lambda: (codes + self.qx) / (2 * self.qx))]
            return [(r, lambda: codes.clamp(min=0) / self.qx),
                    (-r, lambda: (-codes).clamp(min=0) / self.qx)]
        step = r / self.qx
        if offset:
            phases = [(1.0, (codes.detach() + self.qx).to(torch.int64))]
        else:
            phases = [(1.0, codes.detach().clamp(min=0).to(torch.int64)),
                      (-1.0, (-codes.detach()).clamp(min=0).to(torch.int64))]
        nbits = self.config.input_bits - (0 if offset else 1)
        return [(sign * step * (1 << b), lambda c=c, b=b: ((c >> b) & 1).to(x.dtype))
                for sign, c in phases for b in range(nbits)]

    def _groups(self, reads, n: int):
        """Reads batched into one matmul each, bounded in memory."""
        k = max(1, min(len(reads), GROUP // max(1, n * self.out_features)))
        for i in range(0, len(reads), k):
            part = reads[i:i + k]
            yield [w for w, _ in part], torch.cat([d() for _, d in part])

    def _partials(self, drive: torch.Tensor):
        for t in range(self.row_tiles):
            s = slice(t * self.rows, min((t + 1) * self.rows, self.in_features))
            yield drive[:, s] @ self.weight_cond[s]

    def _sample_partials(self, reads, n: int) -> float:
        if self.config.adc_range_percentile >= 100:
            return max(float(p.abs().max()) for _, d in self._groups(reads, n)
                       for p in self._partials(d))
        per = SUBSET // (math.ceil(len(reads) * n * self.out_features / GROUP) * self.row_tiles) + 1
        picks = [p.reshape(-1)[torch.randint(p.numel(), (per,), generator=self._subset)]
                 for _, d in self._groups(reads, n) for p in self._partials(d)]
        return self._quantile(torch.cat(picks))

    def _analog(self, reads, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Output [N, out] in input units and the total drive per row [in] (t_read units)."""
        fs = self._range(self.adc_range, lambda: self._sample_partials(reads, n))
        step = fs / self.qa
        out = torch.zeros(n, self.out_features, dtype=self.weight_cond.dtype,
                          device=self.weight_cond.device)
        time = torch.zeros(self.in_features, dtype=out.dtype, device=out.device)
        for weights, drive in self._groups(reads, n):
            time += drive.detach().sum(0)
            acc = None
            for p in self._partials(drive):
                c = _codes(p, step, self.qa, fresh=True)
                acc = c if acc is None else acc.add_(c)
            acc = acc.view(len(weights), n, -1)
            for j, w in enumerate(weights):
                out.add_(acc[j], alpha=w * step)
        return out, time

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape, dtype = x.shape, x.dtype
        x = x.reshape(-1, self.in_features).to(self.weight_cond.dtype)
        n = x.shape[0]
        token_scale = None
        if self.config.input_scaling == "per_token":
            token_scale = x.detach().abs().amax(-1, keepdim=True).clamp_min(1e-30)
            x = x / token_scale
            r = 1.0
        else:
            r = self._range(self.input_range, lambda: self._quantile(x))
        reads = self._reads(x, r)
        if self.ideal:
            out = x @ self.weight_cond
            time = sum(d().sum(0) for _, d in reads) if self.ledger is not None else None
        else:
            out, time = self._analog(reads, n)
            if self.signed == "offset":
                out = out - r * self.col_sum
        if token_scale is not None:
            out = out * token_scale
        out = out * self.col_scale
        if self.bias is not None:
            out = out + self.bias
        if self.ledger is not None:
            self._account(n, len(reads), time)
        return out.to(dtype).reshape(*shape[:-1], self.out_features)

    def _account(self, n: int, reads: int, time: torch.Tensor) -> None:
        cfg = self.config
        e_read = cfg.v_read * cfg.t_read * float(time.double() @ self.row_current.double())
        row_reads = n * reads * self.in_features * self.col_tiles
        conversions = n * reads * self.out_features * self.row_tiles
        self.ledger.add("rram_read", e_read, n * reads * cfg.t_read)
        self.ledger.add("rram_dac", cfg.dac_energy_per_read * row_reads)
        self.ledger.add("rram_adc", cfg.adc_fom * 2 ** cfg.adc_bits * conversions,
                        n * reads * cfg.adc_time)

    def extra_repr(self) -> str:
        cfg = self.config
        head = (f"in={self.in_features}, out={self.out_features}, tiles={self.row_tiles}x"
                f"{self.col_tiles} of {cfg.tile_rows}x{cfg.tile_cols}")
        if self.ideal:
            return head + ", ideal"
        return (head + f", weight_bits={cfg.weight_bits}, input_bits={cfg.input_bits}, "
                f"adc_bits={cfg.adc_bits}, {self.encoding}/{self.signed}")


@contextmanager
def ranges_from_data(model: nn.Module):
    """Inside the block, every CrossbarLinear of `model` forgets its ranges and records the
    running max of per-batch percentiles (input |x|, tile |partial sums|); on exit they
    freeze. Pause the ledger around calibration batches if they should not count."""
    layers = [m for m in model.modules() if isinstance(m, CrossbarLinear)]
    for m in layers:
        m.observe(True)
    try:
        yield layers
    finally:
        for m in layers:
            m.observe(False)
