"""Digital vs analog quality, and energy and latency per token, of one model on offline text.

Quality: perplexity for language models; cosine similarity of sentence embeddings for
embedding models (BERT). Energy and latency: the ledger of the analog run, prefill and a
short decode with the KV cache. Converter ranges (ADC full scales, attention scalers) are
set on held-out tokens that follow the evaluation text, never on the text itself.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import UsageError
from . import zoo
from .calibrate import apply_calibration, calibrate_ranges
from .config import HardwareConfig
from .convert import convert
from .ledger import Ledger
from .preflight import check_inputs


@dataclass
class RunReport:
    model: str
    task: str
    analog: str
    tokens: int
    quality: dict
    energy: dict = field(default_factory=dict)
    latency: dict = field(default_factory=dict)
    decode: dict = field(default_factory=dict)
    out_of_range: str = ""
    program_energy: float = 0.0
    cells: int = 0
    seconds: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=2, default=float)


def token_ids(tokenizer, n: int, offset: int = 0) -> torch.Tensor:
    ids = tokenizer(zoo.text(), return_tensors="pt").input_ids
    if ids.shape[1] < offset + n:
        raise ValueError(f"the pydoc text has {ids.shape[1]} tokens, fewer than {offset + n}")
    return ids[:, offset:offset + n]


@torch.no_grad()
def nll(model, ids: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood of each next token (nats), shape (T-1,)."""
    logits = model(ids).logits[0, :-1].float()
    return F.cross_entropy(logits, ids[0, 1:], reduction="none")


@torch.no_grad()
def embed(model, tokenizer, sentences: list[str]) -> torch.Tensor:
    """Mean-pooled, normalised sentence embeddings, one sentence at a time (no padding)."""
    out = []
    for s in sentences:
        enc = tokenizer(s, return_tensors="pt")
        h = model(**enc).last_hidden_state[0]
        out.append(F.normalize(h.mean(0), dim=0))
    return torch.stack(out)


@torch.no_grad()
def decode(model, ids: torch.Tensor, steps: int, ledger: Ledger) -> torch.Tensor:
    """Greedy decoding with the KV cache: prefill `ids`, then `steps` tokens in decode phase."""
    out = model(ids, use_cache=True)
    cache = out.past_key_values
    nxt = out.logits[:, -1:].argmax(-1)
    generated = [nxt]
    with ledger.in_phase("decode"):
        for _ in range(steps):
            out = model(nxt, cache=cache, use_cache=True)
            ledger.count_tokens(1)
            cache = out.past_key_values
            nxt = out.logits[:, -1:].argmax(-1)
            generated.append(nxt)
    return torch.cat(generated, 1)


