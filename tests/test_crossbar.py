"""RRAM crossbar layers: exact when ideal, each non-ideality in its physical direction."""

import pytest
import torch
from torch import nn

from cimlut.models.config import HardwareConfig
from cimlut.models.crossbar import CrossbarLinear, ranges_from_data
from cimlut.models.ledger import Ledger
from cimlut.models.rram import RramDevice, tables_path
from cimlut.models.table import OutOfRangeError, Table

IN, OUT, TOKENS = 200, 48, 64


def config(**kw) -> HardwareConfig:
    return HardwareConfig(tile_rows=64, **kw)


@pytest.fixture
def layer():
    torch.manual_seed(0)
    return nn.Linear(IN, OUT)


@pytest.fixture
def x():
    torch.manual_seed(1)
    return torch.randn(TOKENS, IN)


def convert(linear, cfg, ledger=None, name="blocks.0.mlp"):
    return CrossbarLinear.from_linear(linear, cfg, RramDevice(cfg), ledger, name)


@torch.no_grad()
def run(linear, cfg, x, ledger=None):
    m = convert(linear, cfg, ledger)
    with ranges_from_data(m):
        m(x)
    return m(x)


def rel_err(y, ref) -> float:
    return float((y - ref).norm() / ref.norm())


@pytest.mark.parametrize("encoding,signed", [("pulse_width", "two_phase"),
                                             ("pulse_width", "offset"),
                                             ("bit_serial", "two_phase")])
