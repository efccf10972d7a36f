"""Calibration: converter ranges, and Leroux et al.'s per-layer, per-head affine scalers.

Ranges (`calibrate_ranges`): the ADC full scales and input ranges of every crossbar and the
default scalers of every gain-cell attention are observed on held-out tokens, then frozen.

Scalers (`calibrate`, the adaptation of Leroux et al. 2024/25, arXiv 2409.19315, before any
fine-tuning): for each layer and head, the output scaler (a, b) of the analog attention is
set so that its output's mean and standard deviation match those of the reference attention
fed the same q, k, v; passes repeat because each layer's inputs depend on the layers before
it. The reference is the attention the model was trained with: softmax for the models here
(Leroux et al. matched to their own trained linear HardSigmoid model). Range observation
already does one such matching per head on its batch, so the passes refine it. Saved as
JSON (plain lists per module) for `cimlut run --calibration`.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import __version__
from ..errors import CimlutError



class CalibrationError(CimlutError, ValueError):
    """A calibration file that does not fit the converted model, or nothing to calibrate."""


def _run_all(model, batches) -> None:
    with torch.no_grad():
        for ids in batches if isinstance(batches, list) else [batches]:
            model(ids)


def calibrate_ranges(model, conv, batches) -> None:
    """Observe every analog module's ranges on `batches` (token ids), then freeze them."""
    modules = list(conv.linears.values()) + list(conv.attentions.values())
    for m in modules:
        m.observe(True)
    try:
        _run_all(model, batches)
    finally:
        for m in modules:
            m.observe(False)


def _moments(stats: dict, key: str) -> tuple[torch.Tensor, torch.Tensor]:
    return stats[f"{key}_mean"], stats[f"{key}_std"]


def match_outputs(conv, model, batches, passes: int = 3, progress: bool = False) -> list[dict]:
    """Leroux's statistics matching on the attention outputs; returns per-pass mismatch."""
    history = []
    it = range(passes)
    if progress:
        from tqdm import tqdm
        it = tqdm(it, desc="calibration passes", unit="pass")
    for _ in it:
        for a in conv.attentions.values():
            a.recording, a.stats = True, {}
        _run_all(model, batches)
        mismatch, dead = [], 0
        for a in conv.attentions.values():
            a.recording = False
            raw_m, raw_s = _moments(a.stats, "raw")
            ref_m, ref_s = _moments(a.stats, "ref")
            # a head whose every readout is 0 has nothing to scale: it keeps its scalers
            ok = (raw_s > 0) & torch.isfinite(raw_s) & torch.isfinite(ref_s)
            scale = torch.where(ok, ref_s / raw_s.clamp_min(1e-30), a.out_scale.float())
            bias = torch.where(ok, ref_m - raw_m * scale, a.out_bias.float())
            a.out_scale.copy_(scale.to(a.out_scale.dtype))
            a.out_bias.copy_(bias.to(a.out_bias.dtype))
            dead += int((~ok).sum())
            out_m, out_s = _moments(a.stats, "out")
            mismatch.append(float(((out_s - ref_s).abs() / ref_s.clamp_min(1e-30)).mean()))
        history.append({"std_mismatch_before_pass": sum(mismatch) / max(len(mismatch), 1),
                        "heads_reading_zero": dead})
    return history


def state(conv) -> dict:
    """Every calibrated quantity, as plain lists per module name."""
    out = {"attention": {}, "linear": {}}
    for name, a in conv.attentions.items():
        out["attention"][name] = {k: v.tolist() for k, v in a.calibration_state().items()}
    for name, m in conv.linears.items():
        out["linear"][name] = {k: v.tolist() for k, v in m.calibration_state().items()}
    return out


def save(path: str | Path, conv, model_name: str, extra: dict | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"cimlut_version": __version__, "model": model_name, "config": conv.config.to_dict(),
           **(extra or {}), **state(conv)}
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    tmp.replace(path)
    return path


