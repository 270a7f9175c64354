"""Hugging Face T5 checkpoints -> jaxlab T5: logits against `transformers`' own forward (skipped
without it), and, without `transformers`, round trips and the errors for a missing file, a
missing or truncated tensor and an unsupported config on checkpoints written with `safetensors`."""

import dataclasses
import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.coditt5 import convert
from jaxlab.coditt5.models import T5, T5Shape
from jaxlab.core.config import ConfigError
from jaxlab.core.errors import DataFormatError

safetensors_numpy = pytest.importorskip("safetensors.numpy")

TINY = dict(vocab_size=50, d_model=32, d_kv=8, d_ff=64, num_heads=4, num_layers=2, num_decoder_layers=2)


def _batch(seed, vocab, batch=3, s=9, t=7):
    rng = np.random.default_rng(seed)
    src = rng.integers(2, vocab, (batch, s))
    src[1, 6:] = 0  # padding in the encoder input
    src[2, 4:] = 0
    tgt_in = rng.integers(2, vocab, (batch, t))
    tgt_in[:, 0] = 0  # decoder start
    return src, tgt_in


def _logits(shape, params, src, tgt_in):
    return np.asarray(jax.jit(lambda p: T5(shape).apply({"params": p}, jnp.asarray(src), jnp.asarray(tgt_in)))(params))


# ---- against transformers ----------------------------------------------------------------------

