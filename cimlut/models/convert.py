"""`convert(model, config)`: a copy of a Hugging Face model whose linear layers run on RRAM
crossbars and whose attention runs on gain cells, as `config.analog` says.

The original model is left untouched: it is the digital reference. Every module that stays
digital is metered (MACs and ops) into the same ledger, so energy per token covers the whole
model. Supported: Llama (SmolLM2), GPT-2, BERT (all-MiniLM-L6-v2).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import CimlutError
from .config import HardwareConfig
from .ledger import Ledger

# where each architecture keeps its blocks, linears and attention (names as HF writes them)
ARCHITECTURES = {
    "llama": dict(blocks="model.layers", attention="self_attn", causal=True,
                  linears=("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                           "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"),
                  head="lm_head"),
    "gpt2": dict(blocks="transformer.h", attention="attn", causal=True,
                 linears=("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"),
                 head="lm_head"),
    "bert": dict(blocks="encoder.layer", attention="attention.self", causal=False,
                 linears=("attention.self.query", "attention.self.key", "attention.self.value",
                          "attention.output.dense", "intermediate.dense", "output.dense"),
                 head=None),
}


class UnsupportedModelError(CimlutError, ValueError):
    """A model architecture the converter does not know."""


def architecture(model: nn.Module) -> str:
    kind = getattr(getattr(model, "config", None), "model_type", None)
    if kind not in ARCHITECTURES:
        raise UnsupportedModelError(
            f"cimlut cannot convert a model of type {kind!r} ({type(model).__name__}); "
            f"supported: {', '.join(ARCHITECTURES)}")
    return kind


def _get(root: nn.Module, dotted: str) -> nn.Module:
    for part in dotted.split("."):
        root = getattr(root, part)
    return root


def _set(root: nn.Module, dotted: str, module: nn.Module) -> None:
    parent, _, name = dotted.rpartition(".")
    setattr(_get(root, parent) if parent else root, name, module)


def _blocks(model: nn.Module, arch: dict) -> nn.ModuleList:
    path = arch["blocks"]
    try:
        return _get(model, path)
    except AttributeError:  # a bare backbone (LlamaModel, GPT2Model) lacks the first level
        if "." not in path:
            raise
        return _get(model, path.split(".", 1)[1])


def as_linear(module: nn.Module) -> nn.Linear:
    """nn.Linear itself, or GPT-2's Conv1D (weight stored transposed) as an nn.Linear."""
    if isinstance(module, nn.Linear):
        return module
    if type(module).__name__ == "Conv1D":
        w = module.weight.detach()
        lin = nn.Linear(w.shape[0], w.shape[1], bias=module.bias is not None)
        lin.weight.data = w.t().contiguous()
        if module.bias is not None:
            lin.bias.data = module.bias.detach().clone()
        return lin
    raise UnsupportedModelError(f"expected a linear layer, got {type(module).__name__}")


@dataclass
class Conversion:
    """What `convert` did: the analog modules by name, and one-time costs."""
    arch: str
    config: HardwareConfig
    ledger: Ledger
    linears: dict[str, nn.Module] = field(default_factory=dict)
    attentions: dict[str, nn.Module] = field(default_factory=dict)
    devices: list = field(default_factory=list)   # RramDevice, GainCellArrays
    program_energy: float = 0.0
    cells: int = 0

    def table_report(self) -> str:
        """Clamped (out-of-range) query counts of every device and table the converted
        modules read, or '' when every query was inside."""
        return "; ".join(r for r in (d.report() for d in self.devices) if r)


# ---------------------------------------------------------------- attention dispatch
def _cimlut_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0,
                      **kwargs):
    """HF attention interface: gain-cell attention where the module was converted, SDPA
    (the digital reference) elsewhere. Positions: keys are the whole cache (0..Tk-1), the
    queries its last Tq entries; inputs are single unpadded sequences."""
    analog = getattr(module, "cimlut_attention", None)
    if analog is None:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward
        return sdpa_attention_forward(module, query, key, value, attention_mask,
                                      scaling=scaling, dropout=dropout, **kwargs)
    tq, tk = query.shape[-2], key.shape[-2]
    k_pos = torch.arange(tk)
    q_pos = torch.arange(tk - tq, tk)
    if attention_mask is not None:
        from .attention import attention_mask as seen_by
        keep = attention_mask if attention_mask.dtype == torch.bool else attention_mask == 0
        if bool((seen_by(q_pos, k_pos, analog.causal) & ~keep).any()):
            raise ValueError(f"{analog.name}: the attention mask hides keys (padding?); gain-cell "
                             "attention takes one unpadded sequence per call")
    out = analog(query, key, value, q_pos, k_pos)
    return out.transpose(1, 2).contiguous(), None


_registered = False


