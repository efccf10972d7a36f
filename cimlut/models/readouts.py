"""Attention readouts: what turns the Q.K column charges S of a gain-cell array into the
pulse widths that drive its V arrays, and the tile outputs into the attention output.

One class per readout, registered by name (`HardwareConfig.attn_readout` holds the name;
`get_readout` resolves it and lists the known ones when it is wrong):

- `softmax` (X-Former / Topkima-Former style; works on pretrained models): a signed column
  ADC per key (`score_bits`, full scale = the largest |S| seen in range observation), the
  digital scale 1/sqrt(D) and a softmax over the window; each row of probabilities is
  divided by its maximum (= exp(s - max s)), quantized to `prob_bits` pulse widths in
  [0, t_max] that read the V arrays; one output ADC per sub-tile and column
  (`softmax_out_bits`); the tile codes are summed and divided by the row's sum of pulse
  codes digitally (the weights are then exact convex combinations of the codes).
- `hardsigmoid` (Leroux et al. 2024/25, arXiv 2409.19315): the charge-to-pulse transfer
  phi(S) from its table, unnormalised, no ADC; output codes from the tile readout
  (`out_levels`).
- `hardsigmoid_norm`: as `hardsigmoid`, plus one column of constant cells (written at the
  top level, leaking like the rest) in every V array: its charge is sum_j phi(S_ij) in
  cell units; each output row is divided by it digitally (one division per query and head).

Energies (ledger kinds, sources in `ledger.KINDS` and the config): ADCs by the Walden figure
of merit `adc_fom` x 2^bits per conversion; probability pulses at `dac_energy_per_read`
each; digital exp/compare/add/divide from `exp_energy`, `digital_op_energy`, `mult_energy`,
`div_energy`; the norm column's reads from the gain-cell read table and its conversions
from the charge-to-pulse table.
"""

from __future__ import annotations

import math
import weakref

import torch

from .gaincell import FJ, NS

READOUTS: dict[str, type["Readout"]] = {}


def register(cls: type["Readout"]) -> type["Readout"]:
    """Add a readout class under its `name`; a class without one, or a second class of the
    same name, is refused here rather than at run time."""
    name = getattr(cls, "name", "")
    if not name:
        raise TypeError(f"readout {cls.__name__} has no name")
    if name in READOUTS and READOUTS[name] is not cls:
        raise TypeError(f"readout {name!r} is registered twice ({READOUTS[name].__name__}, "
                        f"{cls.__name__})")
    READOUTS[name] = cls
    return cls


def get_readout(name: str) -> type["Readout"]:
    try:
        return READOUTS[name]
    except KeyError:
        raise ValueError(f"unknown attention readout {name!r}; known: "
                         f"{', '.join(sorted(READOUTS))}") from None


def _signed_codes(x: torch.Tensor, levels: int) -> torch.Tensor:
    """x (full scale 1) as the codes of a signed `levels`-level ADC, in place."""
    half = levels // 2
    return x.mul_(half).round_().clamp_(-half, levels - half - 1)


class Readout:
    """What a readout adds to GainCellAttention (see the module docstring). `extra_columns`:
    columns of constant cells appended to every V array."""
    name = ""
    extra_columns = 0
    uses_c2p = True

    def __init__(self, config):
        self.config = config

    def quantizes(self, ideal: bool) -> bool:
        """Whether the output conversion quantizes: converters are part of the readout,
        devices are not, so `ideal` removes them only where the readout has none of its own."""
        return not ideal

    def out_levels(self) -> int:
        return int(self.config.out_levels)


@register
class HardSigmoid(Readout):
    name = "hardsigmoid"


@register
class HardSigmoidNorm(Readout):
    name = "hardsigmoid_norm"
    extra_columns = 1


@register
class Softmax(Readout):
    name = "softmax"
    uses_c2p = False

    def quantizes(self, ideal: bool) -> bool:
        return True

    def out_levels(self) -> int:
        return 1 << int(self.config.softmax_out_bits)

    @property
    def prob_levels(self) -> int:
        return 1 << int(self.config.prob_bits)

    def weights(self, S: torch.Tensor, mask: torch.Tensor, s_fs: torch.Tensor,
                logit_per_fc: torch.Tensor, quantize: bool = True):
        """S (..., ns) column charges [fC] -> (pulse codes in 0..Lp-1 (float), their row
        sums); `s_fs` and `logit_per_fc` broadcast against S (per head). Rows with no key
        read give all-zero codes and a zero sum. Works in place on S."""
        cfg = self.config
        if quantize:
            levels = 1 << int(cfg.score_bits)
            half = levels // 2
            _signed_codes(S.div_(s_fs), levels)
            S.mul_(s_fs * logit_per_fc / half)
        else:
            S.mul_(logit_per_fc)
        S.masked_fill_(mask == 0, -math.inf)
        m = S.amax(-1, keepdim=True)
        S.sub_(m.nan_to_num(neginf=0.0)).exp_()            # a row with no key stays 0
        Lp = self.prob_levels
        if quantize:
            S.mul_(Lp - 1).round_()
        else:
            S.mul_(Lp - 1)
        return S, S.sum(-1)


# ---------------------------------------------------------------- pulse-width lookups
_SOFT_TABLES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def pulse_tables(arrays, levels: int):
    """The V-side pulse factors u_r(t) (levels, R) and the read-path floor energy [fJ]
    (levels,) at the `levels` pulse widths t = l / (levels - 1) x t_max of a pulse-width DAC,
    interpolated on the arrays' pulse-width grid (linear to ~2e-6 there); with R = 1 also
    both packed in one float64 per level (one gather per lookup), else None."""
    per = _SOFT_TABLES.setdefault(arrays, {})
    if levels in per:
        return per[levels]
    dev, cfg = arrays.device, arrays.config
    tg = arrays._t_grid()
    t = torch.arange(levels, dtype=torch.float64) / (levels - 1) * cfg.t_max
    if float(t[-1]) > float(tg[-1]) * (1 + 1e-9):
        raise ValueError(f"t_max = {cfg.t_max} s is beyond the V pulse-width grid "
                         f"({float(tg[-1]) / NS:.3f} ns)")
    i0 = (torch.searchsorted(tg, t, right=True) - 1).clamp(0, len(tg) - 2)
    w = ((t - tg[i0]) / (tg[i0 + 1] - tg[i0])).clamp(0, 1)
    u = ((1 - w) * arrays.V.u[:, i0] + w * arrays.V.u[:, i0 + 1]).T.float().contiguous()
    fl = dev.read_energy(dev.read.axes["vstore"].lo, tg) / FJ
    floor = ((1 - w) * fl[i0] + w * fl[i0 + 1]).float().contiguous()
    packed = (torch.stack([u[:, 0], floor], 1).contiguous().view(torch.float64).view(-1)
              if u.shape[1] == 1 else None)
    per[levels] = (u, floor, packed)
    return per[levels]
