"""Layer-wise adaptation of analog attention (`cimlut adapt`, the successor of `calibrate`).

For every converted attention layer, the digital attention's inputs (q, k, v after the
model's position encoding) and outputs are cached on held-out tokens (never the evaluation
text); then per-head parameters of the hardware attention are trained to minimise the mean
squared error to the digital output (BRECQ / LoLCATs stage 1 style), through a
differentiable surrogate of the array: linear cells (the secant `g_lin` of the tables, as
Leroux et al. fit their cell), q/k/v at their levels with straight-through rounding. The
parameters per head: a score gain and bias before the readout (hardsigmoid(_norm): the
charge gain `s_gain` and a charge `s_bias` into the charge-to-pulse; softmax: a logit
temperature `s_temp`) and the output scale and bias. A layer keeps what it learned only if
the module's own held-out MSE (through the tables) drops. Leroux's statistics matching stays
available as `method="match"` (`calibrate.match_outputs`).

Saved with `calibrate.save` plus the readout and the cell, so that `run --calibration`
refuses a file made for another model, readout or cell (`check_file`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from .attention import GainCellAttention, attention_mask, softmax_attention
from .calibrate import CalibrationError


class AdaptError(CalibrationError):
    """An adaptation that cannot run, or a saved state that does not fit."""


@dataclass
class Cached:
    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    q_pos: torch.Tensor
    k_pos: torch.Tensor
    y: torch.Tensor       # the digital attention output


class _Stop(Exception):
    """Raised by a capture hook once its layer is recorded: the layers above do not run."""


def _run_with(model, conv, forwards: dict, batches) -> None:
    """Run `model` on `batches` (no gradients, ledger paused) with the attention forwards of
    `forwards` (layer name -> function) in place of the modules' own, restored after; a
    forward that raises _Stop ends that batch's pass."""
    saved = {name: conv.attentions[name].forward for name in forwards}
    for name, fn in forwards.items():
        conv.attentions[name].forward = fn
    try:
        with torch.no_grad(), conv.ledger.paused():
            for ids in batches if isinstance(batches, list) else [batches]:
                try:
                    model(ids)
                except _Stop:
                    pass
    finally:
        for name, fn in saved.items():
            conv.attentions[name].forward = fn


def capture(model, conv, batches) -> dict[str, list[Cached]]:
    """Run `model` on `batches` with every analog attention replaced by the digital one,
    recording each layer's q, k, v and output (the digital model's, layer by layer)."""
    cache: dict[str, list[Cached]] = {n: [] for n in conv.attentions}

    def digital(name, a):
        def forward(q, k, v, q_pos, k_pos, exact=False):
            y = softmax_attention(q.float(), k.float(), v.float(), q_pos, k_pos,
                                  causal=a.causal, window=a.config.window)
            cache[name].append(Cached(q.detach().float(), k.detach().float(), v.detach().float(),
                                      q_pos, k_pos, y))
            return y.to(q.dtype)
        return forward

    _run_with(model, conv, {n: digital(n, a) for n, a in conv.attentions.items()}, batches)
    return cache


def capture_inputs(model, conv, batches, name: str, targets: list[Cached]) -> list[Cached]:
    """The q, k, v that layer `name` receives from the model as it is now (the layers below
    analog and already adapted), paired with the digital model's output at that layer
    (`targets`, from `capture`, same batches in the same order). The forward stops at the
    layer."""
    got = []

    def grab(q, k, v, q_pos, k_pos, exact=False):
        got.append((q.detach().float(), k.detach().float(), v.detach().float(), q_pos, k_pos))
        raise _Stop

    _run_with(model, conv, {name: grab}, batches)
    return [Cached(q, k, v, qp, kp, t.y) for (q, k, v, qp, kp), t in zip(got, targets)]


def _ste_round(x: torch.Tensor, levels: int) -> torch.Tensor:
    """Round to `levels` levels over [0, 1] (or [-1, 1] by magnitude), gradient straight
    through."""
    r = torch.sign(x) * (x.abs() * (levels - 1)).round() / (levels - 1)
    return x + (r - x).detach()


