"""The same model, hardware and text with each attention readout: one line per readout
(quality, and the attention's energy per token per head from the ledger).

`cimlut readouts` prints them; `make demo` runs it after the full report.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import zoo
from .config import ConfigError, HardwareConfig
from .readouts import READOUTS

# ledger kinds spent by analog attention (gain cells, converters, its digital periphery)
ATTENTION_KINDS = ("gc_write", "gc_read_qk", "gc_read_pv", "c2p", "attn_adc", "attn_pdac",
                   "attn_digital", "attn_dac", "attn_control")


@dataclass
class ReadoutLine:
    readout: str
    metric: str          # perplexity (lower is better) or cosine (higher is better)
    digital: float
    analog: float
    energy: float        # J per token per head, attention kinds only
    latency: float       # s per token, attention kinds only (critical path)


def attention_heads(model) -> int:
    """Attention heads over all layers of a Hugging Face model (layers x heads)."""
    c = model.config
    layers = getattr(c, "num_hidden_layers", None) or getattr(c, "n_layer")
    heads = getattr(c, "num_attention_heads", None) or getattr(c, "n_head")
    return int(layers) * int(heads)


def compare(model_name: str, config: HardwareConfig, readouts=None, tokens: int = 1024,
            sentences: int = 32, progress: bool = True) -> list[ReadoutLine]:
    """Evaluate `model_name` once per readout (all registered ones by default) with
    `config` otherwise unchanged. Ranges are observed on held-out tokens for each, as
    `cimlut run` does; nothing is adapted."""
    from .evaluate import run
    if config.analog not in ("attention", "both"):
        raise ConfigError(f"readouts are compared on analog attention, but analog = "
                          f"{config.analog!r}; use --analog attention or both")
    names = list(readouts or READOUTS)
    unknown = [n for n in names if n not in READOUTS]
    if unknown:
        raise ConfigError(f"unknown attention readout(s) {', '.join(unknown)}; known: "
                          f"{', '.join(sorted(READOUTS))}")
    from .preflight import check_inputs
    check_inputs(config)   # tables and temperature before the model loads
    lm = zoo.load(model_name)
    heads = attention_heads(lm.model)
    it = names
    if progress:
        from tqdm import tqdm
        it = tqdm(names, desc="readouts", unit="readout")
    lines = []
    for name in it:
        rep = run(model_name, config.replace(attn_readout=name), tokens=tokens, decode_steps=0,
                  sentences=sentences, progress=False, loaded=lm)
        q = rep.quality
        digital, analog = ((q["digital"], q["analog"]) if q["metric"] == "perplexity"
                           else (1.0, q["mean"]))
        e = sum(rep.energy.get(k, 0.0) for k in ATTENTION_KINDS) / heads
        t = sum(rep.latency.get(k, 0.0) for k in ATTENTION_KINDS)
        lines.append(ReadoutLine(name, q["metric"], digital, analog, e, t))
    return lines


def format_lines(lines: list[ReadoutLine], config: HardwareConfig) -> str:
    rows = [f"attention readouts (analog = {config.analog}, kv_cell = "
            f"{getattr(config, 'kv_cell', 'gaincell_2t')}, ideal = {config.ideal}):"]
    for ln in lines:
        if ln.metric == "perplexity":
            q = f"perplexity {ln.analog:12.3f} ({ln.analog / ln.digital:8.3f}x digital {ln.digital:.3f})"
        else:
            q = f"cosine     {ln.analog:12.4f}"
        rows.append(f"  {ln.readout:17s} {q}   attention {ln.energy * 1e9:8.3f} nJ/token/head, "
                    f"{ln.latency * 1e9:9.1f} ns/token")
    return "\n".join(rows)
