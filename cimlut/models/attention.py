"""Gain-cell attention (Leroux et al., arXiv 2409.19315): one layer's softmax(QK^T/sqrt d)V
replaced by charge sums in gain-cell arrays and a readout (`readouts.py`: softmax with ADCs,
Leroux's charge-to-pulse HardSigmoid, or its normalised variant), with every device
behaviour read from the tables; plus the digital references it is judged against.

Data path per head: q -> pulse widths (q_levels, two phases if signed); k, v -> write
levels (kv_levels over the K/V cell's write range; one scale per channel with
kv_per_channel) stored in gain cells that leak with token age;
S_ij = sum_d Q(k cell, q pulse) - Q(reference cell, q pulse) (no reference for a push-pull
cell: its charge is signed about its mid-level); pulses p_ij = readout(S) (hardsigmoid:
charge-to-pulse(s_gain S + s_bias); softmax: ADC, digital softmax, pulse-width DAC);
out = sum over 64-token tiles of quantized (sum_j Q(v cell, p_ij) - Q(reference, p_ij)),
divided digitally by the row's weight sum (softmax) or norm-column charge (hardsigmoid_norm).
K and V are encoded once per key and kept with the KV cache (`_kv_operands`).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import HardwareConfig
from .gaincell import ARRAY_KEYS, FC, FJ, GainCellArrays, geometry, get_arrays
from .ledger import Ledger
from .readouts import get_readout, pulse_tables

CHUNK = 1 << 20   # score entries (all heads) per block of queries: blocks stay in cache


# ------------------------------------------------------------------ digital references
def attention_mask(q_pos, k_pos, causal: bool = True, window: int | None = None) -> torch.Tensor:
    """(Tq, Tk) keys each query sees: causal within the window, or all keys."""
    d = q_pos[:, None] - k_pos[None, :]
    if not causal:
        return torch.ones_like(d, dtype=torch.bool)
    return (d >= 0) & (d < window) if window else d >= 0


def _expand(x: torch.Tensor, H: int) -> torch.Tensor:
    return x.repeat_interleave(H // x.shape[1], dim=1)


def softmax_attention(q, k, v, q_pos, k_pos, *, causal=True, window=None) -> torch.Tensor:
    """The digital attention being replaced: softmax(q k^T / sqrt D) v over the same keys."""
    m = attention_mask(q_pos, k_pos, causal, window)
    H = q.shape[1]
    return F.scaled_dot_product_attention(q, _expand(k, H), _expand(v, H), attn_mask=m)


def hardsigmoid_attention(q, k, v, q_pos, k_pos, *, s_sat=1.0, causal=True, window=None,
                          bias=0.0):
    """Leroux et al.'s linear model, digital: out_i = sum_j clamp(q_i.k_j / s_sat + bias, 0, 1)
    v_j over the keys query i sees (s_sat and bias a number or one per head)."""
    H = q.shape[1]
    s = q @ _expand(k, H).transpose(-1, -2)
    per = lambda x: (lambda t: t.reshape(-1, 1, 1) if t.ndim else t)(torch.as_tensor(x, dtype=s.dtype))
    a = (s / per(s_sat) + per(bias)).clamp(0, 1) * attention_mask(q_pos, k_pos, causal, window)
    return a @ _expand(v, H)


def _quantize(x: torch.Tensor, levels: int) -> torch.Tensor:
    """`levels` codes over [-1, 1) in steps of 2/levels, 0 included (a signed ADC), as codes."""
    half = levels // 2
    return x.mul(half).round_().clamp_(-half, levels - half - 1)


# ------------------------------------------------------------------ the module
class GainCellAttention(nn.Module):
    """softmax(QK^T/sqrt D)V of one layer on gain-cell arrays.

    forward(q (B,H,Tq,D), k, v (B,Hkv,Tk,D), q_pos (Tq,), k_pos (Tk,)) -> (B,H,Tq,D) is a
    pure function of its inputs and the scaler buffers, so decoding with a KV cache gives
    the full-sequence result (unless observing). Scalers (per head): x_hat = x_scale x +
    x_bias maps q to pulse widths in [-1, 1] x t_max (or [0, 1] if not q_signed), k and v
    to write levels in [0, 1] of the cell's write range; s_gain is the charge into the
    charge-to-pulse per unit column charge (a current-mirror ratio); out_fs the per-tile
    full-scale charge; out = out_scale x (sum of tile codes) + out_bias. Defaults, from
    range observation (`observe`; else the first batch): q to the full pulse range, k and v
    symmetric about the cell's mid-level over the write range, s_gain so that the largest score just
    saturates the converter, out_fs the adc_range_percentile of |tile output| (the largest
    would leave typical outputs below half a step: the products are exponential in k), out_scale/out_bias matching
    the softmax output's per-head mean/std. Inference only (no gradients). While
    `recording`, `stats` holds per-head means/stds for calibration (empty it to restart).
    """

    CALIBRATED = ("q_scale", "q_bias", "k_scale", "k_bias", "v_scale", "v_bias",
                  "out_scale", "out_bias", "s_gain", "out_fs", "s_fs", "n_fs", "k_chan", "v_chan",
                  "s_bias", "s_temp")

    def __init__(self, n_heads: int, n_kv_heads: int, head_dim: int, config: HardwareConfig,
                 arrays: GainCellArrays | None = None, ledger: Ledger | None = None,
                 name: str = "", causal: bool = True):
        super().__init__()
        if n_kv_heads <= 0 or n_heads % n_kv_heads:
            raise ValueError(f"{name or type(self).__name__}: n_heads={n_heads} is not a multiple "
                             f"of n_kv_heads={n_kv_heads}")
        self.H, self.Hkv, self.D, self.g = n_heads, n_kv_heads, head_dim, n_heads // n_kv_heads
        self.config, self.ledger, self.name, self.causal = config, ledger, name, causal
        self.readout = get_readout(config.attn_readout)(config)
        self.arrays = arrays if arrays is not None else get_arrays(config)
        differ = [k for k in ARRAY_KEYS if getattr(self.arrays.config, k) != getattr(config, k)]
        if differ:
            raise ValueError(f"{name or type(self).__name__}: the GainCellArrays were built for "
                             f"another {', '.join(differ)}")
        off = self.arrays.offset
        for nm, n, val in (("q_scale", n_heads, 1.0), ("q_bias", n_heads, 0.0),
                           ("k_scale", n_kv_heads, 1.0), ("k_bias", n_kv_heads, off),
                           ("v_scale", n_kv_heads, 1.0), ("v_bias", n_kv_heads, off),
                           ("out_scale", n_heads, 1.0), ("out_bias", n_heads, 0.0),
                           ("s_gain", n_heads, 1.0), ("out_fs", n_heads, 1.0),
                           ("s_fs", n_heads, 1.0), ("n_fs", n_heads, 1.0),
                           ("s_bias", n_heads, 0.0), ("s_temp", n_heads, 1.0)):
            self.register_buffer(nm, torch.full((n,), val))
        for nm, n in (("k_chan", n_kv_heads), ("v_chan", n_kv_heads)):   # per-channel scales
            self.register_buffer(nm, torch.ones(n, head_dim))
        self.per_channel = config.kv_per_channel and self.readout.name != "hardsigmoid"
        for nm, n in (("q_range", n_heads), ("k_range", n_kv_heads), ("v_range", n_kv_heads),
                      ("s_range", n_heads), ("o_range", n_heads), ("n_range", n_heads)):
            self.register_buffer(nm, torch.zeros(n), persistent=False)   # running maxima
        for nm, n in (("qc_range", n_heads), ("kc_range", n_kv_heads), ("vc_range", n_kv_heads)):
            self.register_buffer(nm, torch.zeros(n, head_dim), persistent=False)
        self.register_buffer("initialized", torch.tensor(False))
        self.observing = self.recording = False
        self._kvc = None
        self._acc = None
        self.stats: dict[str, torch.Tensor] = {}

    # -------------------------------------------------------------- checks and scalers
    def _check(self, q, k, v, q_pos, k_pos):
        who = self.name or "GainCellAttention"
        if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
            raise ValueError(f"{who}: q, k, v must be (B, heads, T, D); got {tuple(q.shape)}, "
                             f"{tuple(k.shape)}, {tuple(v.shape)}")
        B, H, Tq, D = q.shape
        if (H, D) != (self.H, self.D):
            raise ValueError(f"{who}: q is {tuple(q.shape)}, expected (B, {self.H}, Tq, {self.D})")
        want = (B, self.Hkv, k.shape[2], self.D)
        if tuple(k.shape) != want or tuple(v.shape) != want:
            raise ValueError(f"{who}: k {tuple(k.shape)} and v {tuple(v.shape)} must both be "
                             f"(B={B}, {self.Hkv}, Tk, {self.D})")
        if q_pos.shape != (Tq,) or k_pos.shape != (k.shape[2],):
            raise ValueError(f"{who}: q_pos {tuple(q_pos.shape)} / k_pos {tuple(k_pos.shape)} "
                             f"must be ({Tq},) / ({k.shape[2]},) token indices")
        if q_pos.dtype.is_floating_point or k_pos.dtype.is_floating_point:
            raise ValueError(f"{who}: positions must be integer token indices")

    @staticmethod
    def _affine(t, s, b):
        return t.float() * s.view(1, -1, 1, 1) + b.view(1, -1, 1, 1)

    def _chan(self, c: torch.Tensor, heads: int) -> torch.Tensor:
        """Per-channel scales (Hkv, D) as (1, heads, 1, D)."""
        return c.repeat_interleave(heads // self.Hkv, 0).view(1, heads, 1, self.D)

    def _normalized_q(self, q):
        """q_hat in [-1, 1] (or [0, 1]) of t_max (q divided by the K channel scales)."""
        lo = -1.0 if self.config.q_signed else 0.0
        if self.per_channel:
            q = q.float() / self._chan(self.k_chan, self.H)
        return self._affine(q, self.q_scale, self.q_bias).clamp(lo, 1)

    def _normalized_kv(self, k, v):
        """k_hat, v_hat in [0, 1] of the cell's write range (after the channel scales)."""
        if self.per_channel:
            k = k.float() * self._chan(self.k_chan, self.Hkv)
            v = v.float() * self._chan(self.v_chan, self.Hkv)
        return (self._affine(k, self.k_scale, self.k_bias).clamp(0, 1),
                self._affine(v, self.v_scale, self.v_bias).clamp(0, 1))

    def _unchan(self, y):
        """Outputs back from V's channel scales."""
        return y / self._chan(self.v_chan, self.H) if self.per_channel else y

    def _normalized(self, q, k, v):
        return (self._normalized_q(q), *self._normalized_kv(k, v))

    def _unit(self) -> float:
        """fC of column charge per unit q_hat (k_hat - offset) with ideal (linear) cells."""
        cfg, ar = self.config, self.arrays
        return ar.g_lin * ar.v_span * ar.t_max

    def _logit_per_fc(self) -> torch.Tensor:
        """Per query head: the logit q.k / sqrt(D) per fC of column charge (ideal cells)."""
        ks = _expand(self.k_scale.view(1, -1), self.H).flatten()
        return self.s_temp / (self._unit() * self.q_scale * ks * self.D ** 0.5)

    def _default_out_affine(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """out_scale, out_bias that map a normalised readout back to v's units with ideal
        cells (softmax, hardsigmoid_norm); None for hardsigmoid (matched to the reference)."""
        cfg = self.config
        off = self.arrays.offset
        vs = _expand(self.v_scale.view(1, -1), self.H).flatten()
        vb = _expand(self.v_bias.view(1, -1), self.H).flatten()
        if self.readout.name == "softmax":
            scale = self.out_fs / (self._unit() * vs)
        elif self.readout.name == "hardsigmoid_norm":
            scale = (1 - off) / vs
        else:
            return None
        return scale, -(vb - off) / vs

    def linear_model(self, q, k, v, q_pos, k_pos) -> torch.Tensor:
        """What ideal devices with ideal converters compute on the scaled, clamped q, k, v:
        softmax: softmax_attention of q, k, v as clamped; hardsigmoid: Leroux's digital
        hardsigmoid_attention of q_hat, k_hat - offset, v_hat - offset (config.ideal must
        reproduce it); hardsigmoid_norm: the same with each row's weights divided by
        their sum."""
        cfg = self.config
        qh, kh, vh = self._normalized(q, k, v)
        sh = lambda t: t.view(1, -1, 1, 1)
        kw = dict(causal=self.causal, window=cfg.window)
        if self.readout.name == "softmax":
            dq = lambda x, sc, b: (x - sh(b)) / sh(sc)
            qd, kd, vd = (dq(qh, self.q_scale, self.q_bias), dq(kh, self.k_scale, self.k_bias),
                          dq(vh, self.v_scale, self.v_bias))
            if self.per_channel:
                qd, kd = qd * self._chan(self.k_chan, self.H), kd / self._chan(self.k_chan, self.Hkv)
                vd = vd / self._chan(self.v_chan, self.Hkv)
            return softmax_attention(qd * sh(self.s_temp), kd, vd, q_pos, k_pos, **kw)
        off = self.arrays.offset
        unit = self._unit()
        s_sat = self.arrays.q_sat / (self.s_gain * unit)
        kw["bias"] = self.s_bias / self.arrays.q_sat
        y = hardsigmoid_attention(qh, kh - off, vh - off, q_pos, k_pos, s_sat=s_sat, **kw)
        if self.readout.name == "hardsigmoid_norm":
            z = hardsigmoid_attention(qh, kh - off, torch.full_like(vh, 1 - off), q_pos, k_pos,
                                      s_sat=s_sat, **kw)
            scale, bias = self._default_out_affine()
            return self._unchan(torch.where(z > 0, y / z.clamp(min=1e-30), 0.0) * sh(scale) + sh(bias))
        y = y * (unit / self.out_fs).view(1, -1, 1, 1)
        return y * self.out_scale.view(1, -1, 1, 1) + self.out_bias.view(1, -1, 1, 1)

    # -------------------------------------------------------------- encoding
    def _prepare(self, qh, kh, vh, geo):
        """Per-call operands of the core: U (pulse side), P (stored side) per factor term,
        keys laid out in tile slots (padding slots hold the all-zero level Lkv)."""
        p = self._prepare_q(qh)
        p.update(self._layout(self._encode_keys(kh, vh), geo))
        return p

    def _prepare_q(self, qh):
        """The query side of the core's operands: pulse factors per term, energy factors and
        the read-path floor energy per key read."""
        cfg, ar = self.config, self.arrays
        B, H, Tq, D = qh.shape
        Hkv, g = self.Hkv, self.g
        if cfg.ideal:
            if cfg.ideal_levels:
                qh = (qh * (ar.Lq - 1)).round() / (ar.Lq - 1)
            return {"ideal": True, "U": [(qh * ar.t_max).view(B, Hkv, g, Tq, D)], "rK": [0],
                    "MV": 1, "rV": [0]}
        RK, RE = len(ar.K_f.u), len(ar.EK_f.u)
        lq = (qh.abs() * (ar.Lq - 1)).round_().long()
        gq = F.embedding(lq, ar.q_tab)                                  # (B, H, Tq, D, RK+RE+1)
        sg = torch.sign(qh)
        return {"ideal": False,
                "U": [(sg * gq[..., r]).view(B, Hkv, g, Tq, D) for r in range(RK)],
                "Ue": [gq[..., RK + r].view(B, Hkv, g, Tq, D).sum(2) for r in range(RE)],
                "floor": gq[..., -1].sum(-1),                           # (B, H, Tq) per key read
                "rK": ar.K_f.r, "rE": ar.EK_f.r, "rV": ar.V_f.r, "MV": len(ar.V_f.p)}

    def _encode_keys(self, kh, vh) -> dict:
        """What writing keys into gain cells fixes, in key order (done once per key when the
        KV cache is reused): PK (M_K, B*Hkv, D, T) stored-side charge factors, Pe (M_E, T,
        B*Hkv*D) energy factors, PV (B*Hkv, T, M_V, D+1+extra) value factors with the read
        energy column and the norm column; bk, bv the write levels (B, Hkv, T, D)."""
        cfg, ar = self.config, self.arrays
        B, Hkv, T, D = kh.shape
        BK, X = B * Hkv, self.readout.extra_columns
        if cfg.ideal:
            if cfg.ideal_levels:
                kh, vh = ((x * (ar.Lkv - 1)).round() / (ar.Lkv - 1) for x in (kh, vh))
            unit_v = lambda x: ar.g_lin * (x - ar.offset) * ar.v_span
            pk = unit_v(kh).view(BK, T, D).transpose(-1, -2).unsqueeze(0)
            cols = [unit_v(vh).view(BK, T, 1, D), kh.new_zeros(BK, T, 1, 1)]
            if X:                                    # constant cells at the top write level
                cols.append(kh.new_full((BK, T, 1, 1), float(unit_v(torch.tensor(1.0)))))
            return {"PK": pk, "PV": torch.cat(cols, -1)}
        MK, MV = len(ar.K_f.p), len(ar.V_f.p)
        bk = (kh * (ar.Lkv - 1)).round_().long()
        bv = (vh * (ar.Lkv - 1)).round_().long()
        gk = F.embedding(bk, ar.k_tab)                                  # (B, Hkv, T, D, MK+ME)
        pk = gk[..., :MK].view(BK, T, D, MK).permute(3, 0, 2, 1)
        pe = gk[..., MK:].permute(4, 2, 0, 1, 3).reshape(-1, T, BK * D)
        gv = F.embedding(bv, ar.v_tab)                                  # (B, Hkv, T, D, 2*MV)
        pv = torch.empty(BK, T, MV, D + 1 + X)
        top = ar.v_tab[ar.Lkv - 1]                                      # the norm column's cells
        for m in range(MV):
            pv[:, :, m, :D] = gv[..., m].view(BK, T, D)
            pv[:, :, m, D] = gv[..., MV + m].sum(-1).view(BK, T) + (ar.ev_ref[m] + X * top[MV + m])
            if X:
                pv[:, :, m, D + 1] = top[m]
        return {"PK": pk, "Pe": pe, "PV": pv, "bk": bk, "bv": bv}

    @staticmethod
    def _layout(enc: dict, geo) -> dict:
        """Key-order operands laid out in the geometry's tile slots (zeros in padding)."""
        G, n = geo.G, geo.n
        T = enc["PK"].shape[-1]
        if geo.identity:
            pad = G * n - T
            take = lambda x, dim: torch.cat([x, x.new_zeros(*x.shape[:dim], pad, *x.shape[dim + 1:])], dim) if pad else x
        else:
            idx = geo.slot
            take = lambda x, dim: torch.cat([x, x.new_zeros(*x.shape[:dim], 1, *x.shape[dim + 1:])],
                                            dim).index_select(dim, idx)
        pv = take(enc["PV"], 1)                                         # (BK, G*n, MV, Dc)
        BK, _, MV, Dc = pv.shape
        out = {"PK": take(enc["PK"], 3).contiguous(),
               "PV": pv.view(BK, G, n, MV, Dc).transpose(2, 3).reshape(BK, G, MV * n, Dc)}
        if "Pe" in enc:
            out["Pe"] = take(enc["Pe"], 1).contiguous()
            out["bk"], out["bv"] = enc["bk"], enc["bv"]
        return out

    def reset_kv_cache(self) -> None:
        """Forget the encoded keys (the next call encodes every key it is given)."""
        self._kvc = None

    def _kv_operands(self, k, v, k_pos, geo) -> dict:
        """The stored side of the core's operands. Keys are encoded once: while calls see
        the same sequence growing (causal, at most `window` keys, same scalers), the keys
        encoded by earlier calls are kept in tile-slot order and only new keys are encoded
        (a decode step then costs work in proportion to new tokens x context). Any other
        call encodes everything. The result is the same either way."""
        cfg = self.config
        B, Hkv, Tk, D = k.shape
        W, n = int(cfg.window), geo.n
        usable = (self.causal and geo.identity and n == int(cfg.subtile) and W % n == 0
                  and not self.observing and not self.recording)
        if not usable:
            self._kvc = None
            kh, vh = self._normalized_kv(k, v)
            return self._layout(self._encode_keys(kh, vh), geo)
        scal = torch.cat([self.k_scale, self.k_bias, self.v_scale, self.v_bias,
                          self.k_chan.flatten(), self.v_chan.flatten()])
        c = self._kvc
        if not (c is not None and c["B"] == B and c["T"] <= Tk and torch.equal(c["scal"], scal)
                and torch.equal(k_pos[:c["T"]], c["k_pos"][:c["T"]])
                and torch.equal(k[:, :, :c["T"]], c["k"][:, :, :c["T"]])
                and torch.equal(v[:, :, :c["T"]], c["v"][:, :, :c["T"]])):
            c = self._kvc = {"B": B, "T": 0, "scal": scal, "k_pos": k_pos.new_zeros(W),
                             "k": k.new_zeros(B, Hkv, W, D), "v": v.new_zeros(B, Hkv, W, D)}
        T0 = c["T"]
        if T0 < Tk:
            kh, vh = self._normalized_kv(k[:, :, T0:], v[:, :, T0:])
            enc = self._encode_keys(kh, vh)
            if "PK" not in c:                                  # buffers at full window
                BK = B * Hkv
                MV, Dc = enc["PV"].shape[2:]
                c["PK"] = enc["PK"].new_zeros(*enc["PK"].shape[:-1], W)
                c["PV"] = enc["PV"].new_zeros(BK, W // n, MV, n, Dc)
                if "Pe" in enc:
                    c["Pe"] = enc["Pe"].new_zeros(enc["Pe"].shape[0], W, BK * D)
                    c["bk"] = enc["bk"].new_zeros(B, Hkv, W, D)
                    c["bv"] = enc["bv"].new_zeros(B, Hkv, W, D)
            c["PK"][..., T0:Tk] = enc["PK"]
            idx = torch.arange(T0, Tk)                         # tile-major slots
            c["PV"][:, idx // n, :, idx % n, :] = enc["PV"].transpose(0, 1)
            if "Pe" in enc:
                c["Pe"][:, T0:Tk] = enc["Pe"]
                c["bk"][:, :, T0:Tk] = enc["bk"]
                c["bv"][:, :, T0:Tk] = enc["bv"]
            c["k"][:, :, T0:Tk] = k[:, :, T0:]
            c["v"][:, :, T0:Tk] = v[:, :, T0:]
            c["k_pos"][T0:Tk] = k_pos[T0:]
            c["T"] = Tk
        G = geo.G
        BK, _, MV, _, Dc = c["PV"].shape
        out = {"PK": c["PK"][..., :G * n], "PV": c["PV"][:, :G].reshape(BK, G, MV * n, Dc)}
        if "Pe" in c:
            out["Pe"] = c["Pe"][:, :G * n]
            out["bk"], out["bv"] = c["bk"][:, :, :Tk], c["bv"][:, :, :Tk]
        return out

    # -------------------------------------------------------------- the factored core
    def _core(self, p, geo, B, Tq, *, quantize=True, stats=False, stop_after_s=False,
              collect_s=False, track_max=False):
        """Run all query blocks: S as sum_m c_m(age) (U_r @ P_m^T), the readout's pulse
        widths (charge-to-pulse table, or the softmax's ADC + digital softmax + DAC), tile
        outputs as one batched matmul over tiles. Returns the normalized output (sum of tile
        codes / half, or of tile charges / out_fs; softmax: divided by the row's weight sum;
        hardsigmoid_norm: the ratio to the norm column's charge) and energies in fJ, with
        the conversion counts the ledger needs."""
        cfg, ar, rd = self.config, self.arrays, self.readout
        Hkv, g, D, H = self.Hkv, self.g, self.D, self.H
        n, MV = geo.n, p["MV"]
        levels = rd.out_levels()
        half = levels // 2
        ideal = p["ideal"]
        soft, norm = rd.name == "softmax", rd.extra_columns > 0
        out = torch.zeros(B, Hkv, g, Tq, D)
        e = {"qk": 0.0, "pv": 0.0, "c2p": 0.0, "keys": 0.0, "tiles": 0.0, "rows": 0.0}
        st = {"s_max": torch.full((Hkv, g), -float("inf")), "s_abs": torch.zeros(Hkv, g),
              "o_max": torch.zeros(Hkv, g), "n_max": torch.zeros(Hkv, g)}
        if stats:
            for k in ("s", "phi"):
                st[k] = torch.zeros(3, Hkv, g, dtype=torch.float64)
        S_all = torch.zeros(B, Hkv, g, Tq, len(geo.k_pos) + 1) if collect_s else None
        hs = lambda t: t.view(1, Hkv, g, 1, 1)
        if soft:
            Lp = rd.prob_levels
            s_fs, lpf = hs(self.s_fs), hs(self._logit_per_fc())
            if not ideal:
                u_soft, fl_soft, uf_soft = pulse_tables(ar, Lp)
                hv = [u_soft[:, r].contiguous() for r in range(u_soft.shape[1])]
        elif ideal:
            phi_scale, phi_bias = hs(self.s_gain / ar.q_sat), hs(self.s_bias / ar.q_sat)
        else:
            idx_scale, idx_bias = hs(self.s_gain / ar.dq), hs(self.s_bias / ar.dq) + 8388608.0
            hv = [ar.hv_table[:, r].contiguous() for r in range(ar.hv_table.shape[1])]
        ws = self.arrays.workspace
        fs = ((half / self.out_fs) if quantize else (1.0 / self.out_fs)).view(1, Hkv, 1, g, 1, 1)
        nfs = ((half / self.n_fs) if quantize else (1.0 / self.n_fs)).view(1, Hkv, 1, g, 1)
        Dc = p["PV"].shape[-1]
        for ch in geo.chunks:
            r0, r1 = ch.rows.start, ch.rows.stop
            qc, ns, nt = r1 - r0, ch.slots.stop - ch.slots.start, ch.tiles.stop - ch.tiles.start
            BK = B * Hkv
            Uc = [u[:, :, :, r0:r1].reshape(BK, g * qc, D) for u in p["U"]]
            S = None                                                 # (B*Hkv, g*qc, ns)
            for m, r in enumerate(p["rK"]):
                Mm = torch.matmul(Uc[r], p["PK"][m][..., ch.slots],
                                  out=ws.get("S" if S is None else "M", (BK, g * qc, ns)))
                if ch.ck is None or ideal:
                    S = Mm if S is None else S.add_(Mm)
                elif S is None:
                    S = Mm.view(BK, g, qc, ns).mul_(ch.ck[m]).view_as(Mm)
                else:
                    S.view(BK, g, qc, ns).addcmul_(Mm.view(BK, g, qc, ns), ch.ck[m])
            S5 = S.view(B, Hkv, g, qc, ns)
            if stats or stop_after_s:
                masked = S5.masked_fill(ch.mask == 0, -float("inf"))
                st["s_max"] = torch.maximum(st["s_max"], masked.amax((0, 3, 4)))
                st["s_abs"] = torch.maximum(st["s_abs"], (S5.abs() * ch.mask).amax((0, 3, 4)))
            if stats:
                self._acc_masked(st["s"], S5, ch.mask)
            if collect_s:
                S_all[:, :, :, r0:r1, geo.slot[ch.slots]] = S5 * ch.mask
            if stop_after_s:
                continue
            e["keys"] += float(ch.keys.sum()) * B * H
            e["tiles"] += float(ch.tiles_read.sum()) * B * H
            e["rows"] += float((ch.keys > 0).sum()) * B * H
            tiled = lambda x: x.view(B, Hkv, g, qc, nt, n).permute(0, 1, 4, 2, 3, 5)  # tile-major
            tm = ch.tmask.view(nt, qc * n, 1)
            tshape = (B, Hkv, nt, g, qc, n)
            if soft:
                # column ADC, digital softmax, row max -> t_max, pulse-width DAC codes
                W, Z = rd.weights(S5, ch.mask, s_fs, lpf, quantize)
                if stats:
                    self._acc_masked(st["phi"], W / (Lp - 1), ch.mask)
                Z = Z / (Lp - 1)
                if ideal:
                    h = [tiled(W.mul_(ar.t_max / (Lp - 1)))]
                else:
                    ix = ws.get("ix", tshape, torch.int32)
                    ix.copy_(tiled(W.round_()))
                    ix = ix.view(-1)
                    if uf_soft is not None:      # u and the floor energy in one gather
                        hf = torch.index_select(uf_soft, 0, ix, out=ws.get("hf", (ix.numel(),), torch.float64))
                        hf = hf.view(torch.float32).view(*tshape, 2)
                        h, fl = [hf[..., 0]], hf[..., 1]
                    else:
                        h = [t.index_select(0, ix).view(tshape) for t in hv]
                        fl = fl_soft.index_select(0, ix).view(tshape)
                    flm = torch.matmul(fl.reshape(BK, nt, g, qc * n), tm)
                    e["pv"] += float(flm.sum()) * (D + ar.v_twins)
            elif ideal:
                h = [tiled(S5.mul_(phi_scale).add_(phi_bias).clamp_(0, 1).mul_(ar.t_max))]
                if stats:
                    self._acc_masked(st["phi"], S5 / ar.t_max, ch.mask)
            else:
                # nearest point of the qin grid: adding 2^23 rounds a float32 to an integer
                # held in its mantissa bits; the int32 view minus 2^23's bits is the index
                x = S5.mul_(idx_scale).add_(idx_bias).clamp_(8388608.0, 8388608.0 + ar.N_X - 1)
                ixk = x.view(torch.int32).sub_(0x4B000000)
                if stats:
                    ph = ar.phi_table[ixk.long()] / ar.t_max
                    self._acc_masked(st["phi"], ph, ch.mask)
                ix = ws.get("ix", tshape, torch.int32)
                ix.copy_(tiled(ixk))
                ix = ix.view(-1)
                if ar.hf_packed is not None:     # h and the floor energy in one 8-byte gather
                    hf = torch.index_select(ar.hf_packed, 0, ix, out=ws.get("hf", (ix.numel(),), torch.float64))
                    hf = hf.view(torch.float32).view(*tshape, 2)
                    h, fl = [hf[..., 0]], hf[..., 1]
                else:
                    h = [t.index_select(0, ix).view(tshape) for t in hv]
                    fl = ar.ev_floor_table.index_select(0, ix).view(tshape)
                flm = torch.matmul(fl.reshape(BK, nt, g, qc * n), tm)   # (BK, nt, g, 1)
                e["pv"] += float(flm.sum()) * (D + ar.v_twins + rd.extra_columns)
                if ar.econv_const is None:
                    ec = ar.econv_table.index_select(0, ix).view(BK, nt, g, qc * n)
                    e["c2p"] += float(torch.matmul(ec, tm).sum())
            A = ws.get("A", (B, Hkv, nt, g, qc, MV, n))
            for m in range(MV):
                cv = ch.tmask if ideal else ch.cv[m]
                torch.mul(h[p["rV"][m]], cv, out=A[..., m, :])
            O = torch.matmul(A.view(BK, nt, g * qc, MV * n), p["PV"][:, ch.tiles],
                             out=ws.get("O", (BK, nt, g * qc, Dc)))
            e["pv"] += float(O[..., D].sum())
            Ot = O[..., :D].view(B, Hkv, nt, g, qc, D)
            if track_max:   # the readout's full scale: a percentile, as for crossbar ADCs
                st["o_max"] = torch.maximum(st["o_max"], self._percentile(Ot))
            Ot.mul_(fs)
            if quantize:
                Ot.round_().clamp_(-half, levels - half - 1)
            y = Ot.sum(2) / (half if quantize else 1.0)              # (B, Hkv, g, qc, D)
            if norm:
                On = O[..., D + 1].view(B, Hkv, nt, g, qc)
                if track_max:
                    st["n_max"] = torch.maximum(st["n_max"], On.amax((0, 2, 4)))
                On = On * nfs
                if quantize:
                    On.round_().clamp_(-half, levels - half - 1)
                den = On.sum(2).unsqueeze(-1) / (half if quantize else 1.0)
                den = den * hs(self.n_fs / self.out_fs)                 # norm charge / out_fs
                y = torch.where(den > 0, y / den.clamp(min=1e-30), 0.0)
            elif soft:
                Zr = Z.unsqueeze(-1)
                y = torch.where(Zr > 0, y / Zr.clamp(min=1e-30), 0.0)
            out[:, :, :, r0:r1] = y
            if not ideal:
                for m, r in enumerate(p["rE"]):
                    X = ch.ce[m] @ p["Pe"][m][ch.slots]               # (qc, B*Hkv*D)
                    e["qk"] += float((p["Ue"][r][:, :, r0:r1] * X.view(qc, B, Hkv, D).permute(1, 2, 0, 3)).sum())
                e["qk"] += float((p["floor"][:, :, r0:r1] * ch.keys.float()).sum())
                if rd.uses_c2p:
                    econv = ar.econv_const if ar.econv_const is not None else float(ar.econv_table.mean())
                    if ar.econv_const is not None:
                        e["c2p"] += econv * float(ch.keys.sum()) * B * H
                    e["c2p"] += econv * float(ch.tiles_read.sum()) * B * H * (D + rd.extra_columns)
        res = {"out": out.view(B, H, Tq, D), "energy": e, "stats": st}
        if collect_s:
            res["S"] = S_all[..., :-1].reshape(B, H, Tq, -1)
        return res

    @staticmethod
    def _acc_masked(acc, x, mask):
        """Count, sum and sum of squares per head of x (B, Hkv, g, qc, ns) where seen."""
        xm = x * mask
        acc[0] += mask.sum() * x.shape[0]
        acc[1] += xm.sum((0, 3, 4)).double()
        acc[2] += (xm * x).sum((0, 3, 4)).double()

    def _qc(self, B, ns) -> int:
        return max(1, CHUNK // max(1, B * self.H * ns))

    # -------------------------------------------------------------- calibration support
    STAT_KEYS = ("out", "raw", "ref", "linear", "s", "phi")

    def reset_stats(self):
        self.stats = {}

    def _stat_sums(self):
        """Accumulators behind `stats`; emptying `stats` (or reset_stats) starts afresh."""
        if not self.stats or self._acc is None:
            self._acc = {k: torch.zeros(3, self.H, dtype=torch.float64) for k in self.STAT_KEYS}
        return self._acc

    def _publish_stats(self):
        for k, (n, s1, s2) in self._acc.items():
            n = n.clamp(min=1)
            m = s1 / n
            self.stats[f"{k}_mean"] = m.float()
            self.stats[f"{k}_std"] = (s2 / n - m * m).clamp(min=0).sqrt().float()

    @staticmethod
    def _acc_heads(acc, x):
        xd = x.double()
        acc[0] += x.shape[0] * x.shape[2] * x.shape[3]
        acc[1] += xd.sum((0, 2, 3))
        acc[2] += (xd * xd).sum((0, 2, 3))

    def _percentile(self, ot: torch.Tensor) -> torch.Tensor:
        """config.adc_range_percentile of |tile output| per (kv head, group head), on a
        fixed-seed sample of at most 65536 values each (the max at 100)."""
        Hkv, g = ot.shape[1], ot.shape[3]
        x = ot.abs().permute(1, 3, 0, 2, 4, 5).reshape(Hkv * g, -1)
        pct = self.config.adc_range_percentile
        if pct >= 100:
            return x.amax(1).view(Hkv, g)
        if x.shape[1] > 65536:
            gen = torch.Generator().manual_seed(x.shape[1])
            x = x[:, torch.randint(x.shape[1], (65536,), generator=gen)]
        return torch.quantile(x.float(), pct / 100, dim=1).view(Hkv, g).to(ot.dtype)

    def observe(self, on: bool = True) -> None:
        """Start observing ranges afresh (on) or freeze them (off), like a crossbar's ADC.
        While observing, every call sets the default scalers from running maxima (the
        class docstring says which); a module never observed takes its first batch's."""
        if on:
            for r in (self.q_range, self.k_range, self.v_range, self.s_range, self.o_range,
                      self.n_range, self.qc_range, self.kc_range, self.vc_range):
                r.zero_()
        self.observing = bool(on)

    def calibration_state(self) -> dict[str, torch.Tensor]:
        return {k: getattr(self, k).clone() for k in self.CALIBRATED}

    def load_calibration_state(self, state: dict[str, torch.Tensor]) -> None:
        missing = [k for k in self.CALIBRATED if k not in state]
        if missing:
            raise ValueError(f"{self.name or type(self).__name__}: the calibration state lacks "
                             f"{', '.join(missing)} (saved by an older cimlut?)")
        for k in self.CALIBRATED:
            getattr(self, k).copy_(state[k])
        self.initialized.fill_(True)
        self.observing = False

    @torch.no_grad()
    def _observe_batch(self, q, k, v, q_pos, k_pos) -> None:
        """Default scalers from this batch and the running maxima (see the class docstring)."""
        cfg = self.config
        off = self.arrays.offset
        half_range = min(off, 1 - off)
        cmax = lambda x, rng: rng.copy_(torch.maximum(rng, x.float().abs().amax((0, 2))))
        qc, kc, vc = cmax(q, self.qc_range), cmax(k, self.kc_range), cmax(v, self.vc_range)
        if self.per_channel:
            qg = qc.view(self.Hkv, self.g, self.D).amax(1)
            ok = (qg > 0) & (kc > 0)
            self.k_chan.copy_(torch.where(ok, (qg / kc.clamp(min=1e-30)).sqrt(), 1.0))
            self.v_chan.copy_(torch.where(vc > 0, vc.amax(1, keepdim=True) / vc.clamp(min=1e-30), 1.0))
            hr = cfg.channel_headroom
            qc = qc / self.k_chan.repeat_interleave(self.g, 0) * hr
            kc, vc = kc * self.k_chan * hr, vc * self.v_chan * hr
        rng = lambda r, c: r.copy_(c.amax(1)).clamp(min=1e-12)
        self.q_scale.copy_(1.0 / rng(self.q_range, qc))
        self.q_bias.zero_()
        for c, r, s, b in ((kc, self.k_range, self.k_scale, self.k_bias),
                           (vc, self.v_range, self.v_scale, self.v_bias)):
            s.copy_(half_range / rng(r, c))
            b.fill_(off)
        for buf in (self.s_gain, self.out_fs, self.out_scale, self.s_fs, self.n_fs, self.s_temp):
            buf.fill_(1.0)
        self.out_bias.zero_()
        self.s_bias.zero_()
        B, Tq = q.shape[0], q.shape[2]
        qh, kh, vh = self._normalized(q, k, v)
        geo = geometry(self.arrays, cfg.subtile, q_pos, k_pos, self.causal, self._qc(B, len(k_pos)))
        p = self._prepare(qh, kh, vh, geo)
        sst = self._core(p, geo, B, Tq, stop_after_s=True)["stats"]
        soft = self.readout.name == "softmax"
        smax = (sst["s_abs"] if soft else sst["s_max"]).flatten()
        self.s_range.copy_(torch.maximum(self.s_range, smax))
        pos = self.s_range > 0
        if soft:   # the Q.K column ADC's full scale: the largest |S| seen
            self.s_fs.copy_(torch.where(pos, self.s_range, 1.0))
        else:
            self.s_gain.copy_(torch.where(pos, self.arrays.q_sat / self.s_range.clamp(min=1e-30), 1.0))
        ost = self._core(p, geo, B, Tq, quantize=False, track_max=True)["stats"]
        self.o_range.copy_(torch.maximum(self.o_range, ost["o_max"].flatten()))
        self.out_fs.copy_(torch.where(self.o_range > 0, self.o_range, 1.0))
        self.n_range.copy_(torch.maximum(self.n_range, ost["n_max"].flatten()))
        self.n_fs.copy_(torch.where(self.n_range > 0, self.n_range, 1.0))
        affine = self._default_out_affine()
        if affine is not None:
            self.out_scale.copy_(affine[0])
            self.out_bias.copy_(affine[1])
            self.initialized.fill_(True)
            return
        y = self._core(p, geo, B, Tq, quantize=self.readout.quantizes(cfg.ideal))["out"]
        ref = softmax_attention(q.float(), k.float(), v.float(), q_pos, k_pos,
                                causal=self.causal, window=cfg.window)
        ys, rs = y.std((0, 2, 3)), ref.std((0, 2, 3))
        scale = torch.where(ys > 0, rs / ys.clamp(min=1e-30), 1.0)
        self.out_scale.copy_(scale)
        self.out_bias.copy_(ref.mean((0, 2, 3)) - scale * y.mean((0, 2, 3)))
        self.initialized.fill_(True)

    # -------------------------------------------------------------- forward
    @torch.no_grad()
    def forward(self, q, k, v, q_pos, k_pos, exact: bool = False) -> torch.Tensor:
        self._check(q, k, v, q_pos, k_pos)
        if self.observing or not bool(self.initialized):
            self._observe_batch(q, k, v, q_pos, k_pos)
        cfg = self.config
        B, H, Tq, D = q.shape
        if exact and not cfg.ideal:
            if self.readout.name != "hardsigmoid":
                raise ValueError(f"{self.name or 'GainCellAttention'}: the per-element reference "
                                 f"(exact=True) is written for the hardsigmoid readout only, "
                                 f"not {self.readout.name!r}")
            r = self._exact(*self._normalized(q, k, v), q_pos, k_pos)
            p = {"bk": r["bk"], "bv": r["bv"]}
        else:
            geo = geometry(self.arrays, self.config.subtile, q_pos, k_pos, self.causal, self._qc(B, len(k_pos)))
            p = self._prepare_q(self._normalized_q(q))
            p.update(self._kv_operands(k, v, k_pos, geo))
            r = self._core(p, geo, B, Tq, quantize=self.readout.quantizes(cfg.ideal),
                           stats=self.recording)
        y = r["out"] * self.out_scale.view(1, -1, 1, 1) + self.out_bias.view(1, -1, 1, 1)
        if self.recording:   # statistics in V's channel-scaled units
            self._record(q, k, v, q_pos, k_pos, r["out"], y, r["stats"])
        y = self._unchan(y)
        if self.ledger is not None:
            self._account(r["energy"], p, q_pos, k_pos, B, Tq)
        return y.to(q.dtype)

    def _record(self, q, k, v, q_pos, k_pos, raw, y, st):
        acc = self._stat_sums()
        self._acc_heads(acc["raw"], raw)
        self._acc_heads(acc["out"], y)
        ref = softmax_attention(q.float(), k.float(), v.float(), q_pos, k_pos,
                                causal=self.causal, window=self.config.window)
        back = (lambda t: t * self._chan(self.v_chan, self.H)) if self.per_channel else (lambda t: t)
        self._acc_heads(acc["ref"], back(ref))
        self._acc_heads(acc["linear"], back(self.linear_model(q, k, v, q_pos, k_pos)))
        for name in ("s", "phi"):
            if name in st:
                acc[name] += st[name].view(3, -1)
        self._publish_stats()

    def _account(self, e, p, q_pos, k_pos, B, Tq):
        """Energies (J) and per-token latency. Latency model per query token: the QK read
        (one t_max per phase: two when q is signed), then
        hardsigmoid(_norm): the phi(S)-driven V read (t_max: the charge-to-pulse discharge is
        the V read pulse) and the tile readout conversion (t_max): 60 ns signed, 45 ns
        unsigned (Leroux et al.: 65 ns);
        softmax: a Q.K column ADC conversion (adc_time, all columns in parallel), the
        digital softmax (5 ops per key read, digital_mac_time each), the V read (t_max) and
        the output ADC conversion (adc_time). Writes overlap reads.
        Readout energies: ADC conversions at adc_fom x 2^bits (Walden), probability pulses
        at dac_energy_per_read, per key read an exp, a max compare, a subtract, a sum add
        (digital_op_energy each) and the logit scale (mult_energy); per query and head one
        reciprocal (div_energy) and D mults. hardsigmoid_norm: per query and head one
        reciprocal and D mults; its column's reads, writes and conversions are in the
        gain-cell and charge-to-pulse kinds."""
        cfg, ar, led, rd = self.config, self.arrays, self.ledger, self.readout
        phases = 2 if cfg.q_signed else 1
        tok = B * Tq
        t = cfg.t_max
        soft = rd.name == "softmax"
        keys, tiles, rows = e.get("keys", 0.0), e.get("tiles", 0.0), e.get("rows", 0.0)
        if not cfg.ideal:
            new = (k_pos >= q_pos.min()) if self.causal else torch.ones_like(k_pos, dtype=torch.bool)
            n_new = int(new.sum())
            ew = ar.ewrite
            cells = float(ew[p["bk"][:, :, new]].sum() + ew[p["bv"][:, :, new]].sum())
            refs = ar.ewrite_ref * B * self.Hkv * n_new * (self.D + 1)   # D twins (K) + 1 (V)
            norm_cells = float(ew[-1]) * B * self.Hkv * n_new * rd.extra_columns
            led.add("gc_write", (cells + refs + norm_cells) * FJ)
            led.add("gc_read_qk", e["qk"] * FJ, phases * t * tok)
            led.add("gc_read_pv", e["pv"] * FJ, t * tok)
            if rd.uses_c2p:
                led.add("c2p", e["c2p"] * FJ, t * tok)
        if soft:
            conv = keys * (1 << cfg.score_bits) + tiles * self.D * (1 << cfg.softmax_out_bits)
            led.add("attn_adc", conv * cfg.adc_fom, 2 * cfg.adc_time * tok)
            led.add("attn_pdac", keys * cfg.dac_energy_per_read)
            ops = keys * (cfg.exp_energy + 3 * cfg.digital_op_energy + cfg.mult_energy)
            ops += rows * (cfg.div_energy + self.D * cfg.mult_energy)
            led.add("attn_digital", ops, (5 * keys + rows * (1 + self.D)) / self.H * cfg.digital_mac_time)
        elif rd.extra_columns:
            led.add("attn_digital", rows * (cfg.div_energy + self.D * cfg.mult_energy),
                    rows * (1 + self.D) / self.H * cfg.digital_mac_time)
        if self.per_channel:   # channel scales: k and v of each new key, q and the output
            new = int(((k_pos >= q_pos.min()) if self.causal else torch.ones_like(k_pos, dtype=torch.bool)).sum())
            led.add("attn_digital", cfg.mult_energy * self.D * 2 * B * (self.Hkv * new + self.H * Tq))
        led.add("attn_dac", cfg.attn_dac_energy * phases * B * self.H * Tq)
        led.add("attn_control", cfg.attn_control_energy * B * self.H * Tq)

    # -------------------------------------------------------------- exact reference
    def scores(self, q, k, v, q_pos, k_pos, exact: bool = False) -> torch.Tensor:
        """Column charges S (B, H, Tq, Tk) in fC, 0 where a key is not seen (for tests)."""
        self._check(q, k, v, q_pos, k_pos)
        qh, kh, vh = self._normalized(q, k, v)
        if exact:
            return self._exact(qh, kh, vh, q_pos, k_pos, scores_only=True)["S"].float()
        B, Tq = q.shape[0], q.shape[2]
        geo = geometry(self.arrays, self.config.subtile, q_pos, k_pos, self.causal, self._qc(B, len(k_pos)))
        p = self._prepare(qh, kh, vh, geo)
        return self._core(p, geo, B, Tq, stop_after_s=True, collect_s=True)["S"]

    def _exact(self, qh, kh, vh, q_pos, k_pos, scores_only=False):
        """Every product from the tables, element by element (float64; small sizes only)."""
        cfg, ar = self.config, self.arrays
        dev = ar.device
        B, H, Tq, D = qh.shape
        Tk = kh.shape[2]
        lq = (qh.abs() * (ar.Lq - 1)).round().long()
        t = (lq.double() / (ar.Lq - 1) * cfg.t_max * torch.sign(qh).double())   # signed, s
        bk = (kh * (ar.Lkv - 1)).round().long()
        bv = (vh * (ar.Lkv - 1)).round().long()
        read = q_pos if self.causal else q_pos + int(k_pos.max()) + 1
        age = (read[:, None] - k_pos[None, :])
        valid = (age >= 0) & (age < cfg.window) if self.causal else torch.ones_like(age, dtype=torch.bool)
        if not self.causal and Tk > cfg.window:
            raise ValueError(f"non-causal gain-cell attention holds at most window={cfg.window} keys")
        secs = age.clamp(min=0).double() * cfg.token_period

        def stored(b):   # (B, Hkv, Tk, D) levels -> (B, H, Tq, Tk, D) voltages at read time
            v0 = dev.stored(ar.vw_levels[_expand(b, H)])[:, :, None]
            return dev.decayed(v0, secs[None, None, :, :, None]) if cfg.decay else v0.expand(B, H, Tq, Tk, D)

        vref0 = dev.stored(ar.v_mid)
        vref = dev.decayed(vref0, secs) if cfg.decay else vref0.expand(Tq, Tk)
        vref = vref[None, None, :, :, None]
        tq = t[:, :, :, None, :]
        Vk = stored(bk)
        cells = dev.charge(Vk, tq.abs()) - dev.ref_charge(vref, tq.abs())
        m = valid[None, None, :, :]
        S = ((torch.sign(tq) * cells).sum(-1) / FC) * m
        res = {"S": S, "bk": bk, "bv": bv}
        if scores_only:
            return res
        e_qk = ((dev.read_energy(Vk, tq.abs()) + dev.ref_read_energy(vref, tq.abs())).sum(-1) * m).sum()
        qin = self.s_gain.double().view(1, H, 1, 1) * S * FC + self.s_bias.double().view(1, H, 1, 1) * FC
        phi = dev.pulse(qin) * m
        Vv = stored(bv)
        contrib = (dev.charge(Vv, phi[..., None]) - dev.ref_charge(vref, phi[..., None])) / FC
        contrib = contrib * m[..., None]
        e_pv = ((dev.read_energy(Vv, phi[..., None]).sum(-1)
                 + dev.ref_read_energy(vref[..., 0], phi)) * m).sum()
        tile = torch.remainder(k_pos, cfg.window) // cfg.subtile
        G = int(tile.max()) + 1
        part = torch.zeros(B, H, Tq, G, D, dtype=torch.float64).index_add_(3, tile, contrib)
        half = cfg.out_levels // 2
        codes = _quantize(part / self.out_fs.double().view(1, H, 1, 1, 1), cfg.out_levels)
        res["out"] = (codes.sum(3) / half).float()
        econv = dev.conversion_energy(qin)
        seen = torch.zeros(Tq, G, dtype=torch.bool).index_put_((torch.arange(Tq)[:, None].expand(Tq, Tk)[valid],
                                                               tile[None].expand(Tq, Tk)[valid]),
                                                              torch.tensor(True))
        e_out = float(seen.sum()) * B * H * D * float(ar.econv_const if ar.econv_const is not None
                                                      else ar.econv_table.mean())
        res["energy"] = {"qk": float(e_qk) / FJ, "pv": float(e_pv) / FJ,
                         "c2p": float((econv * m).sum()) / FJ + e_out}
        res["stats"] = {}
        return res