def test_ideal_equals_linear(layer, encoding, signed):
    torch.manual_seed(2)
    x = torch.randn(3, 5, IN)
    m = convert(layer, config(ideal=True, input_encoding=encoding, signed_inputs=signed), Ledger())
    with torch.no_grad():
        torch.testing.assert_close(m(x), layer(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("knob", ["weight_bits", "input_bits", "adc_bits"])
def test_more_bits_smaller_error(layer, x, knob):
    ref = layer(x).detach()
    errs = [rel_err(run(layer, config(weight_spread=False, **{"weight_bits": 12, "input_bits": 12,
                                                              "adc_bits": 14, knob: b}), x), ref)
            for b in (3, 5, 8)]
    assert errs[0] > errs[1] > errs[2] > 0
    assert errs[0] > 0.05


def test_spread_adds_error(layer, x):
    ref = layer(x).detach()
    off = rel_err(run(layer, config(weight_spread=False), x), ref)
    on = rel_err(run(layer, config(weight_spread=True), x), ref)
    assert on > 1.5 * off


def test_hot_read_shrinks_weights(layer, x):
    cold = convert(layer, config(weight_spread=False, temperature=27.0))
    hot = convert(layer, config(weight_spread=False, temperature=85.0))
    shrink = hot.effective_weight.abs().sum() / cold.effective_weight.abs().sum()
    assert 0.95 < shrink < 0.999  # the table's I-V loses ~1% between 27 and 85 C
    y_cold, y_hot = run(layer, cold.config, x), run(layer, hot.config, x)
    assert not torch.equal(y_cold, y_hot)


def test_seed_and_name_pick_the_devices(layer):
    a = convert(layer, config(seed=1)).weight_cond
    assert torch.equal(a, convert(layer, config(seed=1)).weight_cond)
    assert not torch.equal(a, convert(layer, config(seed=2)).weight_cond)
    other = CrossbarLinear.from_linear(layer, config(seed=1), RramDevice(config()), None, "x")
    assert not torch.equal(a, other.weight_cond)


def test_programmed_spread_matches_table():
    cfg = config()
    dev = RramDevice(cfg)
    pv = Table.load(tables_path(cfg), "program_verify", "tt", quantities={"g_reached": "S"})
    k = 6  # 42.5 uS: program-and-verify converges (4% spread)
    target = float(pv.axis("target").values[k])
    samples = torch.as_tensor(pv.quantities["g_reached"].values[0, k])
    gen = torch.Generator().manual_seed(0)
    g = dev.read_conductance(dev.program(torch.full((20000,), target), gen))
    assert g.std() / g.mean() == pytest.approx(float(samples.log().std()), rel=0.05)
    assert float(g.log().mean()) == pytest.approx(float(samples.log().mean()), abs=2e-3)


def test_read_paths_agree_with_table():
    cfg = config(temperature=55.0)
    dev = RramDevice(cfg)
    gap = torch.linspace(0.1, 1.7, 33)
    i = dev.read_current(gap, cfg.v_read)
    e = Table.load(tables_path(cfg), "read", cfg.corner, quantities={"e_read": "J"})
    torch.testing.assert_close(cfg.v_read * i * cfg.t_read,
                               e("e_read", temperature=55.0, gini=gap), rtol=1e-3, atol=0)
    fine = torch.rand(500, dtype=torch.float64) * 1.6 + 0.1
    torch.testing.assert_close(dev.read_conductance(fine), dev.read_current(fine, cfg.v_read)
                               / cfg.v_read, rtol=1e-5, atol=0)


def test_bit_serial_approaches_pulse_width(layer, x):
    kw = dict(weight_spread=False, input_bits=10, adc_bits=16, adc_range_percentile=100.0)
    pw = run(layer, config(input_encoding="pulse_width", **kw), x)
    bs = run(layer, config(input_encoding="bit_serial", **kw), x)
    assert rel_err(bs, pw) < 1e-3
    coarse = run(layer, config(input_encoding="bit_serial", **{**kw, "adc_bits": 4}), x)
    assert rel_err(coarse, pw) > 10 * rel_err(bs, pw)


@pytest.mark.parametrize("signed", ["two_phase", "offset"])
def test_ledger_scales_with_tokens_and_magnitude(layer, x, signed):
    ledger = Ledger()
    cfg = config(signed_inputs=signed, input_scaling="per_layer")
    m = convert(layer, cfg, ledger)
    with torch.no_grad(), ranges_from_data(m):
        m(x)

    def cost(inp):
        ledger.reset()
        with torch.no_grad():
            m(inp)
        return {k: v for (_, k), v in ledger.energy.items()}, sum(ledger.latency.values())

    one, t1 = cost(x)
    two, t2 = cost(torch.cat([x, x]))
    half, _ = cost(0.5 * x)
    for kind in ("rram_read", "rram_dac", "rram_adc"):
        assert two[kind] == pytest.approx(2 * one[kind], rel=1e-6)
    reads = 2 if signed == "two_phase" else 1
    assert t1 == pytest.approx(TOKENS * reads * (cfg.t_read + cfg.adc_time))
    assert t2 == pytest.approx(2 * t1)
    assert half["rram_adc"] == one["rram_adc"]
    if signed == "two_phase":   # pulse time ~ |x|
        assert half["rram_read"] == pytest.approx(0.5 * one["rram_read"], rel=0.02)
    else:                       # pulse time ~ x + range: zero-mean x reads at half scale
        assert half["rram_read"] == pytest.approx(one["rram_read"], rel=0.02)
        full = cfg.v_read * cfg.t_read * float(m.row_current.sum()) * TOKENS
        assert one["rram_read"] == pytest.approx(0.5 * full, rel=0.05)


def test_per_token_scaling_reads_at_full_scale_whatever_the_magnitude(layer, x):
    """Per-token scaling (aihwkit abs_max): the DACs always see max |x| = full scale, so the
    result is independent of the input's magnitude and the read energy is too."""
    ledger = Ledger()
    m = convert(layer, config(input_scaling="per_token"), ledger)
    with torch.no_grad(), ranges_from_data(m):
        m(x)
    ledger.reset()
    with torch.no_grad():
        y1 = m(x) - m.bias
    e1 = ledger.energy["prefill", "rram_read"]
    ledger.reset()
    with torch.no_grad():
        y2 = m(1e-3 * x) - m.bias
    assert ledger.energy["prefill", "rram_read"] == pytest.approx(e1, rel=1e-6)
    assert torch.allclose(y2, 1e-3 * y1, rtol=1e-4, atol=1e-7)
    # an outlier channel does not crush the other inputs to zero, as one layer range would
    big = x.clone()
    big[:, 0] *= 300
    ref = layer(big)
    per_layer = convert(layer, config(input_scaling="per_layer"), None)
    with torch.no_grad(), ranges_from_data(per_layer):
        per_layer(x)
    with torch.no_grad():
        err_tok = rel_err(m(big), ref)
        err_layer = rel_err(per_layer(big), ref)
    assert err_tok < 0.5 * err_layer


def test_ranges_freeze_after_calibration(layer, x):
    m = convert(layer, config(input_scaling="per_layer"))
    with torch.no_grad():
        m(x)                       # fallback: first batch
        first = float(m.input_range)
        assert first > 0
        m(10 * x)
        assert float(m.input_range) == first
        with ranges_from_data(m):
            m(x)
            m(10 * x)
        assert float(m.input_range) == pytest.approx(10 * first, rel=0.2)
        adc = float(m.adc_range)
        m(100 * x)
    assert (float(m.input_range), float(m.adc_range)) == (pytest.approx(10 * first, rel=0.2), adc)


def test_out_of_table_config_raises(layer):
    with pytest.raises(OutOfRangeError, match="temperature=100"):
        RramDevice(config(out_of_range="raise", temperature=100.0))
    with pytest.raises(OutOfRangeError, match="vbl=0.5"):
        RramDevice(config(out_of_range="raise", v_read=0.5))
    with pytest.raises(OutOfRangeError, match="target conductance 0.0002 S"):
        RramDevice(config(out_of_range="raise", g_max=2e-4))
    dev = RramDevice(config(g_max=2e-4))
    dev.program(torch.tensor([2e-4]))
    assert dev.out_of_range["target"] == 1
    with pytest.raises(ValueError, match="signed_inputs"):
        convert(layer, config(signed_inputs="sign_magnitude"))


def test_repr_names_tiles_and_encoding(layer):
    r = repr(convert(layer, config(input_encoding="bit_serial", signed_inputs="offset")))
    assert "tiles=4x1 of 64x128" in r and "bit_serial/offset" in r