@dataclass
class Prepared:
    """One cached batch as the surrogate trains on it: q, k, v normalised and rounded to
    their levels once (they do not depend on the trained parameters), on the training
    device."""
    qh: torch.Tensor
    kh: torch.Tensor
    vh: torch.Tensor
    mask: torch.Tensor
    y: torch.Tensor


class Surrogate(torch.nn.Module):
    """The attention of one GainCellAttention with linear cells, differentiable in its
    per-head score gain/bias (or temperature) and output scale/bias. Runs on `device`: the
    module's constants are copied there once, the module itself stays where it is."""

    def __init__(self, att: GainCellAttention, device: str | torch.device = "cpu"):
        super().__init__()
        self.att = att
        self.device = torch.device(device)
        H = att.H
        z = lambda: torch.nn.Parameter(torch.zeros(H, device=self.device))
        self.gain = z()         # log of the score gain factor
        self.bias = z()         # score bias, units of saturation
        self.out_scale = z()    # log factor
        self.out_bias = z()
        ar, dv = att.arrays, lambda t: t.detach().float().to(self.device)
        self.unit = float(att._unit())
        self.c_logit = dv(att._logit_per_fc())
        self.c_out_fs = dv(att.out_fs)
        self.c_out_scale, self.c_out_bias = dv(att.out_scale), dv(att.out_bias)
        self.c_s_sat = dv(ar.q_sat / (att.s_gain * self.unit))
        self.c_s_bias = dv(att.s_bias / ar.q_sat)
        self.c_unchan = (dv(att._chan(att.v_chan, H)) if att.per_channel else None)

    @torch.no_grad()
    def prepare(self, c: Cached) -> Prepared:
        att, cfg, ar = self.att, self.att.config, self.att.arrays
        qh, kh, vh = att._normalized(c.q, c.k, c.v)
        if not cfg.ideal or cfg.ideal_levels:
            qh, kh, vh = _ste_round(qh, ar.Lq), _ste_round(kh, ar.Lkv), _ste_round(vh, ar.Lkv)
        rep = lambda x: x.repeat_interleave(att.g, 1)
        mask = attention_mask(c.q_pos, c.k_pos, att.causal, cfg.window)
        to = lambda t: t.float().to(self.device)
        return Prepared(to(qh), to(rep(kh - ar.offset)), to(rep(vh - ar.offset)),
                        mask.to(self.device), to(c.y))

    def forward(self, p: Prepared) -> torch.Tensor:
        sh = lambda t: t.view(1, -1, 1, 1)
        s = p.qh @ p.kh.transpose(-1, -2)                              # normalized charge
        g = torch.exp(self.gain)
        ro = self.att.readout.name
        if ro == "softmax":
            # S in fC = unit * s; logits = S * logit_per_fc (which holds s_temp)
            logits = s * self.unit * sh(self.c_logit) * sh(g)
            w = torch.softmax(logits.masked_fill(~p.mask, -math.inf), -1)
            y = w @ p.vh * self.unit / sh(self.c_out_fs)                 # as the module
        else:
            phi = (s / sh(self.c_s_sat) * sh(g) + sh(self.c_s_bias + self.bias)).clamp(0, 1) * p.mask
            y = phi @ p.vh
            if ro == "hardsigmoid_norm":
                z = phi.sum(-1, keepdim=True) * (1 - self.att.arrays.offset)
                y = torch.where(z > 0, y / z.clamp(min=1e-30), torch.zeros_like(y))
            else:
                y = y * self.unit / sh(self.c_out_fs)
        y = y * sh(self.c_out_scale) + sh(self.c_out_bias)
        y = y * sh(torch.exp(self.out_scale)) + sh(self.out_bias)
        return y / self.c_unchan if self.c_unchan is not None else y

    @torch.no_grad()
    def apply(self) -> None:
        """Fold the trained parameters into the module's buffers."""
        att = self.att
        cpu = lambda t: t.detach().to(att.out_scale.device)
        g, c, d = cpu(torch.exp(self.gain)), cpu(torch.exp(self.out_scale)), cpu(self.out_bias)
        if att.readout.name == "softmax":
            att.s_temp.mul_(g)
        else:
            att.s_gain.mul_(g)
            att.s_bias.add_(cpu(self.bias) * att.arrays.q_sat)
        att.out_scale.mul_(c)
        att.out_bias.mul_(c).add_(d)


