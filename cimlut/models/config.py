"""One flat, typed configuration for the analog hardware, each default with its source.

`HardwareConfig.load(path)` reads TOML or JSON; an unknown key, a wrong type or a value out
of its choices is an error that names it (and the file). Sources: Leroux et al. 2024/25,
arXiv 2409.19315 (gain-cell attention); Wang et al. 2024, arXiv 2410.15977 (memristor
crossbars); Horowitz, ISSCC 2014 "Computing's energy problem" (45 nm digital energies);
Murmann, "ADC Performance Survey 1997-2024" (Walden figure of merit); the shipped tables.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CimlutError
from ..paths import data_dir


class ConfigError(CimlutError, ValueError):
    """A configuration key that does not exist, or a value of the wrong type or choice."""


def _f(default, units: str, source: str, choices: tuple = (), range: tuple = (None, None)):
    """A config field: default, units, source, and the values it may take (`choices`, or
    `range` = (lo, hi) inclusive, None for open): a value outside is refused, not clamped.
    Ranges bound what the models can mean, not what a design would choose: crossbar
    converters of 1-16 bits (Murmann's survey has no fast ADC above 16; the attention
    readout's go to 24 for near-ideal checks), -40..125 degC (automotive grade;
    the tables' own temperature span is checked when they load), positive times, energies
    >= 0, at least two levels for any quantizer."""
    return field(default=default, metadata={"units": units, "source": source, "choices": choices,
                                            "range": range})


def _span(lo, hi) -> str:
    if lo is None:
        return f"<= {hi!r}"
    return f">= {lo!r}" if hi is None else f"{lo!r} .. {hi!r}"


@dataclass
class HardwareConfig:
    # what is analog
    analog: str = _f("both", "", "linear: RRAM crossbars (Wang); attention: gain cells (Leroux)",
                     ("linear", "attention", "both", "none"))
    # operating point and tables
    corner: str = _f("tt", "", "process corner of every table", ("tt", "ff", "ss", "sf", "fs"))
    temperature: float = _f(27.0, "degC", "operating temperature (tables span 0-85 C)", range=(-40.0, 125.0))
    tables_dir: str = _f("", "", "folder of rram_1t1r.h5, <kv_cell>.h5, <readout_cell>.h5; '' = shipped")
    out_of_range: str = _f("clamp", "", "table queries outside an axis: clamp and count, or raise",
                           ("clamp", "raise"))
    seed: int = _f(0, "", "seed of every sampled device spread", range=(0, 2**63 - 1))
    ideal: bool = _f(False, "", "linear devices, no spread, no decay, no level quantization "
                     "(ideal_levels keeps it): analog linear layers then equal the digital ones, "
                     "analog attention equals its readout's linear model (hardsigmoid: Leroux's "
                     "linear HardSigmoid model); the softmax readout's converters still quantize")

    # RRAM crossbars (every nn.Linear)
    tile_rows: int = _f(128, "", "Wang et al.: 128x128 computation crossbars", range=(1, 4096))
    tile_cols: int = _f(128, "", "Wang et al.: 128x128 computation crossbars", range=(2, 4096))
    weight_bits: int = _f(8, "bit", "Wang et al.: 8-bit weights", range=(1, 16))
    input_bits: int = _f(8, "bit", "Wang et al.: 8-bit activations", range=(1, 16))
    input_encoding: str = _f("pulse_width", "", "pulse_width: one read per input, duration "
                             "~ value (Leroux encodes Q so); bit_serial: 1-bit DAC, one read per "
                             "bit (Wang et al.)", ("pulse_width", "bit_serial"))
    signed_inputs: str = _f("two_phase", "", "every read is at +v_read (the read table spans "
                            "-0.1..0.3 V and is asymmetric): two_phase = positive then negative "
                            "parts, each converted; offset = inputs shifted to unsigned, one read, "
                            "digital correction by column sums (half the ADC energy, but the "
                            "common mode eats ADC range: SmolLM2 perplexity 264 vs 21 at 8 bits)",
                            ("two_phase", "offset"))
    input_scaling: str = _f("per_token", "", "per_token: the digital periphery scales each "
                            "input vector by its max |x| before the DACs and back after the ADCs "
                            "(aihwkit's abs_max noise management), so outlier channels of LLMs "
                            "neither clip nor crush the rest; per_layer: one calibrated range",
                            ("per_token", "per_layer"))
    adc_bits: int = _f(8, "bit", "Wang et al.: 8-bit activations out of each tile", range=(1, 16))
    adc_range_percentile: float = _f(99.99, "%", "ADC full scale per layer = this percentile of "
                                     "|tile column sum| seen in range calibration", range=(50.0, 100.0))
    g_min: float = _f(0.0, "S", "lowest weight conductance; 0 = derived from the rram_1t1r "
                      "program_verify table: the lowest target level from which up every "
                      "sample took at least two pulses (the verify loop, not the first SET "
                      "pulse, sets the level): 6.52e-6 S in the shipped table",
                      range=(0.0, 1e-3))
    g_max: float = _f(7.9e-5, "S", "rram_1t1r program_verify table: highest target level", range=(1e-9, 1e-3))
    v_read: float = _f(0.2, "V", "rram_1t1r program_verify: verify read at 0.2 V", range=(1e-3, 1.0))
    t_read: float = _f(10e-9, "s", "full-scale read pulse (one bit, or the largest input)", range=(1e-12, 1e-3))
    weight_spread: bool = _f(True, "", "program-and-verify spread from the Monte Carlo table")
    program_temperature: float = _f(27.0, "degC", "temperature at program-and-verify", range=(-40.0, 125.0))
    adc_time: float = _f(10e-9, "s", "per conversion; SAR class, stated assumption", range=(1e-12, 1e-3))
    adc_fom: float = _f(5e-15, "J/step", "Walden figure of merit of good SAR ADCs (Murmann survey)", range=(0.0, 1e-9))
    dac_energy_per_read: float = _f(50e-15, "J", "per row driver and read (pulse or bit); "
                                    "Leroux: 330 pJ per token per head of DACs over 1024x64 rows "
                                    "gives ~5 fJ per row per read; 50 fJ is conservative", range=(0.0, 1e-9))
    wire_row: float = _f(0.0, "ohm", "row (bit line: input) wire resistance per cell segment, "
                         "the driver at column 0 (cimlut/models/parasitics.py); 0 = ideal wire. "
                         "sky130 met1 at minimum width 0.14 um: 0.125 ohm/sq = 0.89 ohm/um, so "
                         "0.89 ohm at a 1 um cell pitch; NeuroSim's minimum-width wires 0.3 "
                         "(130 nm) to 1.6 (22 nm) ohm per cell. Default 0: on, it moves every "
                         "shipped figure; set 0.89 for sky130", range=(0.0, 1e4))
    wire_col: float = _f(0.0, "ohm", "column (source line: readout) wire resistance per cell "
                         "segment, the readout below the last row; 0 = ideal wire. sky130 met1 "
                         "0.89 ohm at a 1 um pitch; NeuroSim 0.9 (130 nm) to 4.7 (22 nm) ohm "
                         "per cell. Default 0, as wire_row", range=(0.0, 1e4))
    clamp_resistance: float = _f(0.0, "ohm", "input resistance of each column's readout "
                                 "clamp: 0 = ideal virtual ground; a transimpedance amplifier "
                                 "of feedback R_f and open-loop gain A presents R_f / (1 + A)",
                                 range=(0.0, 1e6))

    # gain-cell attention
    window: int = _f(1024, "token", "Leroux et al.: sliding window of 1024 tokens", range=(1, 1 << 20))
    subtile: int = _f(64, "token", "Leroux et al.: 64x64 arrays, 16 sub-tiles per head", range=(1, 4096))
    q_levels: int = _f(64, "", "Q as pulse width: measured ablation (SmolLM2, softmax, "
                       "64 K/V levels, 1024 tokens, gaincell_pp tables as built before shipping: "
                       "perplexity 14.20 at 16 levels, 13.57 at 64; digital 12.74; shipped "
                       "tables at 64: 14.34); Leroux et al. use 16", range=(2, 1 << 16))
    q_signed: bool = _f(True, "", "two phases (positive, then negative part with the columns "
                        "swapped) give signed Q; Leroux uses Q in [0,1] only")
    kv_levels: int = _f(64, "", "stored K/V write levels: measured ablation (SmolLM2, softmax, "
                        "1024 tokens; linear cells, 256 q levels: 23.6 at 16, 14.4 at 32, 12.94 "
                        "at 64; gaincell_pp as built before shipping: 14.83 at 32 (16 q levels), "
                        "13.57 at 64 (64 q levels); digital 12.74); Leroux et al. use 8",
                        range=(2, 1 << 16))
    kv_cell: str = _f("gaincell_pp", "", "the K/V gain cell: its tables <kv_cell>.h5 (groups write, "
                      "retention, read) give the write range, mid-level and signed-product "
                      "convention (attributes); gaincell_pp: linear push-pull cell, 0.45-1.35 V "
                      "about 0.9 V; gaincell_2t: Leroux et al.'s 2T cell, 0-0.9 V about 0.45 V "
                      "with a reference column (subthreshold read: exponential)")
    readout_cell: str = _f("charge_to_pulse", "", "the column readout circuit: its table "
                           "<readout_cell>.h5, group transfer (qin -> tpulse, econv)")
    out_levels: int = _f(32, "", "Leroux et al.: output 32 levels in [-1,1] per 64-token tile", range=(2, 1 << 16))
    t_max: float = _f(15e-9, "s", "Leroux et al.: HardSigmoid saturation T_max = 15 ns", range=(1e-12, 1e-3))
    token_period: float = _f(65e-9, "s", "Leroux et al.: 65 ns latency per token", range=(1e-12, 1.0))
    decay: bool = _f(True, "", "stored K/V leak with token age (retention table)")
    attn_control_energy: float = _f(4e-9, "J/token/head", "Leroux et al.: digital control 4 nJ", range=(0.0, 1e-3))
    attn_dac_energy: float = _f(330e-12, "J/token/head", "Leroux et al.: DACs 330 pJ", range=(0.0, 1e-3))
    kv_predistort: bool = _f(False, "", "write predistortion: K/V write levels chosen through "
                             "the inverse of the cell's read charge at t_max (its tables at the "
                             "operating corner and temperature), so the fresh multiply is "
                             "linear in the level; off: levels evenly spaced in write voltage")
    ideal_levels: bool = _f(False, "", "with ideal = true, attention q, k and v still take "
                            "q_levels / kv_levels levels on linear cells (the levels ablation)")
    kv_per_channel: bool = _f(True, "", "K and V written with one scale per channel (the "
                              "periphery multiplies before the write DACs, D mults per token "
                              "each; q takes the inverse K scales, outputs are divided by the V "
                              "scales): K balanced against q as SmoothQuant (Xiao et al. 2023, "
                              "migration 0.5), V channels to a common range. hardsigmoid keeps "
                              "Leroux's per-head scalers")
    channel_headroom: float = _f(1.25, "", "with kv_per_channel: q, k, v full scales = this x "
                                 "the largest value seen in range observation (each channel's "
                                 "range is exceeded on new text; SmolLM2 softmax, ideal devices, "
                                 "1024 tokens: perplexity 13.24 at 1.0, 12.96 at 1.25)",
                                 range=(1.0, 4.0))
    # attention readouts (cimlut/models/readouts.py)
    attn_readout: str = _f("softmax", "", "softmax: Q.K column ADCs, digital softmax, "
                           "probabilities as V pulse widths, tile output ADCs (X-Former: 8-bit "
                           "SAR after Q.K; works on pretrained models); hardsigmoid: Leroux et "
                           "al.'s ADC-free charge-to-pulse phi(S), unnormalised (needs a model "
                           "trained for it); hardsigmoid_norm: the same plus one column of "
                           "constant cells per V array, outputs divided by its charge",
                           ("softmax", "hardsigmoid", "hardsigmoid_norm"))
    score_bits: int = _f(8, "bit", "softmax readout: Q.K column ADC (X-Former: 8-bit SAR; "
                         "SageAttention: 8-bit Q.K loses almost nothing)", range=(2, 24))
    prob_bits: int = _f(8, "bit", "softmax readout: probability pulse-width DAC into the V "
                        "arrays, each row scaled by its maximum first", range=(1, 24))
    softmax_out_bits: int = _f(8, "bit", "softmax readout: output ADC per sub-tile and column",
                               range=(2, 24))
    exp_energy: float = _f(18.4e-12, "J", "one fp32 exp: range reduction and a degree-4 "
                           "polynomial, 4 fp32 mult (3.7 pJ) + 4 fp32 add (0.9 pJ), Horowitz "
                           "ISSCC 2014, 45 nm", range=(0.0, 1e-6))
    mult_energy: float = _f(3.7e-12, "J", "fp32 mult, Horowitz ISSCC 2014, 45 nm",
                            range=(0.0, 1e-6))
    div_energy: float = _f(22.2e-12, "J", "one fp32 reciprocal: 3 Newton steps of 2 fp32 "
                           "mult (3.7 pJ, Horowitz ISSCC 2014, 45 nm)", range=(0.0, 1e-6))

    # digital parts (norms, residuals, embeddings, softmax where attention stays digital)
    digital_mac_energy: float = _f(0.23e-12, "J", "Horowitz ISSCC 2014, 45 nm: 8-bit int "
                                   "mult 0.2 pJ + add 0.03 pJ (8-bit activations, Wang et al.); "
                                   "fp32 would be 4.6 pJ", range=(0.0, 1e-6))
    digital_op_energy: float = _f(0.9e-12, "J", "Horowitz ISSCC 2014, 45 nm: fp32 add 0.9 pJ", range=(0.0, 1e-6))
    digital_mac_time: float = _f(1e-12, "s", "per MAC for digital matmuls (1 TMAC/s engine), "
                                 "stated assumption", range=(0.0, 1e-3))

    # ------------------------------------------------------------------ helpers
    @classmethod
    def fields(cls) -> dict[str, dataclasses.Field]:
        return {f.name: f for f in dataclasses.fields(cls)}

    def __post_init__(self):
        """Every field of the right type and among its choices, however the config was made
        (ints are taken for floats)."""
        for name, f in self.fields().items():
            value, want = getattr(self, name), type(f.default)
            if want is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
                setattr(self, name, value)
            if not isinstance(value, want) or (want is int and isinstance(value, bool)):
                raise ConfigError(f"{name} = {value!r} should be a {want.__name__}")
            choices = f.metadata["choices"]
            if choices and value not in choices:
                raise ConfigError(f"{name} = {value!r}, expected one of {', '.join(choices)}")
            lo, hi = f.metadata.get("range", (None, None))
            if want in (int, float) and (value != value or (lo is not None and value < lo)
                                         or (hi is not None and value > hi)):
                units = f" {f.metadata['units']}" if f.metadata["units"] else ""
                raise ConfigError(f"{name} = {value!r}{units} is out of range: expected "
                                  f"{_span(lo, hi)}{units}")
        if self.g_min >= self.g_max:
            raise ConfigError(f"g_min = {self.g_min!r} S must be below g_max = {self.g_max!r} S")

    @classmethod
    def from_dict(cls, data: dict, where: str = "config") -> "HardwareConfig":
        known = cls.fields()
        for key in data:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ConfigError(f"{where}: unknown key {key!r}{hint}")
        try:
            return cls(**data)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None

    @classmethod
    def parse(cls, key: str, text: str):
        """A value written as text (`--set key=text`) as the field's type; an unknown key is
        left to `from_dict`, which names it."""
        f = cls.fields().get(key)
        if f is None:
            return text
        want = type(f.default)
        if want is bool:
            words = {"true": True, "yes": True, "on": True, "1": True,
                     "false": False, "no": False, "off": False, "0": False}
            if text.lower() not in words:
                raise ConfigError(f"{key} = {text!r} should be true or false")
            return words[text.lower()]
        if want is str:
            return text
        try:
            return want(text)
        except ValueError:
            raise ConfigError(f"{key} = {text!r} should be a {want.__name__}") from None

    @classmethod
    def load(cls, path: str | Path) -> "HardwareConfig":
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read the hardware config ({exc})") from None
        try:
            data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: "
                              f"{exc.msg})") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc}); a JSON config needs the "
                              f".json suffix") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: a hardware config is a table of KEY = VALUE, "
                              f"not a {type(data).__name__}")
        if isinstance(data.get("hardware"), dict):
            others = sorted(k for k in data if k != "hardware")
            if others:
                raise ConfigError(f"{path}: keys {', '.join(others)} stand outside the "
                                  f"[hardware] table and would be ignored; put every key in "
                                  f"[hardware], or drop the [hardware] header")
            data = data["hardware"]
        return cls.from_dict(data, where=str(path))

    def replace(self, **changes) -> "HardwareConfig":
        return self.from_dict({**self.to_dict(), **changes}, where="--set")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def tables_folder(self) -> Path:
        """Where the device tables are read: `tables_dir`, or the shipped ones."""
        return Path(self.tables_dir) if self.tables_dir else data_dir() / "tables"

    def describe(self) -> str:
        rows = []
        for name, f in self.fields().items():
            lo, hi = f.metadata["range"]
            span = f" [{_span(lo, hi)}]" if (lo, hi) != (None, None) else ""
            rows.append(f"{name:22s} = {getattr(self, name)!r:14} {f.metadata['units']:13s} "
                        f"{f.metadata['source']}{span}")
        return "\n".join(rows)
