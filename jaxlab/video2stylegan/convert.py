"""Official StyleGAN2 generator weights as `jaxlab.video2stylegan.models.Generator` parameters.

The input is the generator's `state_dict` of NVlabs/stylegan2-ada-pytorch (`training/networks.py`;
the official TensorFlow StyleGAN2 networks load into it through that repository's `legacy.py`),
saved without pickle: a `.safetensors` file or a NumPy `.npz`. Where the network's pickle loads,
either of these writes it::

    safetensors.torch.save_file(G_ema.state_dict(), "ffhq.safetensors")
    numpy.savez("ffhq.npz", **{k: v.cpu().numpy() for k, v in G_ema.state_dict().items()})

Reading it needs neither PyTorch nor the pickle::

    conv = convert.load_stylegan2("ffhq.safetensors")
    gc = dataclasses.replace(configs.get_config("paper").gan, **conv.gan)  # the file's shapes, the rest kept
    g, _ = gan.make_models(gc)
    ws = gan.truncate(gan.map_ws(g, conv.params, z), conv.w_avg, 0.7)
    img = g.apply({"params": conv.params}, ws, conv.noise, method=Generator.synthesis)  # NHWC in [-1, 1]

Names map as follows (`{r}` a resolution, `{i}` 0 or 1; PyTorch `[out, in]` weights become Flax
`[in, out]` kernels, `[Cout, Cin, k, k]` convolution weights become `[k, k, Cin, Cout]`)::

    mapping.fc{n}.{weight,bias}                 mapping_net/fc{n}/{kernel,bias}
    mapping.w_avg                               Converted.w_avg
    synthesis.b4.const [C, 4, 4]                synthesis_net/const [4, 4, C]
    synthesis.b{r}.conv{i}.weight               synthesis_net/b{r}_conv{i}/kernel
    synthesis.b{r}.conv{i}.affine.{weight,bias} synthesis_net/b{r}_conv{i}/affine/{kernel,bias}
    synthesis.b{r}.conv{i}.{bias,noise_strength}
                                                synthesis_net/b{r}_conv{i}/{bias,noise_strength}
    synthesis.b{r}.conv{i}.noise_const [r, r]   Converted.noise["b{r}_conv{i}"]
    synthesis.b{r}.torgb.*                      synthesis_net/b{r}_torgb/*
    *.resample_filter                           checked against `fir.setup_filter()`

Two facts of that code the mapping carries: its up-sampling layers (`conv0`) run their weight as
a true convolution of the up-sampled image (`flip_weight = (up == 1)` in `SynthesisLayer`), where
`fir.upsample_conv2d` correlates, so those kernels are flipped in both spatial axes; and its
`noise_const` buffers are the fixed noise maps, which `noise_mode` accepts as a mapping (with
`"const"` jaxlab draws its own maps instead). Neither the mapping network's learning-rate
multiplier nor the activation clamp is stored in the file: they are arguments here, with that
code's defaults (0.01; 256, as its training configurations set it; 0, no clamp, for the
TensorFlow networks). Conditional generators (`mapping.embed`) and the `orig`/`resnet`
synthesis architectures are rejected with the tensor that shows them.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.core.config import ConfigError
from jaxlab.core.errors import DataFormatError
from jaxlab.video2stylegan import fir
from jaxlab.video2stylegan.models import Generator, channels_at

__all__ = ["Converted", "read_state_dict", "load_stylegan2", "gan_state", "import_state"]

_BLOCK = re.compile(r"synthesis\.b(\d+)\.")


@dataclasses.dataclass(frozen=True)
class Converted:
    """A converted generator.

    Attributes:
      gan: the `GanConfig` fields the file determines (resolution, z_dim, w_dim, mapping_layers,
        mapping_lr_mul, channel_base, channel_max, conv_clamp).
      params: the `Generator` parameter tree (float32 NumPy arrays).
      w_avg: the tracked mean of w, `[w_dim]` (the truncation centre).
      noise: `{layer name: [r, r] map}`, the file's fixed noise maps, for `noise_mode`.
    """

    gan: dict[str, Any]
    params: dict[str, Any]
    w_avg: np.ndarray
    noise: dict[str, np.ndarray]


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The tensors of a `.safetensors` or `.npz` file (no pickle), by name.

    Raises:
      DataFormatError: naming the file when it is missing, of another kind or unreadable.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataFormatError(f"{path}: no such file")
    if path.endswith(".safetensors"):
        try:
            from safetensors.numpy import load_file
        except ImportError as e:
            raise ImportError("reading .safetensors files needs `pip install safetensors`") from e
        try:
            return dict(load_file(path))
        except Exception as e:  # the reader raises its own error types (and KeyError for a dtype it lacks)
            raise DataFormatError(f"{path}: cannot read as safetensors with NumPy ({type(e).__name__}: {e}); "
                                  "bfloat16 tensors need saving as float32") from e
    if path.endswith(".npz"):
        try:
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except (OSError, ValueError) as e:
            raise DataFormatError(f"{path}: cannot read as a NumPy .npz without pickle ({e})") from e
    raise DataFormatError(f"{path}: expected a .safetensors or .npz file of the generator's state_dict")


def load_stylegan2(path: str | os.PathLike, *, conv_clamp: float = 256.0,
                   mapping_lr_mul: float = 0.01) -> Converted:
    """Reads a stylegan2-ada-pytorch generator `state_dict` (see the module docstring).

    Args:
      path: a `.safetensors` or `.npz` file.
      conv_clamp: the activation clamp the network was trained with (not stored in the file; 0: none).
      mapping_lr_mul: the mapping network's learning-rate multiplier (not stored in the file).

    Returns:
      A `Converted` whose `params` make the generator of a `GanConfig` with the fields `gan`
      (`gan.make_models`) compute the file's network.

    Raises:
      DataFormatError: a missing, superfluous or misshapen tensor, or a network jaxlab's
        generator cannot express, naming the file and the tensor.
    """
    path = os.fspath(path)
    sd = read_state_dict(path)
    used: set[str] = set()

    def take(name, shape=None):
        if name not in sd:
            raise DataFormatError(f"{path}: tensor {name!r} is missing")
        v = np.asarray(sd[name])
        if not np.issubdtype(v.dtype, np.floating):
            raise DataFormatError(f"{path}: tensor {name!r}: expected floating point values, got {v.dtype}")
        if shape is not None and v.shape != tuple(shape):
            raise DataFormatError(f"{path}: tensor {name!r}: expected shape {tuple(shape)}, got {v.shape}")
        used.add(name)
        return v.astype(np.float32)

    if any(k.startswith("mapping.embed.") for k in sd):
        raise DataFormatError(f"{path}: tensor 'mapping.embed.weight': conditional generators are not supported")
    w_avg = take("mapping.w_avg")
    if w_avg.ndim != 1:
        raise DataFormatError(f"{path}: tensor 'mapping.w_avg': expected shape [w_dim], got {w_avg.shape}")
    w_dim = w_avg.shape[0]
    layers = 0
    while f"mapping.fc{layers}.weight" in sd:
        layers += 1
    if layers == 0:
        raise DataFormatError(f"{path}: tensor 'mapping.fc0.weight' is missing")
    z_dim = np.shape(sd["mapping.fc0.weight"])[-1]
    mapping = {f"fc{n}": {"kernel": take(f"mapping.fc{n}.weight", (w_dim, z_dim if n == 0 else w_dim)).T,
                          "bias": take(f"mapping.fc{n}.bias", (w_dim,))} for n in range(layers)}

    res = sorted({int(m.group(1)) for k in sd if (m := _BLOCK.match(k))})
    top = res[-1] if res else 0
    if top < 4 or res != [2 ** k for k in range(2, int(math.log2(top)) + 1)]:
        raise DataFormatError(f"{path}: synthesis blocks at {res}: expected b4, b8, ... up to a power of two")
    const = take("synthesis.b4.const")
    if const.ndim != 3 or const.shape[1:] != (4, 4):
        raise DataFormatError(f"{path}: tensor 'synthesis.b4.const': expected shape [C, 4, 4], got {const.shape}")
    chans = {r: const.shape[0] if r == 4 else np.shape(take(f"synthesis.b{r}.conv1.weight"))[0] for r in res}
    cmax = max(chans.values())
    base = chans[top] * top if chans[top] < cmax else cmax * top
    if any(channels_at(r, base, cmax) != c for r, c in chans.items()):
        raise DataFormatError(f"{path}: channels per resolution {chans} are not min(channel_base / r, channel_max) "
                              "for any channel_base, channel_max")
    f2 = np.outer(fir.setup_filter(), fir.setup_filter())

    def layer(name, cin, cout, r, flip):
        pre = f"synthesis.{name}"
        kernel = take(f"{pre}.weight", (cout, cin, 3, 3)).transpose(2, 3, 1, 0)
        noise = take(f"{pre}.noise_const", (r, r))
        _check_filter(path, f"{pre}.resample_filter", take(f"{pre}.resample_filter"), f2)
        return noise, {"affine": {"kernel": take(f"{pre}.affine.weight", (cin, w_dim)).T,
                                  "bias": take(f"{pre}.affine.bias", (cin,))},
                       "kernel": kernel[::-1, ::-1].copy() if flip else kernel,
                       "bias": take(f"{pre}.bias", (cout,)), "noise_strength": take(f"{pre}.noise_strength", ())}

    def torgb(r, cin):
        pre = f"synthesis.b{r}.torgb"
        if f"{pre}.weight" not in sd:
            raise DataFormatError(f"{path}: tensor {pre + '.weight'!r} is missing: only the 'skip' synthesis "
                                  "architecture (a toRGB layer in every block) is supported")
        return {"affine": {"kernel": take(f"{pre}.affine.weight", (cin, w_dim)).T,
                           "bias": take(f"{pre}.affine.bias", (cin,))},
                "kernel": take(f"{pre}.weight", (3, cin, 1, 1)).transpose(2, 3, 1, 0),
                "bias": take(f"{pre}.bias", (3,))}

    synthesis, noise = {"const": const.transpose(1, 2, 0)}, {}
    noise["b4_conv1"], synthesis["b4_conv1"] = layer("b4.conv1", chans[4], chans[4], 4, False)
    synthesis["b4_torgb"] = torgb(4, chans[4])
    for r in res[1:]:
        cin, c = chans[r // 2], chans[r]
        noise[f"b{r}_conv0"], synthesis[f"b{r}_conv0"] = layer(f"b{r}.conv0", cin, c, r, True)
        noise[f"b{r}_conv1"], synthesis[f"b{r}_conv1"] = layer(f"b{r}.conv1", c, c, r, False)
        synthesis[f"b{r}_torgb"] = torgb(r, c)
    for k in list(sd):  # the blocks' own filter buffers (their images' up-sampling)
        if k.endswith(".resample_filter") and k.startswith("synthesis."):
            _check_filter(path, k, take(k), f2)
    extra = sorted(set(sd) - used)
    if extra:
        hint = " (the 'resnet' synthesis architecture)" if any(".skip." in k for k in extra) else ""
        raise DataFormatError(f"{path}: tensors jaxlab's generator has no place for{hint}: {extra[:8]}"
                              + (f" and {len(extra) - 8} more" if len(extra) > 8 else ""))

    cfg = {"resolution": top, "z_dim": int(z_dim), "w_dim": int(w_dim), "mapping_layers": layers,
           "mapping_lr_mul": float(mapping_lr_mul), "channel_base": int(base), "channel_max": int(cmax),
           "conv_clamp": float(conv_clamp or 0.0)}
    params = {"mapping_net": mapping, "synthesis_net": synthesis}
    _check_tree(path, cfg, params)
    return Converted(cfg, params, w_avg, noise)


def _check_filter(path, name, f, expected):
    if f.shape != expected.shape or not np.allclose(f, expected, rtol=1e-6, atol=1e-7):
        raise DataFormatError(f"{path}: tensor {name!r}: expected the [1, 3, 3, 1] FIR as a normalised "
                              f"{expected.shape[0]}x{expected.shape[1]} outer product, got {np.round(f, 4).tolist()}")


def _check_tree(path, cfg, params):
    g = Generator(**{**cfg, "conv_clamp": cfg["conv_clamp"] or None})
    want = jax.eval_shape(g.init, {"params": jax.random.key(0), "noise": jax.random.key(0)},
                          jnp.zeros((1, cfg["z_dim"])))["params"]
    got = jax.tree.map(lambda v: jax.ShapeDtypeStruct(v.shape, v.dtype), params)
    if jax.tree.structure(want) != jax.tree.structure(got) or jax.tree.leaves(want) != jax.tree.leaves(got):
        raise DataFormatError(f"{path}: the converted parameters do not form the generator of {cfg}")


def gan_state(converted: Converted, gc, seed: int = 0):
    """A `gan.GanState` for the `GanConfig` `gc` (whose fields must agree with `converted.gan`) with
    the converted generator as G and G-EMA and its w̄; D and the optimisers start afresh."""
    from jaxlab.video2stylegan import gan

    differ = {k: (getattr(gc, k), v) for k, v in converted.gan.items() if getattr(gc, k) != v}
    if differ:
        raise ValueError(f"GanConfig fields differ from the converted generator's (config, file): {differ}")
    state = gan.init_state(gc, seed)
    params = jax.tree.map(jnp.asarray, converted.params)
    return state.replace(g=state.g.replace(params=params), g_ema=jax.tree.map(jnp.copy, params),
                         w_avg=jnp.asarray(converted.w_avg))


def import_state(gc, seed: int = 0):
    """The `gan.GanState` of the file `gc.weights` names, for the `GanConfig` `gc`, with its step
    set to `gc.loop.num_steps` (a finished run), and the `Converted` it came from. G and G-EMA
    are the file's, with its w̄; D and the optimisers start afresh. The state renders with
    jaxlab's own fixed noise maps (`noise_mode="const"`), not the file's (`Converted.noise`).

    Raises:
      ConfigError: no file named, or shape fields of `gc` that differ from the file's (the
        message gives the flags that fit it).
    """
    if not gc.weights:
        raise ConfigError("config field 'gan.weights' must name a generator state_dict (.safetensors or .npz)")
    conv = load_stylegan2(gc.weights, conv_clamp=gc.conv_clamp, mapping_lr_mul=gc.mapping_lr_mul)
    differ = {k: v for k, v in conv.gan.items() if getattr(gc, k) != v}
    if differ:
        flags = " ".join(f"--config.gan.{k}={v}" for k, v in differ.items())
        if "resolution" in differ:
            flags += f" --config.faces.resolution={differ['resolution']}"
        raise ConfigError(f"{gc.weights} holds a generator of other shapes than config 'gan': run with {flags}")
    state = gan_state(conv, gc, seed)
    return state.replace(step=jnp.asarray(gc.loop.num_steps, state.step.dtype)), conv
