"""Attention readouts: softmax with converters against the digital softmax, bits against
error, hardsigmoid_norm rows as convex combinations, the registry, the ledger counts."""

import pytest
import torch

from cimlut.models.attention import GainCellAttention, attention_mask, softmax_attention
from cimlut.models.config import HardwareConfig
from cimlut.models.ledger import Ledger
from cimlut.models.readouts import READOUTS, get_readout

SMALL = dict(window=32, subtile=8)


def data(B=1, H=4, Hkv=2, T=40, D=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)
    return r(B, H, T, D), r(B, Hkv, T, D), r(B, Hkv, T, D), torch.arange(T)


def module(H=4, Hkv=2, D=16, ledger=None, causal=True, **cfg):
    return GainCellAttention(H, Hkv, D, HardwareConfig(**{**SMALL, **cfg}), ledger=ledger,
                             causal=causal)


def rel_rms(y, ref):
    return float((y - ref).pow(2).mean().sqrt() / ref.pow(2).mean().sqrt())


def test_registry_matches_config_and_names_the_known():
    assert set(READOUTS) == set(HardwareConfig.fields()["attn_readout"].metadata["choices"])
    assert HardwareConfig().attn_readout == "softmax"
    with pytest.raises(ValueError, match="known: hardsigmoid, hardsigmoid_norm, softmax"):
        get_readout("sofmax")


def bits(b):
    return dict(score_bits=b, prob_bits=b, softmax_out_bits=b)


@pytest.mark.parametrize("causal", [True, False])
def test_softmax_ideal_12_bit_matches_softmax_attention(causal):
    q, k, v, pos = data(B=2, T=40 if causal else 24)
    ref = softmax_attention(q, k, v, pos, pos, causal=causal, window=32)
    errs = {}
    for b in (12, 8, 6):
        m = module(ideal=True, causal=causal, **bits(b))
        errs[b] = rel_rms(m(q, k, v, pos, pos), ref)
    # three converters, each within half a step of its full scale: at 12 bits (2^-11 =
    # 4.9e-4 of full scale per step) measured 1.5e-3 relative RMS (of which ~1e-3 the
    # 99.99th-percentile output full scale clipping the largest tile outputs); 8 bits 1.2e-2
    assert errs[12] < 4e-3
    assert errs[12] < errs[8] < errs[6]
    # no systematic error under the converters: 20 bits and the full scale at the maximum
    m = module(ideal=True, causal=causal, adc_range_percentile=100.0, **bits(20))
    assert rel_rms(m(q, k, v, pos, pos), ref) < 2e-5          # measured 3e-6


def test_softmax_fewer_bits_in_each_converter_larger_error():
    q, k, v, pos = data(T=40, seed=1)
    ref = softmax_attention(q, k, v, pos, pos, window=32)
    for key in ("score_bits", "prob_bits", "softmax_out_bits"):
        e = [rel_rms(module(ideal=True, **{**bits(14), key: b})(q, k, v, pos, pos), ref)
             for b in (10, 6, 4)]
        assert e[0] < e[1] < e[2], key


def test_softmax_full_scale_is_observed_not_the_evaluated_batch():
    q, k, v, pos = data(T=24, seed=2)
    m = module(ideal=True)
    m.observe(True)
    m(q, k, v, pos, pos)
    m.observe(False)
    fs = m.s_fs.clone()
    assert bool((fs > 0).all())
    m(4 * q, k, v, pos, pos)                     # larger scores clip at the frozen full scale
    assert torch.equal(m.s_fs, fs)