def _loss(sur: Surrogate, data: list[Prepared]) -> torch.Tensor:
    return sum(((sur(p) - p.y) ** 2).mean() for p in data) / len(data)


@torch.no_grad()
def _device_loss(att: GainCellAttention, data: list[Cached]) -> float:
    """Held-out MSE of the module itself (the table model, not the surrogate)."""
    att.reset_kv_cache()
    led, att.ledger = att.ledger, None
    try:
        return sum(float(((att(c.q, c.k, c.v, c.q_pos, c.k_pos).float() - c.y) ** 2).mean())
                   for c in data) / len(data)
    finally:
        att.ledger = led
        att.reset_kv_cache()


def adapt_layer(att: GainCellAttention, train: list[Cached], val: list[Cached], steps: int,
                lr: float = 0.05, device: str = "cpu") -> dict:
    """Train one layer's surrogate on `train` (on `device`) and fold it in, kept only if the
    module's own held-out MSE (on `val`, through the tables) drops; MSEs before and after."""
    sur = Surrogate(att, device)
    data = [sur.prepare(c) for c in train]
    opt = torch.optim.Adam(sur.parameters(), lr=lr)
    before = _device_loss(att, val)
    for _ in range(steps):
        opt.zero_grad()
        loss = _loss(sur, data)
        loss.backward()
        opt.step()
    saved = att.calibration_state()
    sur.apply()
    after = _device_loss(att, val)
    if not after < before:           # never make a layer worse on held-out data
        att.load_calibration_state(saved)
        return {"val_before": before, "val_after": before, "kept": False}
    return {"val_before": before, "val_after": after, "kept": True}


def check_device(device: str) -> str:
    """A torch device that exists here, or an AdaptError that says what is available."""
    try:
        d = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise AdaptError(f"--device {device!r}: not a torch device ({e})") from None
    if d.type == "cuda" and not torch.cuda.is_available():
        raise AdaptError(f"--device {device!r}: this torch ({torch.__version__}) sees no CUDA "
                         "device; use --device cpu")
    if d.type not in ("cpu", "cuda"):
        raise AdaptError(f"--device {device!r}: adapt trains on cpu or cuda")
    return str(d)


METHODS = ("layerwise", "sequential")


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise AdaptError(f"adapt method {method!r}: expected one of {', '.join(METHODS)}")


def adapt(model, conv, train_batches, val_batches, steps: int = 100,
          progress: bool = True, device: str = "cpu", method: str = "layerwise") -> list[dict]:
    """Adaptation of every analog attention, bottom up (ranges must be observed first).

    layerwise: each layer learns on the digital model's q, k, v and output at that layer.
    sequential (BRECQ's order): each layer learns on the q, k, v that the analog model
    below it, already adapted, hands it, towards the digital model's output there, so it
    can take up part of the error that the layers below leave (one extra forward per layer,
    stopped at the layer)."""
    _check_method(method)
    if not conv.attentions:
        raise AdaptError("nothing to adapt: no analog attention (analog = 'linear' or 'none')")
    train = capture(model, conv, train_batches)
    val = capture(model, conv, val_batches)
    items = list(conv.attentions.items())
    if progress:
        from tqdm import tqdm
        items = tqdm(items, desc=f"adapting layers ({method})", unit="layer")
    out = []
    for name, att in items:
        tr, va = train[name], val[name]
        if method == "sequential":
            tr = capture_inputs(model, conv, train_batches, name, tr)
            va = capture_inputs(model, conv, val_batches, name, va)
            att.reset_kv_cache()
        r = adapt_layer(att, tr, va, steps, device=device)
        att.reset_kv_cache()
        out.append({"layer": name, **r})
    return out


