"""Layer-wise adaptation on a tiny Llama: it lowers the held-out distillation loss, runs the
model only on the tokens it is given, and its saved state is refused by another readout."""

import pytest
import torch
import transformers

from cimlut.models import adapt, calibrate
from cimlut.models.calibrate import calibrate_ranges
from cimlut.models.config import HardwareConfig
from cimlut.models.convert import convert


def tiny():
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=96, hidden_size=64, intermediate_size=128,
                                   num_hidden_layers=2, num_attention_heads=4,
                                   num_key_value_heads=2, max_position_embeddings=512)
    return transformers.LlamaForCausalLM(cfg).eval()


def ids(n, seed):
    return torch.randint(0, 96, (1, n), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("readout", ["hardsigmoid_norm", "hardsigmoid"])
def test_adaptation_lowers_held_out_loss_and_sees_only_its_tokens(readout):
    model = tiny()
    # (softmax on ideal devices is the digital attention up to its converters: nothing to gain)
    m, conv = convert(model, HardwareConfig(analog="attention", ideal=True, attn_readout=readout,
                                            window=64, subtile=16))
    train, val, evaluation = ids(48, 1), ids(32, 2), ids(40, 3)
    with conv.ledger.paused():
        calibrate_ranges(m, conv, train)
    seen = []
    m.register_forward_pre_hook(lambda mod, args, kw: seen.append(kw.get("input_ids", args[0] if args else None)),
                                with_kwargs=True)
    layers = adapt.adapt(m, conv, train, val, steps=40, progress=False)
    assert all(any(torch.equal(s, t) for t in (train, val)) for s in seen) and seen
    assert not any(torch.equal(s, evaluation) for s in seen)
    assert len(layers) == 2
    assert all(x["val_after"] <= x["val_before"] for x in layers)
    assert sum(x["val_after"] for x in layers) < 0.9 * sum(x["val_before"] for x in layers)
    # the folded parameters give the module what the surrogate gave (ideal devices)
    cache = adapt.capture(m, conv, val)
    for name, a in conv.attentions.items():
        c = cache[name][0]
        y = a(c.q, c.k, c.v, c.q_pos, c.k_pos)
        mse = float(((y - c.y) ** 2).mean())
        want = next(x for x in layers if x["layer"] == name)["val_after"]
        assert mse == pytest.approx(want, rel=1e-3, abs=1e-7)


def test_a_saved_state_for_another_readout_or_model_is_refused(tmp_path):
    model = tiny()
    cfg = HardwareConfig(analog="attention", ideal=True, attn_readout="hardsigmoid_norm",
                         window=64, subtile=16)
    m, conv = convert(model, cfg)
    with conv.ledger.paused():
        calibrate_ranges(m, conv, ids(32, 1))
    path = calibrate.save(tmp_path / "a.json", conv, "tiny")
    import json
    doc = json.loads(path.read_text())
    adapt.check_file(doc, "tiny", cfg, path)                    # the same: fine
    with pytest.raises(adapt.AdaptError, match="attn_readout 'hardsigmoid_norm' \\(this run: 'softmax'\\)"):
        adapt.check_file(doc, "tiny", cfg.replace(attn_readout="softmax"), path)
    with pytest.raises(adapt.AdaptError, match="model 'tiny' \\(this run: 'smollm2'\\)"):
        adapt.check_file(doc, "smollm2", cfg, path)


def test_the_surrogate_on_another_device_matches_and_a_missing_device_is_refused():
    """The training tensors move to `device` once per layer; the surrogate's output there
    equals the CPU one, and a device torch cannot see is refused before any model loads."""
    model = tiny()
    m, conv = convert(model, HardwareConfig(analog="attention", ideal=True, window=64,
                                            attn_readout="hardsigmoid_norm", subtile=16))
    with conv.ledger.paused():
        calibrate_ranges(m, conv, ids(32, 1))
    c = adapt.capture(m, conv, ids(32, 2))
    name, att = next(iter(conv.attentions.items()))
    devices = ["cpu", "meta"] + (["cuda"] if torch.cuda.is_available() else [])
    ref = adapt.Surrogate(att, "cpu")
    y_ref = ref(ref.prepare(c[name][0]))
    assert y_ref.shape == c[name][0].y.shape
    if torch.cuda.is_available():
        s = adapt.Surrogate(att, "cuda")
        assert torch.allclose(s(s.prepare(c[name][0])).cpu(), y_ref, atol=1e-5)
    if not torch.cuda.is_available():
        with pytest.raises(adapt.AdaptError, match="sees no CUDA device"):
            adapt.check_device("cuda")
    with pytest.raises(adapt.AdaptError, match="'tpu0': not a torch device"):
        adapt.check_device("tpu0")
    with pytest.raises(adapt.AdaptError, match="trains on cpu or cuda"):
        adapt.check_device(devices[1])


def test_sequential_adaptation_learns_on_the_analog_inputs_and_stops_at_its_layer():
    model = tiny()
    m, conv = convert(model, HardwareConfig(analog="attention", ideal=True, window=64,
                                            attn_readout="hardsigmoid_norm", subtile=16))
    train, val, evaluation = ids(48, 1), ids(32, 2), ids(40, 3)
    with conv.ledger.paused():
        calibrate_ranges(m, conv, train)
    names = list(conv.attentions)
    digital = adapt.capture(m, conv, train)
    # layer 1's inputs through the analog layer 0 differ from the digital model's
    calls = []
    top = conv.attentions[names[1]]
    saved = top.forward
    top.forward = lambda *a, **k: (calls.append(1), saved(*a, **k))[1]
    got0 = adapt.capture_inputs(m, conv, train, names[0], digital[names[0]])
    assert not calls                                       # stopped at layer 0
    top.forward = saved
    assert torch.equal(got0[0].q, digital[names[0]][0].q)  # nothing analog below layer 0
    got1 = adapt.capture_inputs(m, conv, train, names[1], digital[names[1]])
    assert not torch.allclose(got1[0].q, digital[names[1]][0].q)
    assert got1[0].y is digital[names[1]][0].y             # the digital model's output
    seen = []
    m.register_forward_pre_hook(lambda mod, args, kw: seen.append(kw.get("input_ids", args[0] if args else None)),
                                with_kwargs=True)
    layers = adapt.adapt(m, conv, train, val, steps=40, progress=False, method="sequential")
    assert seen and all(any(torch.equal(s, t) for t in (train, val)) for s in seen)
    assert not any(torch.equal(s, evaluation) for s in seen)
    assert all(x["val_after"] <= x["val_before"] for x in layers)
    assert sum(x["val_after"] for x in layers) < 0.9 * sum(x["val_before"] for x in layers)
    with pytest.raises(adapt.AdaptError, match="adapt method 'greedy'"):
        adapt.adapt(m, conv, train, val, steps=1, progress=False, method="greedy")
