"""`convert` on tiny Llama / GPT-2 / BERT models: ideal devices reproduce the digital model,
non-idealities move it away in the expected direction, decoding with the KV cache equals
full-sequence evaluation, the ledger scales as it says, bad input is named."""

import pytest
import torch
import transformers

from cimlut.models.calibrate import calibrate_ranges
from cimlut.models.config import HardwareConfig
from cimlut.models.convert import UnsupportedModelError, convert
from cimlut.models.ledger import Ledger


def tiny(kind: str):
    torch.manual_seed(0)
    if kind == "llama":
        cfg = transformers.LlamaConfig(vocab_size=96, hidden_size=64, intermediate_size=128,
                                       num_hidden_layers=2, num_attention_heads=4,
                                       num_key_value_heads=2, max_position_embeddings=512)
        return transformers.LlamaForCausalLM(cfg).eval()
    if kind == "gpt2":
        cfg = transformers.GPT2Config(vocab_size=96, n_embd=64, n_layer=2, n_head=4,
                                      n_positions=512)
        return transformers.GPT2LMHeadModel(cfg).eval()
    cfg = transformers.BertConfig(vocab_size=96, hidden_size=64, intermediate_size=128,
                                  num_hidden_layers=2, num_attention_heads=4)
    return transformers.BertModel(cfg).eval()


def out(model, ids):
    with torch.no_grad():
        r = model(ids)
    return r.logits if hasattr(r, "logits") else r.last_hidden_state


def converted(model, ids, **kw):
    m, conv = convert(model, HardwareConfig(**kw))
    with conv.ledger.paused():
        calibrate_ranges(m, conv, ids)
    return m, conv


IDS = torch.randint(0, 96, (1, 48), generator=torch.Generator().manual_seed(3))


@pytest.mark.parametrize("kind", ["llama", "gpt2", "bert"])
def test_ideal_linear_matches_digital(kind):
    model = tiny(kind)
    m, conv = converted(model, IDS, analog="linear", ideal=True)
    assert len(conv.linears) >= 8
    ref, got = out(model, IDS), out(m, IDS)
    assert torch.allclose(got, ref, rtol=1e-4, atol=1e-4 * ref.abs().max())
    # the original stays digital
    assert not any(type(x).__name__ == "CrossbarLinear" for x in model.modules())


@pytest.mark.parametrize("kind", ["llama", "bert"])
def test_nonidealities_move_the_output_away(kind):
    model = tiny(kind)
    ref = out(model, IDS)

    def err(**kw):
        m, _ = converted(model, IDS, analog="linear", **kw)
        return float((out(m, IDS) - ref).norm() / ref.norm())

    ideal = err(ideal=True)
    coarse = err(weight_spread=False, adc_bits=4, input_bits=4, weight_bits=4)
    fine = err(weight_spread=False, adc_bits=10, input_bits=10, weight_bits=10)
    spread = err(weight_spread=True, adc_bits=10, input_bits=10, weight_bits=10)
    assert ideal < 1e-4 < fine < coarse
    assert spread > fine


def test_decode_with_cache_equals_full_sequence():
    model = tiny("llama")
    m, conv = converted(model, IDS[:, :40], analog="both")
    full = out(m, IDS[:, :40])
    with torch.no_grad():
        r = m(IDS[:, :32], use_cache=True)
        steps = [r.logits]
        cache = r.past_key_values
        for t in range(32, 40):
            r = m(IDS[:, t:t + 1], cache=cache, use_cache=True)
            cache = r.past_key_values
            steps.append(r.logits)
    inc = torch.cat(steps, 1)
    assert torch.allclose(inc, full, rtol=1e-4, atol=1e-4 * full.abs().max())


@pytest.mark.parametrize("kind", ["llama", "bert"])
def test_padded_batches_are_refused_not_silently_wrong(kind):
    model = tiny(kind)
    m, _ = converted(model, IDS, analog="attention")
    ids = torch.cat([IDS[:, :16], IDS[:, 16:32]])
    mask = torch.ones_like(ids)
    with torch.no_grad():
        m(ids, attention_mask=mask)                      # nothing hidden: fine
        mask[1, 12:] = 0
        with pytest.raises(ValueError, match=r"attention mask hides keys"):
            m(ids, attention_mask=mask)