# ------------------------------------------------------------------ files
def check_file(doc: dict, model_name: str | None, config, path) -> None:
    """Refuse saved scalers made for another model (when `model_name` is given), attention
    readout or K/V cell (files without attention scalers: only the model)."""
    saved_cfg = doc.get("config", {})
    want, have = {}, {}
    if model_name is not None:
        want["model"], have["model"] = model_name, doc.get("model")
    if doc.get("attention"):
        for key, old in (("attn_readout", "hardsigmoid"), ("kv_cell", "gaincell_2t")):
            want[key] = getattr(config, key, old)
            have[key] = saved_cfg.get(key, old)     # files from before the key: its old value
    bad = [f"{k} {have[k]!r} (this run: {want[k]!r})" for k in want if have[k] != want[k]]
    if bad:
        raise AdaptError(f"{path}: made for another {', '.join(bad)}")


@dataclass
class AdaptResult:
    model: str
    path: Path
    metric: str
    digital: float
    before: float
    after: float
    layers: list
    seconds: float
    train_tokens: int
    val_tokens: int
    steps: int
    method: str = "layerwise"


def run(model_name: str, config, save_path, tokens: int = 1024, train_tokens: int = 512,
        val_tokens: int = 256, steps: int = 100, progress: bool = True,
        device: str = "cpu", method: str = "layerwise") -> AdaptResult:
    """Convert, observe ranges, adapt on held-out tokens that follow the evaluation text
    (train, then validation), report quality on the evaluation text before and after, save.
    Language models only. The per-layer training runs on `device` (the model and its tables
    stay on the CPU: the training tensors are copied over once per layer)."""
    device = check_device(device)
    _check_method(method)
    from . import calibrate, zoo
    from .convert import convert
    from .evaluate import nll, token_ids
    from .preflight import check_inputs
    check_inputs(config)   # tables and temperature before the model loads
    t0 = time.perf_counter()
    lm = zoo.load(model_name)
    if lm.task != "causal-lm":
        raise AdaptError(f"adapt evaluates perplexity: {model_name} is an {lm.task} model")
    analog, conv = convert(lm.model, config, progress=progress)
    ids = token_ids(lm.tokenizer, tokens)
    train = token_ids(lm.tokenizer, train_tokens, offset=tokens)
    val = token_ids(lm.tokenizer, val_tokens, offset=tokens + train_tokens)
    with conv.ledger.paused():
        calibrate.calibrate_ranges(analog, conv, train)
        digital = math.exp(nll(lm.model, ids).mean())
        before = math.exp(nll(analog, ids).mean())
        layers = adapt(analog, conv, train, val, steps, progress, device, method)
        after = math.exp(nll(analog, ids).mean())
    path = calibrate.save(save_path, conv, model_name,
                          {"metric": "perplexity", "method": method, "digital": digital,
                           "before": before, "after": after, "tokens": tokens,
                           "train_tokens": train_tokens, "val_tokens": val_tokens,
                           "train_offset": tokens, "steps": steps, "layers": layers})
    return AdaptResult(model_name, path, "perplexity", digital, before, after, layers,
                       time.perf_counter() - t0, train_tokens, val_tokens, steps, method)


def summary(r: AdaptResult) -> str:
    kept = sum(1 for x in r.layers if x["kept"])
    vb = sum(x["val_before"] for x in r.layers) / len(r.layers)
    va = sum(x["val_after"] for x in r.layers) / len(r.layers)
    return (f"{r.model}: perplexity digital {r.digital:.3f}; analog before adaptation "
            f"{r.before:.3f}, after {r.after:.3f} ({r.train_tokens} training + {r.val_tokens} "
            f"validation tokens after the evaluation text, {r.method}, {r.steps} steps per layer, "
            f"{kept}/{len(r.layers)} layers improved; held-out distillation MSE "
            f"{vb:.4g} -> {va:.4g}; {r.seconds:.0f} s)\nsaved {r.path}")
