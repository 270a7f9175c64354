"""Hugging Face T5 checkpoints as `jaxlab.coditt5.models.T5` parameters.

A checkpoint directory as `transformers`' `T5ForConditionalGeneration.save_pretrained` writes it
(`config.json` and `model.safetensors`, or shards listed in `model.safetensors.index.json`) is read
with the NumPy API of `safetensors`, so neither PyTorch nor `transformers` is needed::

    shape, params = convert.load_hf_t5("checkpoints/codet5-base")
    logits = T5(shape).apply({"params": params}, src, tgt_in)

Names map as follows (`{s}` is `encoder` or `decoder`, PyTorch `[out, in]` weights are transposed
into Flax `[in, out]` kernels)::

    shared.weight                                       shared/embedding
    {s}.block.0.layer.0.SelfAttention.relative_attention_bias.weight
                                                        encoder_relative_bias/rel_embedding
                                                        decoder_relative_bias/bias/rel_embedding
    {s}.block.i.layer.0.SelfAttention.{q,k,v,o}         {s}_i/self_attention/{query,key,value,out}
    decoder.block.i.layer.1.EncDecAttention.{q,k,v,o}   decoder_i/cross_attention/...
    {s}.block.i.layer.j.layer_norm                      {s}_i/norm_self, norm_cross (decoder), norm_ff
    {s}.block.i.layer.j.DenseReluDense.{wi,wo}          {s}_i/ff/{fc1,fc2}       (ReLU)
    {s}.block.i.layer.j.DenseReluDense.{wi_0,wi_1,wo}   {s}_i/ff/{wi_0,wi_1,wo}  (gated-GELU)
    {s}.final_layer_norm.weight                         {s}_final_norm/scale
    lm_head.weight                                      lm_head/kernel (untied head only)

The output head: T5 v1.0 and CodeT5 reuse the embedding and multiply the decoder output by
`d_model ** -0.5`, which is `T5Shape(tie_embeddings=True)`. T5 v1.1 checkpoints have either their
own `lm_head.weight` (configs with `tie_word_embeddings: false`) or, as `transformers` 5 saves
them, the embedding as head without the rescale (`scale_decoder_outputs: false`); both become an
untied `lm_head` (the second a copy of the embedding, so fine-tuning no longer ties the two).

Attention logits: T5 does not divide by `sqrt(d_kv)`. `attention_scale="none"` keeps the weights as
they are; `"sqrt"` multiplies `W_q` by `sqrt(d_kv)` so that the model with the usual scale computes
the same function (the default of `CoditConfig.model`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Iterator
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.coditt5.models import T5, T5Shape
from jaxlab.core.config import ConfigError
from jaxlab.core.errors import DataFormatError

__all__ = ["load_hf_t5", "hf_config_shape", "hf_t5_names", "read_safetensors"]

Params = dict[str, Any]

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"

_ATTENTION = {"q": "query", "k": "key", "v": "value", "o": "out"}
_FF_NAMES = {"relu": {"wi": "fc1", "wo": "fc2"}, "gated-gelu": {"wi_0": "wi_0", "wi_1": "wi_1", "wo": "wo"}}


def _read_json(path: str) -> dict:
    if not os.path.isfile(path):
        raise DataFormatError(f"{path}: no such file (a Hugging Face checkpoint directory holds {CONFIG_FILE} "
                              f"and {WEIGHTS_FILE})")
    try:
        with open(path) as f:
            out = json.load(f)
    except (OSError, ValueError) as e:
        raise DataFormatError(f"{path}: not a JSON file ({e})") from e
    if not isinstance(out, dict):
        raise DataFormatError(f"{path}: expected a JSON object, got {type(out).__name__}")
    return out


def hf_config_shape(config: dict, *, tie_embeddings: bool = True, attention_scale: Literal["none", "sqrt"] = "none",
                    dtype: str = "float32", source: str = CONFIG_FILE) -> T5Shape:
    """The `T5Shape` of a Hugging Face T5 `config.json` (as a dict).

    Args:
      config: the parsed `config.json`.
      tie_embeddings: whether the head is the rescaled embedding (decided from the tensors by
        `load_hf_t5`).
      attention_scale: the `T5Shape.attention_scale` to convert for.
      dtype: the computation dtype of the returned shape.
      source: the file name used in error messages.

    Returns:
      The shape, with `dropout_rate` taken from the config.

    Raises:
      ConfigError: naming the field, for a model jaxlab's T5 does not implement (another
        `model_type`, a feed-forward other than `relu` or `gated-gelu`, a norm epsilon other
        than 1e-6, a padding id other than 0) or a missing or non-integer size.
    """
    def need(key: str, default: Any = None) -> Any:
        value = config.get(key, default)
        if value is None:
            raise ConfigError(f"{source}: field '{key}' is missing")
        return value

    def size(key: str, default: Any = None) -> int:
        value = need(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{source}: field '{key}' must be a positive integer, got {value!r}")
        return value

    if config.get("model_type", "t5") != "t5":
        raise ConfigError(f"{source}: field 'model_type' is {config['model_type']!r}; only 't5' converts")
    if not config.get("is_encoder_decoder", True):
        raise ConfigError(f"{source}: field 'is_encoder_decoder' is false; only encoder-decoder T5s convert")
    ff = need("feed_forward_proj", "relu")
    if ff not in _FF_NAMES:
        raise ConfigError(f"{source}: field 'feed_forward_proj' is {ff!r}; jaxlab's T5 has "
                          f"{' and '.join(map(repr, _FF_NAMES))} only")
    eps = need("layer_norm_epsilon", 1e-6)
    if not math.isclose(float(eps), 1e-6, rel_tol=1e-9):
        raise ConfigError(f"{source}: field 'layer_norm_epsilon' is {eps!r}; jaxlab's RMSNorm uses 1e-6")
    if config.get("pad_token_id", 0) not in (0, None):
        raise ConfigError(f"{source}: field 'pad_token_id' is {config['pad_token_id']!r}; jaxlab's T5 pads with 0")
    if attention_scale not in ("none", "sqrt"):
        raise ConfigError(f"attention_scale must be 'none' or 'sqrt', got {attention_scale!r}")
    num_layers = size("num_layers")
    return T5Shape(
        vocab_size=size("vocab_size"), d_model=size("d_model"), num_heads=size("num_heads"), d_kv=size("d_kv"),
        d_ff=size("d_ff"), num_encoder_layers=num_layers,
        num_decoder_layers=size("num_decoder_layers", num_layers),
        feed_forward=ff, tie_embeddings=tie_embeddings,
        dropout_rate=float(need("dropout_rate", 0.1)),
        num_buckets=size("relative_attention_num_buckets", 32),
        max_distance=size("relative_attention_max_distance", 128),
        attention_scale=attention_scale, dtype=dtype)


def hf_t5_names(shape: T5Shape) -> Iterator[tuple[str, tuple[str, ...], bool]]:
    """`(hf_name, flax_path, transpose)` of every tensor of the shape's T5 except the output head.

    `flax_path` indexes the `params` tree of `T5(shape)`; `transpose` marks PyTorch `[out, in]`
    weights that become `[in, out]` kernels.
    """
    yield "shared.weight", ("shared", "embedding"), False
    bias = "block.0.layer.0.SelfAttention.relative_attention_bias.weight"
    yield f"encoder.{bias}", ("encoder_relative_bias", "rel_embedding"), False
    yield f"decoder.{bias}", ("decoder_relative_bias", "bias", "rel_embedding"), False
    for stack, count in (("encoder", shape.num_encoder_layers), ("decoder", shape.num_decoder_layers)):
        cross = stack == "decoder"
        attention = [("SelfAttention", "self_attention")] + ([("EncDecAttention", "cross_attention")] if cross else [])
        norms = ["norm_self"] + (["norm_cross"] if cross else []) + ["norm_ff"]
        for i in range(count):
            layer, pre = f"{stack}_{i}", f"{stack}.block.{i}.layer"
            for j, (hf, ours) in enumerate(attention):
                for a, b in _ATTENTION.items():
                    yield f"{pre}.{j}.{hf}.{a}.weight", (layer, ours, b, "kernel"), True
            for j, norm in enumerate(norms):
                yield f"{pre}.{j}.layer_norm.weight", (layer, norm, "scale"), False
            for hf, ours in _FF_NAMES[shape.feed_forward].items():
                yield f"{pre}.{len(norms) - 1}.DenseReluDense.{hf}.weight", (layer, "ff", ours, "kernel"), True
        yield f"{stack}.final_layer_norm.weight", (f"{stack}_final_norm", "scale"), False


def read_safetensors(path: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """All tensors of a checkpoint directory and, per tensor, the file it came from.

    Reads `model.safetensors`, or every shard named in `model.safetensors.index.json`, with
    `safetensors.numpy.load_file`.

    Raises:
      DataFormatError: naming the file when it is missing or unreadable (e.g. bfloat16 tensors,
        which the NumPy API cannot hold: save the model in float32 first).
    """
    try:
        from safetensors.numpy import load_file
    except ImportError as e:
        raise ImportError("reading Hugging Face checkpoints needs `pip install safetensors`") from e
    single, index = os.path.join(path, WEIGHTS_FILE), os.path.join(path, INDEX_FILE)
    if os.path.isfile(single):
        files = [single]
    elif os.path.isfile(index):
        weight_map = _read_json(index).get("weight_map")
        if not isinstance(weight_map, dict):
            raise DataFormatError(f"{index}: field 'weight_map' is missing")
        files = [os.path.join(path, f) for f in dict.fromkeys(weight_map.values())]
    else:
        raise DataFormatError(f"{single}: no such file (nor {INDEX_FILE}); save the model with "
                              "save_pretrained(..., safe_serialization=True)")
    tensors, origin = {}, {}
    for file in files:
        if not os.path.isfile(file):
            raise DataFormatError(f"{file}: no such file (listed in {INDEX_FILE})")
        try:
            loaded = load_file(file)
        except Exception as e:  # the reader raises its own error types (and KeyError for a dtype it lacks)
            raise DataFormatError(f"{file}: cannot read as safetensors with NumPy ({type(e).__name__}: {e})") from e
        tensors.update(loaded)
        origin.update(dict.fromkeys(loaded, file))
    return tensors, origin


def _set(tree: Params, path: tuple[str, ...], value: np.ndarray) -> None:
    for key in path[:-1]:
        tree = tree.setdefault(key, {})
    tree[path[-1]] = value


def load_hf_t5(path: str | os.PathLike, *, attention_scale: Literal["none", "sqrt"] = "none",
               dtype: str = "float32") -> tuple[T5Shape, Params]:
    """Reads a Hugging Face T5 checkpoint directory as `(T5Shape, params)` (see module docstring).

    Args:
      path: a directory with `config.json` and `model.safetensors` (or an index and its shards).
      attention_scale: `"none"` (the weights as they are) or `"sqrt"` (`W_q` times `sqrt(d_kv)`).
      dtype: the computation dtype of the returned shape; parameters are float32.

    Returns:
      The shape and a parameter tree (float32 NumPy arrays) such that
      `T5(shape).apply({"params": params}, src, tgt_in)` gives the checkpoint's logits.

    Raises:
      ConfigError: a config field jaxlab's T5 cannot express (see `hf_config_shape`).
      DataFormatError: a missing file, a missing tensor or one of the wrong shape, naming the
        file and the tensor.
    """
    path = os.fspath(path)
    config_file = os.path.join(path, CONFIG_FILE)
    config = _read_json(config_file)
    shape = hf_config_shape(config, attention_scale=attention_scale, dtype=dtype, source=config_file)
    tensors, origin = read_safetensors(path)
    weights = os.path.join(path, WEIGHTS_FILE if os.path.isfile(os.path.join(path, WEIGHTS_FILE)) else INDEX_FILE)
    where = lambda name: origin.get(name, weights)
    for alias in ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight"):  # older saves keep these copies
        if "shared.weight" not in tensors and alias in tensors:
            tensors["shared.weight"], origin["shared.weight"] = tensors[alias], origin[alias]

    # the head: `lm_head.weight` when saved on its own, else the embedding; rescaled when the config says so
    scaled = config.get("scale_decoder_outputs", config.get("tie_word_embeddings", True)) is not False
    head_name = "lm_head.weight" if "lm_head.weight" in tensors else "shared.weight"
    tie = scaled and (head_name == "shared.weight" or np.array_equal(tensors[head_name], tensors.get("shared.weight")))
    shape = dataclasses.replace(shape, tie_embeddings=bool(tie))

    abstract = jax.eval_shape(lambda: T5(shape).init(jax.random.key(0), jnp.ones((1, 2), jnp.int32),
                                                     jnp.ones((1, 2), jnp.int32)))["params"]
    names = list(hf_t5_names(shape))
    if not tie:
        names.append((head_name, ("lm_head", "kernel"), True))
    q_factor = math.sqrt(shape.d_kv) if attention_scale == "sqrt" else 1.0
    params: Params = {}
    for name, flax_path, transpose in names:
        want = abstract
        for key in flax_path:
            want = want[key]
        want = tuple(want.shape)
        hf_want = want[::-1] if transpose else want
        if name not in tensors:
            raise DataFormatError(f"{where(name)}: tensor '{name}' is missing (expected shape {hf_want})")
        value = tensors[name]
        if tuple(value.shape) != hf_want:
            raise DataFormatError(f"{where(name)}: tensor '{name}' has shape {tuple(value.shape)}, expected "
                                  f"{hf_want} from {CONFIG_FILE}")
        if not np.issubdtype(value.dtype, np.floating):
            raise DataFormatError(f"{where(name)}: tensor '{name}' has dtype {value.dtype}, expected floats")
        value = np.asarray(value, np.float32)
        if transpose:
            value = value.T
        if flax_path[-2] == "query" and q_factor != 1.0:
            value = value * np.float32(q_factor)
        if flax_path == ("lm_head", "kernel") and scaled:
            value = value * np.float32(shape.d_model ** -0.5)
        _set(params, flax_path, np.ascontiguousarray(value))
    return shape, params