def _register() -> None:
    global _registered
    if _registered:
        return
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask
    AttentionInterface.register("cimlut", _cimlut_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register("cimlut", sdpa_mask)
    _registered = True


def _set_attn_implementation(model: nn.Module, name: str) -> None:
    for m in model.modules():
        cfg = getattr(m, "config", None)
        if cfg is not None and hasattr(cfg, "_attn_implementation"):
            cfg._attn_implementation = name


# ---------------------------------------------------------------- digital metering
class _DigitalMeter:
    """Forward hooks that charge digital work to the ledger: MACs of layers left digital,
    attention MACs where attention stays digital, and elementwise ops per block."""

    def __init__(self, config: HardwareConfig, ledger: Ledger):
        self.c, self.ledger = config, ledger

    def _charge(self, macs: float, ops: float) -> None:
        e = macs * self.c.digital_mac_energy + ops * self.c.digital_op_energy
        self.ledger.add("digital", e, macs * self.c.digital_mac_time)

    def linear(self, module, inputs, output):
        """nn.Linear or GPT-2's Conv1D: one MAC per weight per token."""
        x = inputs[0]
        self._charge(x.numel() // x.shape[-1] * module.weight.numel(), 0)

    def attention(self, module, args, kwargs, output):
        h = kwargs.get("hidden_states", args[0] if args else None)
        if h is None:
            return
        tq = h.shape[-2]
        cache = kwargs.get("cache", kwargs.get("past_key_values"))
        tk = cache.get_seq_length(module.layer_idx) if cache is not None else tq
        heads = (getattr(module, "num_heads", None) or getattr(module, "num_attention_heads", None)
                 or module.config.num_attention_heads)
        d = h.shape[-1] // heads
        b = h.numel() // (h.shape[-1] * tq)
        macs = b * heads * d * 2 * tq * tk  # QK and PV (causal halves it; counted whole)
        self._charge(macs, b * heads * tq * tk * 4)  # softmax: ~4 ops per score

    def block(self, module, inputs, output):
        x = inputs[0] if inputs else None
        if isinstance(x, torch.Tensor):
            self._charge(0, x.numel() * 12)  # 2 norms, 2 residuals, activation


def convert(model: nn.Module, config: HardwareConfig | None = None, ledger: Ledger | None = None,
            *, progress: bool = False) -> tuple[nn.Module, Conversion]:
    """A converted copy of `model` and what was converted. `config.analog` chooses linear,
    attention, both, or none (everything digital, still metered)."""
    config = config or HardwareConfig()
    ledger = ledger or Ledger()
    kind = architecture(model)
    arch = ARCHITECTURES[kind]
    new = copy.deepcopy(model).eval()
    conv = Conversion(kind, config, ledger)
    meter = _DigitalMeter(config, ledger)
    blocks = _blocks(new, arch)
    do_linear = config.analog in ("linear", "both")
    do_attention = config.analog in ("attention", "both")

    if do_linear:
        from .crossbar import CrossbarLinear
        from .rram import RramDevice
        device = RramDevice(config)
        conv.devices.append(device)
    if do_attention:
        from .attention import GainCellAttention
        from .gaincell import GainCellArrays
        arrays = GainCellArrays(config)
        conv.devices.append(arrays)
        _register()
        _set_attn_implementation(new, "cimlut")

    it = enumerate(blocks)
    if progress:
        from tqdm import tqdm
        it = tqdm(list(it), desc=f"converting {kind} ({config.analog})", unit="block")
    for i, block in it:
        prefix = f"{arch['blocks']}.{i}"
        block.register_forward_hook(meter.block)
        for lname in arch["linears"]:
            src = _get(block, lname)
            if do_linear:
                name = f"{prefix}.{lname}"
                lin = CrossbarLinear.from_linear(as_linear(src), config, device, ledger, name=name)
                _set(block, lname, lin)
                conv.linears[name] = lin
            else:
                src.register_forward_hook(meter.linear)
        attn = _get(block, arch["attention"])
        if do_attention:
            cfg = new.config
            heads = cfg.num_attention_heads
            kv_heads = getattr(cfg, "num_key_value_heads", None) or heads
            head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
            ga = GainCellAttention(heads, kv_heads, head_dim, config, arrays, ledger,
                                   name=f"{prefix}.{arch['attention']}", causal=arch["causal"])
            attn.cimlut_attention = ga
            conv.attentions[f"{prefix}.{arch['attention']}"] = ga
        else:
            attn.register_forward_hook(meter.attention, with_kwargs=True)
    if arch["head"] and hasattr(new, arch["head"]):
        _get(new, arch["head"]).register_forward_hook(meter.linear)
    for lin in conv.linears.values():
        conv.program_energy += float(getattr(lin, "program_energy", 0.0))
        conv.cells += 2 * lin.in_features * lin.out_features  # a differential pair each
    return new, conv