def _hf_model(feed_forward, head, seed):
    """A random `T5ForConditionalGeneration`: head 'tied' (rescaled embedding), 'unscaled' (the
    embedding without rescale, `tie_word_embeddings=False` in transformers 5) or 'untied' (its own
    `lm_head.weight`)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    config = transformers.T5Config(**TINY, feed_forward_proj=feed_forward, tie_word_embeddings=head == "tied",
                                   decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    torch.manual_seed(seed)
    model = transformers.T5ForConditionalGeneration(config)
    with torch.no_grad():  # the default init gives near-constant relative biases and norms: perturb everything
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    if head == "untied":
        model.lm_head.weight = torch.nn.Parameter(0.2 * torch.randn(TINY["vocab_size"], TINY["d_model"]))
    return model.eval()


@pytest.mark.parametrize("feed_forward,head,attention_scale", [
    ("relu", "tied", "none"), ("gated-gelu", "unscaled", "none"), ("gated-gelu", "untied", "sqrt"),
    ("relu", "untied", "none"), ("relu", "tied", "sqrt")])
def test_logits_equal_transformers(tmp_path, feed_forward, head, attention_scale):
    torch = pytest.importorskip("torch")
    model = _hf_model(feed_forward, head, seed=len(feed_forward) + len(head))
    model.save_pretrained(tmp_path, safe_serialization=True)
    if head == "untied":  # the config as transformers 4 wrote it for T5 v1.1 (no `scale_decoder_outputs`)
        config = json.loads((tmp_path / "config.json").read_text())
        config.pop("scale_decoder_outputs", None)
        config["tie_word_embeddings"] = False
        (tmp_path / "config.json").write_text(json.dumps(config))
    shape, params = convert.load_hf_t5(tmp_path, attention_scale=attention_scale)
    assert shape.feed_forward == feed_forward and shape.attention_scale == attention_scale
    assert shape.tie_embeddings == (head == "tied")
    src, tgt_in = _batch(0, TINY["vocab_size"])
    with torch.no_grad():
        want = model(input_ids=torch.from_numpy(src), attention_mask=torch.from_numpy(src > 0),
                     decoder_input_ids=torch.from_numpy(tgt_in)).logits.numpy()
    np.testing.assert_allclose(_logits(shape, params, src, tgt_in), want, atol=1e-4, rtol=1e-4)


# ---- without transformers: checkpoints written from jaxlab parameters -------------------------

SHAPE = T5Shape(vocab_size=40, d_model=16, num_heads=2, d_kv=8, d_ff=24, num_encoder_layers=2,
                num_decoder_layers=3, dropout_rate=0.0, attention_scale="none")


def _hf_config(shape):
    return {"model_type": "t5", "is_encoder_decoder": True, "vocab_size": shape.vocab_size,
            "d_model": shape.d_model, "num_heads": shape.num_heads, "d_kv": shape.d_kv, "d_ff": shape.d_ff,
            "num_layers": shape.num_encoder_layers, "num_decoder_layers": shape.num_decoder_layers,
            "feed_forward_proj": shape.feed_forward, "tie_word_embeddings": shape.tie_embeddings,
            "dropout_rate": shape.dropout_rate, "layer_norm_epsilon": 1e-6, "pad_token_id": 0}


def _hf_tensors(shape, params):
    """The Hugging Face tensors of jaxlab parameters (`attention_scale="none"`, unscaled untied head)."""
    out = {}
    names = list(convert.hf_t5_names(shape))
    if not shape.tie_embeddings:
        names.append(("lm_head.weight", ("lm_head", "kernel"), True))
    for name, path, transpose in names:
        value = params
        for key in path:
            value = value[key]
        value = np.asarray(value, np.float32)
        out[name] = np.ascontiguousarray(value.T if transpose else value)
    return out


@functools.cache
def _init(shape, seed):
    return jax.jit(lambda: T5(shape).init(jax.random.key(seed), jnp.ones((1, 4), jnp.int32),
                                          jnp.ones((1, 4), jnp.int32))["params"])()


def _write(tmp_path, shape, seed=0, edit=None, config_edit=None):
    params = _init(shape, seed)
    tensors = _hf_tensors(shape, params)
    config = _hf_config(shape)
    if edit:
        edit(tensors)
    if config_edit:
        config_edit(config)
    (tmp_path / "config.json").write_text(json.dumps(config))
    safetensors_numpy.save_file(tensors, str(tmp_path / "model.safetensors"))
    return params


@pytest.mark.parametrize("feed_forward,tie", [("relu", True), ("gated-gelu", False)])
def test_round_trip_of_jaxlab_parameters(tmp_path, feed_forward, tie):
    shape = dataclasses.replace(SHAPE, feed_forward=feed_forward, tie_embeddings=tie)
    params = _write(tmp_path, shape)
    got_shape, got = convert.load_hf_t5(tmp_path)
    assert got_shape == shape
    assert jax.tree.structure(got) == jax.tree.structure(jax.tree.map(np.asarray, params))
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, np.asarray(b)), got, params)


def test_sqrt_scale_gives_the_same_function(tmp_path):
    _write(tmp_path, SHAPE)
    src, tgt_in = _batch(1, SHAPE.vocab_size)
    logits = [_logits(*convert.load_hf_t5(tmp_path, attention_scale=a), src, tgt_in) for a in ("none", "sqrt")]
    np.testing.assert_allclose(logits[1], logits[0], atol=1e-5, rtol=1e-5)


def test_sharded_checkpoint(tmp_path):
    params = _write(tmp_path, SHAPE)
    tensors = safetensors_numpy.load_file(str(tmp_path / "model.safetensors"))
    (tmp_path / "model.safetensors").unlink()
    names = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    for file, keys in shards.items():
        safetensors_numpy.save_file({k: tensors[k] for k in keys}, str(tmp_path / file))
    index = {"weight_map": {k: f for f, keys in shards.items() for k in keys}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    _, got = convert.load_hf_t5(tmp_path)
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, np.asarray(b)), got, params)
    (tmp_path / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(DataFormatError, match="model-00002-of-00002.safetensors: no such file"):
        convert.load_hf_t5(tmp_path)


def test_missing_files(tmp_path):
    with pytest.raises(DataFormatError, match="config.json: no such file"):
        convert.load_hf_t5(tmp_path)
    _write(tmp_path, SHAPE)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(DataFormatError, match="model.safetensors: no such file"):
        convert.load_hf_t5(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(DataFormatError, match="model.safetensors: cannot read"):
        convert.load_hf_t5(tmp_path)


NAME = "decoder.block.2.layer.1.EncDecAttention.v.weight"


def test_renamed_tensor_is_named(tmp_path):
    _write(tmp_path, SHAPE, edit=lambda t: t.update({NAME.replace("v.weight", "value.weight"): t.pop(NAME)}))
    with pytest.raises(DataFormatError, match=rf"model.safetensors: tensor '{NAME}' is missing \(expected shape"):
        convert.load_hf_t5(tmp_path)


def test_truncated_tensor_is_named(tmp_path):
    _write(tmp_path, SHAPE, edit=lambda t: t.update({NAME: np.ascontiguousarray(t[NAME][:, :-1])}))
    with pytest.raises(DataFormatError, match=rf"tensor '{NAME}' has shape \(16, 15\), expected \(16, 16\)"):
        convert.load_hf_t5(tmp_path)
    # a config that disagrees with the tensors: every weight of width d_ff is then the wrong shape
    _write(tmp_path, SHAPE, config_edit=lambda c: c.update(d_ff=32))
    with pytest.raises(DataFormatError, match=r"DenseReluDense.wi.weight' has shape \(24, 16\), expected \(32, 16\)"):
        convert.load_hf_t5(tmp_path)


@pytest.mark.parametrize("field,value", [("feed_forward_proj", "gated-silu"), ("feed_forward_proj", "gelu"),
                                         ("layer_norm_epsilon", 1e-5), ("model_type", "bart"),
                                         ("pad_token_id", 1), ("d_model", "32")])
def test_unsupported_config_is_named(tmp_path, field, value):
    _write(tmp_path, SHAPE, config_edit=lambda c: c.update({field: value}))
    with pytest.raises(ConfigError, match=rf"config.json: field '{field}'"):
        convert.load_hf_t5(tmp_path)