@pytest.mark.parametrize("readout", ["hardsigmoid", "softmax"])
def test_attention_energy_per_token_grows_with_context(readout):
    """Prefill of n tokens: query i reads i+1 keys, so the attention energy per token grows
    with n (exactly linear per key for constant keys: tests/test_attention.py; here the
    per-key energy depends on the stored level, exponentially, so only growth is asserted).
    Conversions: the charge-to-pulse (hardsigmoid) or the 8-bit score and output ADCs
    (softmax), one per score and one per output column and sub-tile read."""
    model = tiny("llama")
    ids = torch.randint(0, 96, (1, 128), generator=torch.Generator().manual_seed(5))
    m, conv = converted(model, ids, analog="attention", attn_readout=readout)
    kind = "c2p" if readout == "hardsigmoid" else "attn_adc"
    qk, c2p, write = {}, {}, {}
    for n in (32, 64, 128):
        conv.ledger.reset()
        out(m, ids[:, :n])
        conv.ledger.count_tokens(n)
        e = conv.ledger.per_token()["energy"]
        qk[n], c2p[n], write[n] = e["gc_read_qk"], e[kind], e["gc_write"]
    assert qk[32] < qk[64] < qk[128]
    # conversions per token and head: (n+1)/2 scores + head_dim (16) output readouts per
    # 64-token sub-tile read; at n=128 half the queries read two sub-tiles
    conversions = {32: 16.5 + 16, 64: 32.5 + 16, 128: 64.5 + 16 * 1.5}
    if readout == "softmax":   # one ADC energy per conversion
        assert c2p[64] / c2p[32] == pytest.approx(conversions[64] / conversions[32], rel=0.02)
        assert c2p[128] / c2p[64] == pytest.approx(conversions[128] / conversions[64], rel=0.02)
    else:
        # the charge-to-pulse energy depends on the charge converted (the sink draws from the
        # column during the pulse, from vref otherwise): per conversion it lies within the
        # table's range, whatever the scores
        import h5py

        from cimlut.paths import data_dir
        with h5py.File(data_dir() / "tables" / "charge_to_pulse.h5") as f:
            lo, hi = float(f["transfer/econv"][()].min()), float(f["transfer/econv"][()].max())
        per_head = model.config.num_hidden_layers * model.config.num_attention_heads
        for n in (32, 64, 128):
            assert lo <= c2p[n] / (conversions[n] * per_head) <= hi, (n, c2p[n])
        assert c2p[32] < c2p[64] < c2p[128]
    # each token's K and V are written once, whatever the context
    assert write[128] == pytest.approx(write[64], rel=0.5)


def test_calibration_round_trips_through_its_file(tmp_path):
    from cimlut.models import calibrate
    model = tiny("llama")
    m, conv = converted(model, IDS, analog="both")
    calibrate.match_outputs(conv, m, IDS, passes=2)
    path = calibrate.save(tmp_path / "cal.json", conv, "tiny-llama")
    fresh, conv2 = convert(model, HardwareConfig(analog="both"))
    calibrate.apply_calibration(fresh, conv2, path)
    assert torch.equal(out(fresh, IDS), out(m, IDS))
    lin_only, conv3 = convert(model, HardwareConfig(analog="attention"))
    conv3.linears["x"] = None
    with pytest.raises(calibrate.CalibrationError, match=r"no calibration for x"):
        calibrate.apply_calibration(lin_only, conv3, path)


def test_queries_outside_the_tables_are_counted_or_raise():
    from cimlut.models.table import OutOfRangeError
    model = tiny("llama")
    _, conv = convert(model, HardwareConfig(analog="linear", g_min=1e-7))
    assert "rram.target" in conv.table_report()
    _, conv = convert(model, HardwareConfig(analog="linear"))
    assert conv.table_report() == ""
    with pytest.raises(OutOfRangeError, match=r"program_verify|target"):
        convert(model, HardwareConfig(analog="linear", g_min=1e-7, out_of_range="raise"))
    with pytest.raises(OutOfRangeError, match=r"temperature=120"):
        convert(model, HardwareConfig(analog="attention", temperature=120.0,
                                      out_of_range="raise"))


def test_everything_digital_is_still_metered():
    """Tiny GPT-2 (2 blocks, width 64, 4 heads, MLP 256, vocab 96), all digital: every MAC
    of the Conv1D layers, attention and LM head, and the elementwise ops, counted exactly."""
    model = tiny("gpt2")
    cfg = HardwareConfig(analog="none")
    m, conv = convert(model, cfg)
    out(m, IDS)
    t = IDS.shape[1]
    conv.ledger.count_tokens(t)
    e = conv.ledger.per_token()["energy"]
    assert set(e) == {"digital"}
    macs = (t * 2 * (64 * 192 + 64 * 64 + 64 * 256 + 256 * 64) + t * 64 * 96
            + 2 * (4 * 16 * 2 * t * t))
    ops = 2 * 4 * t * t * 4 + 2 * t * 64 * 12
    want = (macs * cfg.digital_mac_energy + ops * cfg.digital_op_energy) / t
    assert e["digital"] == pytest.approx(want, rel=1e-9)


def test_unknown_architecture_and_config_errors():
    cfg = transformers.OPTConfig(vocab_size=96, hidden_size=32, num_hidden_layers=1,
                                 ffn_dim=64, num_attention_heads=2)
    opt = transformers.OPTForCausalLM(cfg)
    with pytest.raises(UnsupportedModelError, match=r"model of type 'opt'.*supported: llama"):
        convert(opt, HardwareConfig())
    with pytest.raises(KeyError, match="unknown ledger kind"):
        Ledger().add("flux_capacitor", 1.0)