def test_hardsigmoid_norm_rows_are_convex_combinations():
    q, k, v, pos = data(B=1, T=40, seed=3)
    for ideal in (True, False):
        m = module(ideal=ideal, attn_readout="hardsigmoid_norm", channel_headroom=1.0)
        m.observe(True)
        m(q, k, v, pos, pos)
        m.observe(False)
        # every key written at the top level, as the norm column's cells: the output is that
        # value wherever any weight is non-zero (with the 2T cell too: same cells, same leak);
        # the tile output ADCs' full scale observed on these values (not clipped): value and
        # norm columns then hold the same charges and give the same codes
        off = m.arrays.offset
        top = ((1 - off) / m.v_scale).view(1, -1, 1, 1)
        m.observe(True)
        y = m(q, k, top.expand_as(v), pos, pos)
        m.observe(False)
        y = m(q, k, top.expand_as(v), pos, pos)
        want = top.repeat_interleave(2, 1).expand_as(y)
        hit = y.abs().amax(-1) > 0                   # rows where some phi(S) > 0
        # the 2T cell's exponential read leaves most scores below the converter's dead zone
        assert bool(hit.float().mean() > 0.5) if ideal else bool(hit.any())
        assert float(((y - want).abs() / want.abs())[hit].max()) < 1e-5
        if ideal:                                    # inside the range of the values seen
            y = m(q, k, v, pos, pos)
            lo = torch.full_like(y, float("inf"))
            hi = -lo
            mask = attention_mask(pos, pos, True, 32)
            vv = v.repeat_interleave(2, 1)[:, :, None]            # (B, H, 1, T, D)
            big = torch.where(mask[None, None, :, :, None], vv, torch.tensor(float("inf")))
            lo = big.amin(3)
            hi = torch.where(mask[None, None, :, :, None], vv, torch.tensor(-float("inf"))).amax(3)
            ok = (y >= lo - 1e-4) & (y <= hi + 1e-4) | ~hit[..., None]
            assert bool(ok.all())


def test_hardsigmoid_norm_equals_its_linear_model_with_ideal_devices():
    q, k, v, pos = data(B=2, T=40, seed=4)
    m = module(ideal=True, attn_readout="hardsigmoid_norm")
    y, lin = m(q, k, v, pos, pos), m.linear_model(q, k, v, pos, pos)
    assert float((y - lin).abs().max()) < 1e-4 * float(lin.abs().max())


