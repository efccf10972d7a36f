"""Energy and latency ledger: what each kind of operation cost, per token, prefill vs decode.

Modules add totals (joules, and seconds on the per-token critical path multiplied by the
tokens they processed); the harness counts tokens. Per-token figures are totals divided
by tokens of the same phase.
"""

from __future__ import annotations

from collections import defaultdict
from contextlib import contextmanager

import torch

PHASES = ("prefill", "decode")

# op kinds, in the order reports list them
KINDS = {
    "rram_read": "RRAM crossbar reads (tables: rram_1t1r.read)",
    "rram_dac": "crossbar row drivers (stated constant)",
    "rram_adc": "crossbar column ADCs (Walden FoM x 2^bits)",
    "gc_write": "gain-cell K/V writes (tables: <kv_cell>.write)",
    "gc_read_qk": "gain-cell Q.K reads (tables: <kv_cell>.read)",
    "gc_read_pv": "gain-cell phi(S).V reads (tables: <kv_cell>.read)",
    "c2p": "charge-to-pulse conversions (tables: charge_to_pulse.transfer)",
    "attn_adc": "softmax readout: Q.K column and tile output ADCs (Walden FoM x 2^bits)",
    "attn_pdac": "softmax readout: probability pulse-width DACs (dac_energy_per_read)",
    "attn_digital": "attention readout digital math: exp, max, sums, divides (Horowitz 2014)",
    "attn_dac": "attention DACs (Leroux et al.)",
    "attn_control": "attention digital control (Leroux et al.)",
    "digital": "digital MACs and ops (Horowitz 2014)",
}


class Ledger:
    def __init__(self):
        self.phase = "prefill"
        self.energy: dict[tuple[str, str], float] = defaultdict(float)
        self.latency: dict[tuple[str, str], float] = defaultdict(float)
        self.tokens: dict[str, int] = defaultdict(int)
        self.enabled = True

    def add(self, kind: str, joules, seconds=0.0) -> None:
        """Add energy (J, total over the tokens processed) and critical-path time (s, per
        token times the tokens processed) of one kind of operation."""
        if not self.enabled:
            return
        if kind not in KINDS:
            raise KeyError(f"unknown ledger kind {kind!r}; known: {', '.join(KINDS)}")
        if isinstance(joules, torch.Tensor):
            joules = float(joules.detach().sum())
        self.energy[self.phase, kind] += float(joules)
        self.latency[self.phase, kind] += float(seconds)

    def count_tokens(self, n: int) -> None:
        if self.enabled:
            self.tokens[self.phase] += int(n)

    @contextmanager
    def in_phase(self, phase: str):
        if phase not in PHASES:
            raise ValueError(f"phase {phase!r}: expected one of {PHASES}")
        old, self.phase = self.phase, phase
        try:
            yield self
        finally:
            self.phase = old

    @contextmanager
    def paused(self):
        old, self.enabled = self.enabled, False
        try:
            yield self
        finally:
            self.enabled = old

    def reset(self) -> None:
        self.energy.clear()
        self.latency.clear()
        self.tokens.clear()

    def per_token(self, phase: str = "prefill") -> dict:
        """{'energy': {kind: J/token}, 'latency': {kind: s/token}, 'energy_total',
        'latency_total', 'tokens'} for one phase."""
        n = self.tokens.get(phase, 0)
        e = {k: self.energy[phase, k] / n for k in KINDS if n and (phase, k) in self.energy}
        t = {k: self.latency[phase, k] / n for k in KINDS if n and (phase, k) in self.latency}
        return {"tokens": n, "energy": e, "latency": t,
                "energy_total": sum(e.values()), "latency_total": sum(t.values())}