def read_calibration(path: str | Path) -> dict:
    """A calibration file saved by `save`, checked for form (not yet against a model): a
    missing, unreadable or malformed file is a CalibrationError naming it."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CalibrationError(f"{path}: no such calibration file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CalibrationError(f"{path}: cannot read the calibration file ({exc})") from None
    except json.JSONDecodeError as exc:
        raise CalibrationError(f"{path}: not a calibration file (not JSON: line {exc.lineno}, "
                               f"column {exc.colno}: {exc.msg}); write one with "
                               f"`cimlut calibrate --save`") from None
    if not isinstance(doc, dict) or "model" not in doc or not isinstance(doc.get("config"), dict):
        raise CalibrationError(f"{path}: not a calibration file (JSON without the model and "
                               f"config that `cimlut calibrate --save` writes)")
    for kind in ("attention", "linear"):
        mods = doc.get(kind, {})
        if not isinstance(mods, dict) or not all(
                isinstance(m, dict) and all(_numbers(v) for v in m.values())
                for m in mods.values()):
            raise CalibrationError(f"{path}: the {kind!r} entry is not a table of modules "
                                   f"holding numbers")
    return doc


def _numbers(value) -> bool:
    if isinstance(value, list):
        return all(_numbers(v) for v in value)
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def apply_calibration(model, conv, path: str | Path) -> None:
    """Load scalers and ranges saved by `save`; a module named in neither side is an error,
    and so is a file made for another attention readout or K/V cell."""
    doc = read_calibration(path)
    from .adapt import check_file
    check_file(doc, None, conv.config, path)
    for kind, mods in (("attention", conv.attentions), ("linear", conv.linears)):
        saved = doc.get(kind, {})
        if mods and not saved:
            raise CalibrationError(f"{path}: holds no {kind} calibration, but the model has "
                             f"{len(mods)} analog {kind} modules (calibrated with analog="
                             f"{doc.get('config', {}).get('analog')!r})")
        for name, m in mods.items():
            if name not in saved:
                raise CalibrationError(f"{path}: no calibration for {name} (calibrated for model "
                                 f"{doc.get('model')!r})")
            m.load_calibration_state({k: torch.tensor(v) for k, v in saved[name].items()})


@dataclass
class CalibrationResult:
    """Quality at each stage: perplexity (language models, lower is better) or mean cosine
    of sentence embeddings against the digital model's (embedding models, higher is better)."""
    model: str
    path: Path
    metric: str
    digital: float
    identity: float
    before: float
    after: float
    passes: list
    seconds: float


def _quality(lm, tokens: int, calib_tokens: int):
    """(quality function of a model, held-out calibration batches) for the model's task."""
    from . import zoo
    from .evaluate import embed, nll, token_ids
    if lm.task == "causal-lm":
        ids = token_ids(lm.tokenizer, tokens)
        held = token_ids(lm.tokenizer, calib_tokens, offset=tokens)
        return "perplexity", (lambda m: math.exp(nll(m, ids).mean())), held
    n = max(4, tokens // 32)
    sents = zoo.sentences(n)
    held = [lm.tokenizer(s, return_tensors="pt").input_ids
            for s in zoo.sentences(n + max(4, calib_tokens // 32))[n:]]
    ref = embed(lm.model, lm.tokenizer, sents)
    return "cosine", (lambda m: float((embed(m, lm.tokenizer, sents) * ref).sum(-1).mean())), held


def run(model_name: str, config, save_path: str | Path, tokens: int = 512,
        calib_tokens: int = 256, passes: int = 3, progress: bool = True) -> CalibrationResult:
    """Convert, set ranges, match statistics on held-out data, report quality on the
    evaluation data with identity output scalers, with the observed ranges, and after the
    matching passes; save. Language models: `tokens` of text; MiniLM: tokens/32 sentences."""
    from . import zoo
    from .convert import convert
    from .preflight import check_inputs
    check_inputs(config)
    t0 = time.perf_counter()
    lm = zoo.load(model_name)
    analog, conv = convert(lm.model, config, progress=progress)
    if not conv.attentions and not conv.linears:
        raise CalibrationError("nothing is analog (analog = 'none'): nothing to calibrate")
    metric, quality, held = _quality(lm, tokens, calib_tokens)
    with conv.ledger.paused():
        calibrate_ranges(analog, conv, held)
        digital = quality(lm.model)
        ranged = {n: a.calibration_state() for n, a in conv.attentions.items()}
        for a in conv.attentions.values():  # Leroux's "before": no output adaptation at all
            a.out_scale.fill_(1.0)
            a.out_bias.zero_()
        identity = quality(analog) if conv.attentions else float("nan")
        for n, a in conv.attentions.items():
            a.load_calibration_state(ranged[n])
        before = quality(analog)
        history = match_outputs(conv, analog, held, passes, progress) if conv.attentions else []
        after = quality(analog)
    path = save(save_path, conv, model_name, {"metric": metric, "digital": digital,
                                              "identity": identity, "before": before,
                                              "after": after, "tokens": tokens,
                                              "calib_tokens": calib_tokens})
    return CalibrationResult(model_name, path, metric, digital, identity, before, after,
                             history, time.perf_counter() - t0)


def summary(r: CalibrationResult) -> str:
    return (f"{r.model}: {r.metric} digital {r.digital:.4f}; analog with identity output "
            f"scalers {r.identity:.4f}, with observed ranges {r.before:.4f}, after "
            f"{len(r.passes)} matching passes {r.after:.4f} ({r.seconds:.0f} s)\n"
            f"saved {r.path}")
