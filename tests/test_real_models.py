"""The real models that install offline: SmolLM2-135M and all-MiniLM-L6-v2 on the shipped
tables, through the Python API and the CLI."""

import json
import math

import pytest
import torch

from cimlut.cli import main
from cimlut.models import HardwareConfig, convert, zoo
from cimlut.models.calibrate import calibrate_ranges
from cimlut.models.evaluate import nll, token_ids


@pytest.fixture(scope="module")
def smollm2():
    torch.set_num_threads(2)
    return zoo.load("smollm2")


def test_ideal_linear_smollm2_matches_digital(smollm2):
    """Ideal devices (linear, no spread, no quantization): perplexity within 0.5%."""
    ids = token_ids(smollm2.tokenizer, 128)
    analog, conv = convert(smollm2.model, HardwareConfig(analog="linear", ideal=True))
    assert len(conv.linears) == 30 * 7
    with conv.ledger.paused():
        calibrate_ranges(analog, conv, token_ids(smollm2.tokenizer, 64, offset=128))
    d, a = math.exp(nll(smollm2.model, ids).mean()), math.exp(nll(analog, ids).mean())
    assert abs(a / d - 1) < 0.005, (d, a)


def test_default_hardware_costs_quality_and_meters_every_part(smollm2):
    ids = token_ids(smollm2.tokenizer, 96)
    analog, conv = convert(smollm2.model, HardwareConfig())
    with conv.ledger.paused():
        calibrate_ranges(analog, conv, token_ids(smollm2.tokenizer, 64, offset=96))
    d = math.exp(nll(smollm2.model, ids).mean())
    a = math.exp(nll(analog, ids).mean())
    conv.ledger.count_tokens(ids.shape[1])
    assert math.isfinite(a) and a > d
    e = conv.ledger.per_token()["energy"]
    for kind in ("rram_read", "rram_adc", "rram_dac", "gc_write", "gc_read_qk", "gc_read_pv",
                 "attn_adc", "attn_pdac", "attn_digital", "attn_dac", "attn_control", "digital"):
        assert e[kind] > 0, kind                          # the default readout: softmax
    assert "c2p" not in e
    # Leroux et al.'s constants: control 4 nJ + DACs 330 pJ per phase (signed q: 2 phases)
    # per token per head; 9 heads, 30 layers
    assert e["attn_control"] + e["attn_dac"] == pytest.approx((4e-9 + 2 * 330e-12) * 9 * 30,
                                                              rel=1e-6)


def test_cli_run_minilm_writes_report_and_plots(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(["run", "--model", "minilm", "--sentences", "6", "--json", str(out),
                 "--out", str(tmp_path), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "embedding cosine" in text and "nJ" in text
    r = json.loads(out.read_text())
    assert r["quality"]["metric"] == "cosine" and 0.0 < r["quality"]["mean"] <= 1.0
    assert (tmp_path / "minilm_energy.png").stat().st_size > 5000
    assert r["energy"]["rram_read"] > 0 and r["energy"]["gc_read_qk"] > 0


def test_cli_names_bad_input(tmp_path, capsys):
    assert main(["run", "--model", "minilm", "--set", "windw=3"]) == 2
    assert "unknown key 'windw'; did you mean 'window'" in capsys.readouterr().err
    assert main(["run", "--model", str(tmp_path)]) == 2
    assert "neither a known model" in capsys.readouterr().err
    bad = tmp_path / "hw.toml"
    bad.write_text('adc_bits = "many"\n')
    assert main(["hardware", "--config", str(bad)]) == 2
    assert "adc_bits = 'many' should be a int" in capsys.readouterr().err


def test_cli_calibrate_then_run_with_the_saved_scalers(tmp_path, capsys):
    cal = tmp_path / "cal.json"
    assert main(["calibrate", "--model", "minilm", "--analog", "attention", "--tokens", "160",
                 "--calib-tokens", "160", "--passes", "1", "--save", str(cal), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "cosine digital 1.0000" in text and "after 1 matching passes" in text
    doc = json.loads(cal.read_text())
    assert doc["metric"] == "cosine" and len(doc["attention"]) == 6
    assert -1 <= doc["after"] <= 1
    assert main(["run", "--model", "minilm", "--analog", "attention", "--sentences", "5",
                 "--calibration", str(cal), "--json", str(tmp_path / "r.json"),
                 "--out", str(tmp_path), "--quiet"]) == 0
    # a calibration of attention only cannot stand in for analog linear layers
    assert main(["run", "--model", "minilm", "--analog", "both", "--sentences", "2",
                 "--calibration", str(cal), "--out", str(tmp_path), "--quiet"]) == 2
    assert "holds no linear calibration" in capsys.readouterr().err