def test_softmax_ledger_counts_each_conversion():
    B, H, Hkv, T, D = 1, 4, 2, 20, 16
    q, k, v, pos = data(B, H, Hkv, T, D, seed=5)
    led = Ledger()
    m = module(ledger=led, ideal=True)
    m(q, k, v, pos, pos)
    cfg = m.config
    keys = B * H * T * (T + 1) // 2                           # causal, inside the window
    tiles = B * H * sum(i // cfg.subtile + 1 for i in range(T))
    adc = (keys * 2 ** cfg.score_bits + tiles * D * 2 ** cfg.softmax_out_bits) * cfg.adc_fom
    assert led.energy["prefill", "attn_adc"] == pytest.approx(adc, rel=1e-9)
    assert led.energy["prefill", "attn_pdac"] == pytest.approx(keys * cfg.dac_energy_per_read, rel=1e-9)
    dig = keys * (cfg.exp_energy + 3 * cfg.digital_op_energy + cfg.mult_energy) \
        + B * H * T * (cfg.div_energy + D * cfg.mult_energy) \
        + cfg.mult_energy * D * 2 * B * (Hkv * T + H * T)       # per-channel scales of k, v, q, out
    assert led.energy["prefill", "attn_digital"] == pytest.approx(dig, rel=1e-9)
    assert ("prefill", "c2p") not in led.energy                 # no charge-to-pulse in this path
    # two ADC conversions per query token on the critical path
    assert led.latency["prefill", "attn_adc"] == pytest.approx(2 * cfg.adc_time * B * T)


def test_norm_column_costs_one_write_and_reads():
    q, k, v, pos = data(B=1, T=24, seed=6)
    leds = {}
    for ro in ("hardsigmoid", "hardsigmoid_norm"):
        led = leds[ro] = Ledger()
        m = module(attn_readout=ro, decay=False)
        m.observe(True)
        m(q, k, v, pos, pos)
        m.observe(False)
        m.ledger = led
        m(q, k, v, pos, pos)
    a, b = leds["hardsigmoid"].energy, leds["hardsigmoid_norm"].energy
    ew_top = float(m.arrays.ewrite[-1]) * 1e-15
    assert b["prefill", "gc_write"] - a["prefill", "gc_write"] == pytest.approx(ew_top * 2 * 24, rel=1e-5)
    assert b["prefill", "gc_read_pv"] > a["prefill", "gc_read_pv"]
    assert b["prefill", "c2p"] > a["prefill", "c2p"]
    assert ("prefill", "attn_digital") in b and ("prefill", "attn_digital") not in a


def test_exact_reference_refuses_other_readouts():
    q, k, v, pos = data(T=8)
    with pytest.raises(ValueError, match="hardsigmoid readout only"):
        module()(q, k, v, pos, pos, exact=True)


def test_keys_are_encoded_once_and_a_changed_past_is_noticed():
    q, k, v, pos = data(B=1, T=30, seed=7)
    for ideal in (True, False):
        m = module(ideal=ideal)
        m.observe(True)
        m(q, k, v, pos, pos)
        m.observe(False)
        full = m(q, k, v, pos, pos)
        m.reset_kv_cache()
        steps = []
        for t in range(30):
            steps.append(m(q[:, :, t:t + 1], k[:, :, :t + 1], v[:, :, :t + 1], pos[t:t + 1], pos[:t + 1]))
            if t >= 8:                                   # whole sub-tiles: the cache is in use
                assert m._kvc is not None and m._kvc["T"] == t + 1
        assert torch.allclose(torch.cat(steps, 2), full, atol=1e-5)
        k2 = k.clone()
        k2[:, :, 3] += 1.0                               # another past: encoded afresh
        y = m(q[:, :, -1:], k2, v, pos[-1:], pos)
        m.reset_kv_cache()
        assert torch.equal(y, m(q[:, :, -1:], k2, v, pos[-1:], pos))
        assert not torch.allclose(y, full[:, :, -1:], atol=1e-4)


def test_ideal_levels_quantize_k_and_v_on_linear_cells():
    q, k, v, pos = data(T=40, seed=8)
    ref = softmax_attention(q, k, v, pos, pos, window=32)
    free = rel_rms(module(ideal=True, **bits(14))(q, k, v, pos, pos), ref)
    e = [rel_rms(module(ideal=True, ideal_levels=True, kv_levels=L, **bits(14))(q, k, v, pos, pos), ref)
         for L in (8, 64)]                               # (each level count builds its arrays)
    assert e[0] > e[1] > free


def test_per_channel_scales_spare_k_and_v_levels_from_outlier_channels():
    q, k, v, pos = data(T=40, seed=9)
    k[..., 3] *= 20                                      # one outlier channel in K and in V
    v[..., 5] *= 20
    ref = softmax_attention(q, k, v, pos, pos, window=32)
    err = {}
    for pc in (False, True):
        m = module(ideal=True, ideal_levels=True, kv_per_channel=pc, **bits(14))
        err[pc] = rel_rms(m(q, k, v, pos, pos), ref)
        assert rel_rms(module(ideal=True, kv_per_channel=pc, **bits(20), adc_range_percentile=100.0)(q, k, v, pos, pos), ref) < 2e-5
    assert err[True] < 0.5 * err[False]


def test_readout_comparison_refuses_what_it_cannot_compare():
    from cimlut.models import compare
    from cimlut.models.config import ConfigError
    with pytest.raises(ConfigError, match="analog = 'linear'"):
        compare.compare("smollm2", HardwareConfig(analog="linear"))
    with pytest.raises(ConfigError, match="unknown attention readout.*sofmax"):
        compare.compare("smollm2", HardwareConfig(), ["sofmax"])