def run(model_name: str = "smollm2", config: HardwareConfig | None = None, tokens: int = 1024,
        calibration: str | Path | None = None, range_tokens: int = 256, decode_steps: int = 4,
        sentences: int = 32, progress: bool = True, loaded: zoo.LoadedModel | None = None
        ) -> RunReport:
    """The end-to-end job: the digital reference and its analog conversion on the same
    text, with the analog run's ledger."""
    config = config or HardwareConfig()
    if tokens < 2 or sentences < 1 or decode_steps < 0 or range_tokens < 2:
        raise UsageError(f"tokens={tokens} (>= 2: perplexity predicts the next token), "
                         f"sentences={sentences} (>= 1), decode_steps={decode_steps} (>= 0), "
                         f"range_tokens={range_tokens} (>= 2)")
    check_inputs(config, calibration)
    t0 = time.perf_counter()
    lm = loaded or zoo.load(model_name)
    seconds = {"load": time.perf_counter() - t0}
    ledger = Ledger()
    t0 = time.perf_counter()
    analog, conv = convert(lm.model, config, ledger, progress=progress)
    seconds["convert"] = time.perf_counter() - t0
    report = RunReport(lm.name, lm.task, config.analog, tokens, {}, config=config.to_dict(),
                       program_energy=conv.program_energy, cells=conv.cells)

    t0 = time.perf_counter()
    if lm.task == "causal-lm":
        ids = token_ids(lm.tokenizer, tokens)
        held_out = token_ids(lm.tokenizer, range_tokens, offset=tokens)
        with ledger.paused():
            calibrate_ranges(analog, conv, held_out)
            if calibration:
                apply_calibration(analog, conv, calibration)
        seconds["ranges"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        d = nll(lm.model, ids)
        seconds["digital"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        a = nll(analog, ids)
        ledger.count_tokens(ids.shape[1])
        seconds["analog"] = time.perf_counter() - t0
        report.quality = {"metric": "perplexity", "digital": math.exp(d.mean()),
                          "analog": math.exp(a.mean()),
                          "nll_digital": d.tolist(), "nll_analog": a.tolist()}
        if decode_steps:
            t0 = time.perf_counter()
            decode(analog, ids[:, -min(tokens, 256):], decode_steps, ledger)
            seconds["decode"] = time.perf_counter() - t0
            report.decode = ledger.per_token("decode")
    else:
        sents = zoo.sentences(sentences)
        held = zoo.sentences(sentences + 16)[sentences:]
        with ledger.paused():
            calibrate_ranges(analog, conv, [lm.tokenizer(s, return_tensors="pt").input_ids
                                            for s in held])
            if calibration:
                apply_calibration(analog, conv, calibration)
        seconds["ranges"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        d = embed(lm.model, lm.tokenizer, sents)
        seconds["digital"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        n_tok = sum(len(lm.tokenizer(s).input_ids) for s in sents)
        a = embed(analog, lm.tokenizer, sents)
        ledger.count_tokens(n_tok)
        seconds["analog"] = time.perf_counter() - t0
        cos = (d * a).sum(-1)
        report.tokens = n_tok
        report.quality = {"metric": "cosine", "mean": float(cos.mean()), "min": float(cos.min()),
                          "per_sentence": cos.tolist(), "sentences": len(sents)}
    pt = ledger.per_token("prefill")
    report.energy, report.latency = pt["energy"], pt["latency"]
    report.out_of_range = conv.table_report()
    report.seconds = seconds
    return report


def summary(r: RunReport) -> str:
    q = r.quality
    rows = [f"{r.model} ({r.task}), analog = {r.analog}, {r.tokens} tokens"]
    if q["metric"] == "perplexity":
        ratio = q["analog"] / q["digital"]
        change = f"{100 * (ratio - 1):+.2f}%" if ratio < 2 else f"{ratio:,.1f}x"
        rows.append(f"  perplexity   digital {q['digital']:10.3f}   analog {q['analog']:10.3f}   "
                    f"({change})")
    else:
        rows.append(f"  embedding cosine (analog vs digital) mean {q['mean']:.4f}  "
                    f"min {q['min']:.4f}  over {q['sentences']} sentences")
    from .ledger import KINDS
    rows.append("  energy and latency per token (prefill):")
    for k in KINDS:
        if k in r.energy:
            rows.append(f"    {k:13s} {r.energy[k] * 1e9:12.3f} nJ  {r.latency.get(k, 0) * 1e9:9.2f} ns"
                        f"   {KINDS[k]}")
    rows.append(f"    {'total':13s} {sum(r.energy.values()) * 1e9:12.3f} nJ  "
                f"{sum(r.latency.values()) * 1e9:9.2f} ns")
    if r.decode:
        rows.append(f"  decode (KV cache, {r.decode['tokens']} tokens): "
                    f"{r.decode['energy_total'] * 1e9:.3f} nJ/token, "
                    f"{r.decode['latency_total'] * 1e9:.2f} ns/token")
    if r.cells:
        rows.append(f"  programming {r.cells:,} RRAM cells once: {r.program_energy * 1e3:.3f} mJ")
    rows.append(f"  table queries out of range: {r.out_of_range or 'none'}")
    rows.append("  wall time: " + ", ".join(f"{k} {v:.1f} s" for k, v in r.seconds.items()))
    return "\n".join(rows)


def plots(r: RunReport, out: Path) -> list[Path]:
    """Energy and latency per token by part; per-token loss (LM) or per-sentence cosine."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    fig, axs = plt.subplots(1, 2, figsize=(11, 4))
    kinds = list(r.energy)
    axs[0].barh(kinds, [r.energy[k] * 1e9 for k in kinds], color="tab:orange")
    axs[0].set_xlabel("energy per token [nJ]")
    axs[0].set_xscale("log")
    axs[1].barh(kinds, [r.latency.get(k, 0) * 1e9 for k in kinds], color="tab:blue")
    axs[1].set_xlabel("latency per token [ns]")
    fig.suptitle(f"{r.model}: analog = {r.analog}, {r.tokens} tokens (prefill)")
    fig.tight_layout()
    paths.append(out / f"{r.model}_energy.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    q = r.quality
    fig, ax = plt.subplots(figsize=(7, 4))
    if q["metric"] == "perplexity":
        ax.hist([q["nll_digital"], q["nll_analog"]], bins=40, label=["digital", "analog"])
        ax.set_xlabel("negative log-likelihood per token [nats]")
        ax.set_ylabel("tokens")
        ax.set_title(f"perplexity: digital {q['digital']:.2f}, analog {q['analog']:.2f}")
        ax.legend()
    else:
        ax.plot(q["per_sentence"], "o")
        ax.set_xlabel("sentence")
        ax.set_ylabel("cosine(analog, digital)")
        ax.set_title(f"{r.model}: mean cosine {q['mean']:.4f}")
    fig.tight_layout()
    paths.append(out / f"{r.model}_quality.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths
