"""`convert.load_stylegan2` against a NumPy StyleGAN2 that reads the stylegan2-ada-pytorch names.

The reference follows that code's semantics (NCHW, `[out, in]` weights, the up-sampling layers'
true convolution of the FIR-up-sampled image, the W+ indices of its `SynthesisNetwork.forward`),
not jaxlab's, so a wrong transpose, a missing flip or a shifted W+ index shows as a mismatch.
"""

import dataclasses
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.core.errors import DataFormatError
from jaxlab.video2stylegan import configs, convert, gan
from jaxlab.video2stylegan.models import Generator

SQ2 = math.sqrt(2.0)
F1 = np.array([1.0, 3.0, 3.0, 1.0]) / 8.0


def _state_dict(rng, res=16, z_dim=6, w_dim=5, layers=2, chans=None):
    """A random generator state_dict with that code's tensor names and shapes (skip architecture)."""
    chans = chans or {4: 6, 8: 6, 16: 4}
    f2 = np.outer(F1, F1).astype(np.float32)
    n = lambda *s: rng.normal(size=s).astype(np.float32)
    sd = {"mapping.w_avg": n(w_dim)}
    for i in range(layers):
        sd[f"mapping.fc{i}.weight"], sd[f"mapping.fc{i}.bias"] = n(w_dim, z_dim if i == 0 else w_dim) * 100, n(w_dim)

    def layer(pre, cin, cout, r):
        sd.update({f"{pre}.weight": n(cout, cin, 3, 3), f"{pre}.bias": n(cout), f"{pre}.noise_strength": n(),
                   f"{pre}.noise_const": n(r, r), f"{pre}.resample_filter": f2,
                   f"{pre}.affine.weight": n(cin, w_dim), f"{pre}.affine.bias": 1 + 0.3 * n(cin)})

    def torgb(pre, cin):
        sd.update({f"{pre}.weight": n(3, cin, 1, 1), f"{pre}.bias": n(3), f"{pre}.affine.weight": n(cin, w_dim),
                   f"{pre}.affine.bias": 1 + 0.3 * n(cin)})

    r = 4
    while r <= res:
        sd[f"synthesis.b{r}.resample_filter"] = f2
        if r == 4:
            sd["synthesis.b4.const"] = n(chans[4], 4, 4)
        else:
            layer(f"synthesis.b{r}.conv0", chans[r // 2], chans[r], r)
        layer(f"synthesis.b{r}.conv1", chans[r], chans[r], r)
        torgb(f"synthesis.b{r}.torgb", chans[r])
        r *= 2
    return sd


def _lrelu(x):
    return np.where(x >= 0, x, 0.2 * x) * SQ2


def _fc(x, w, b, lr=1.0):
    return x @ (w * (lr / math.sqrt(w.shape[1]))).T + b * lr


def _correlate(x, w, pad):
    """`F.conv2d(x, w, padding=pad)`: x [B, I, H, W], w [O, I, k, k]."""
    k = w.shape[-1]
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    h, wd = xp.shape[2] - k + 1, xp.shape[3] - k + 1
    return sum(np.einsum("bihw,oi->bohw", xp[:, :, a:a + h, c:c + wd], w[:, :, a, c])
               for a in range(k) for c in range(k))


def _upfirdn_up2(x, p0, p1):
    """`upfirdn2d(x, f, up=2, padding=[p0, p1, p0, p1], gain=4)`: zero insertion, padding, then
    the true convolution with outer(f, f)·4."""
    b, c, h, w = x.shape
    u = np.zeros((b, c, 2 * h, 2 * w))
    u[:, :, ::2, ::2] = x
    u = np.pad(u, ((0, 0), (0, 0), (p0, p1), (p0, p1)))
    f = (np.outer(F1, F1) * 4)[::-1, ::-1]
    ho, wo = u.shape[2] - 3, u.shape[3] - 3
    return sum(u[:, :, a:a + ho, e:e + wo] * f[a, e] for a in range(4) for e in range(4))


def _reference(sd, z, psi=1.0, clamp=256.0):
    x = z / np.sqrt(np.mean(z ** 2, axis=1, keepdims=True) + 1e-8)
    i = 0
    while f"mapping.fc{i}.weight" in sd:
        x = _lrelu(_fc(x, sd[f"mapping.fc{i}.weight"], sd[f"mapping.fc{i}.bias"], 0.01))
        i += 1
    w = sd["mapping.w_avg"] + psi * (x - sd["mapping.w_avg"])

    def layer(pre, x, wv, up):
        weight = sd[f"{pre}.weight"].astype(np.float64)
        s = _fc(wv, sd[f"{pre}.affine.weight"], sd[f"{pre}.affine.bias"])
        xs = x * s[:, :, None, None]
        if up:  # flip_weight = False: a true convolution of the up-sampled image
            y = _correlate(_upfirdn_up2(xs, 3, 2), weight[:, :, ::-1, ::-1], 0)
        else:
            y = _correlate(xs, weight, 1)
        d = 1 / np.sqrt(np.einsum("oikl,bi->bo", weight ** 2, s ** 2) + 1e-8)
        y = y * d[:, :, None, None] + sd[f"{pre}.noise_const"] * sd[f"{pre}.noise_strength"]
        return np.clip(_lrelu(y + sd[f"{pre}.bias"][None, :, None, None]), -clamp, clamp)

    def torgb(pre, x, wv):
        s = _fc(wv, sd[f"{pre}.affine.weight"], sd[f"{pre}.affine.bias"]) / math.sqrt(x.shape[1])
        y = _correlate(x * s[:, :, None, None], sd[f"{pre}.weight"], 0)
        return np.clip(y + sd[f"{pre}.bias"][None, :, None, None], -clamp, clamp)

    x = np.repeat(sd["synthesis.b4.const"][None].astype(np.float64), len(z), 0)
    x = layer("synthesis.b4.conv1", x, w, False)
    img, r = torgb("synthesis.b4.torgb", x, w), 8
    while f"synthesis.b{r}.conv0.weight" in sd:  # every entry of W+ is w (no mixing)
        x = layer(f"synthesis.b{r}.conv0", x, w, True)
        x = layer(f"synthesis.b{r}.conv1", x, w, False)
        img = _upfirdn_up2(img, 2, 1) + torgb(f"synthesis.b{r}.torgb", x, w)
        r *= 2
    return img.transpose(0, 2, 3, 1)


def _save(tmp_path, sd, kind):
    path = tmp_path / f"g.{kind}"
    if kind == "npz":
        np.savez(path, **sd)
    else:
        from safetensors.numpy import save_file

        save_file(sd, str(path))
    return path


@pytest.mark.parametrize("kind", ["safetensors", "npz"])
def test_converted_generator_matches_the_reference(tmp_path, kind):
    rng = np.random.default_rng(0)
    sd = _state_dict(rng)
    conv = convert.load_stylegan2(_save(tmp_path, sd, kind))
    assert conv.gan == {"resolution": 16, "z_dim": 6, "w_dim": 5, "mapping_layers": 2, "mapping_lr_mul": 0.01,
                        "channel_base": 64, "channel_max": 6, "conv_clamp": 256.0}
    z = rng.normal(size=(3, 6)).astype(np.float32)
    g, _ = gan.make_models(dataclasses.replace(configs.get_config("smoke").gan, **conv.gan))
    for psi in (1.0, 0.6):
        ws = gan.truncate(gan.map_ws(g, conv.params, z), conv.w_avg, psi)
        ours = g.apply({"params": conv.params}, ws, conv.noise, method=Generator.synthesis)
        np.testing.assert_allclose(np.asarray(ours), _reference(sd, z.astype(np.float64), psi), rtol=2e-4, atol=2e-4)
    # the clamp is not in the file: a small one shows that it is applied where that code applies it
    conv = convert.load_stylegan2(tmp_path / f"g.{kind}", conv_clamp=0.3)
    g, _ = gan.make_models(dataclasses.replace(configs.get_config("smoke").gan, **conv.gan))
    ours = g.apply({"params": conv.params}, gan.map_ws(g, conv.params, z), conv.noise, method=Generator.synthesis)
    ref = _reference(sd, z.astype(np.float64), clamp=0.3)
    assert np.abs(ref).max() > 0.3 and not np.allclose(ref, _reference(sd, z.astype(np.float64)), atol=1e-3)
    np.testing.assert_allclose(np.asarray(ours), ref, rtol=2e-4, atol=2e-4)


def test_up_convolution_kernels_are_flipped(tmp_path):
    # an up-sampling kernel that is symmetric except for one tap: the converted kernel has that tap
    # at the mirrored position; a kernel used as the file stores it would not
    sd = _state_dict(np.random.default_rng(1))
    w = np.zeros_like(sd["synthesis.b8.conv0.weight"])
    w[:, :, 0, 2] = 1.0
    sd["synthesis.b8.conv0.weight"] = w
    sd["synthesis.b8.conv1.weight"][:, :, 0, 2] = 5.0
    conv = convert.load_stylegan2(_save(tmp_path, sd, "npz"))
    k0, k1 = conv.params["synthesis_net"]["b8_conv0"]["kernel"], conv.params["synthesis_net"]["b8_conv1"]["kernel"]
    assert np.all(k0[2, 0] == 1.0) and np.count_nonzero(k0) == k0[2, 0].size
    assert np.all(k1[0, 2] == 5.0)


def test_given_noise_maps_are_used_and_checked(tmp_path):
    sd = _state_dict(np.random.default_rng(2))
    conv = convert.load_stylegan2(_save(tmp_path, sd, "npz"))
    g, _ = gan.make_models(dataclasses.replace(configs.get_config("smoke").gan, **conv.gan))
    ws = jnp.ones((1, g.num_ws, 5))
    out = lambda noise: np.asarray(g.apply({"params": conv.params}, ws, noise, method=Generator.synthesis))
    zero = {k: np.zeros_like(v) for k, v in conv.noise.items()}
    np.testing.assert_allclose(out(zero), out("none"), rtol=1e-6, atol=1e-6)
    assert np.abs(out(conv.noise) - out("none")).max() > 1e-3
    with pytest.raises(ValueError, match="b16_conv1"):
        out({k: v for k, v in conv.noise.items() if k != "b16_conv1"})
    with pytest.raises(ValueError, match=r"b8_conv0.*\[8, 8\]"):
        out({**conv.noise, "b8_conv0": np.zeros((4, 4))})


def test_gan_state_carries_the_converted_generator(tmp_path):
    conv = convert.load_stylegan2(_save(tmp_path, _state_dict(np.random.default_rng(3)), "npz"))
    gc = dataclasses.replace(configs.get_config("smoke").gan, **conv.gan)
    state = convert.gan_state(conv, gc)
    for tree in (state.g.params, state.g_ema):
        jax.tree.map(np.testing.assert_array_equal, tree, conv.params)
    np.testing.assert_array_equal(state.w_avg, conv.w_avg)
    with pytest.raises(ValueError, match="resolution"):
        convert.gan_state(conv, dataclasses.replace(gc, resolution=32))


def _err(tmp_path, sd, match, kind="npz"):
    path = _save(tmp_path, sd, kind)
    with pytest.raises(DataFormatError, match=match) as e:
        convert.load_stylegan2(path)
    assert str(path) in str(e.value)


def test_bad_files_are_rejected_with_file_and_tensor(tmp_path):
    rng = np.random.default_rng(4)
    sd = _state_dict(rng)
    _err(tmp_path, {k: v for k, v in sd.items() if k != "synthesis.b8.conv1.affine.bias"},
         "'synthesis.b8.conv1.affine.bias' is missing")
    _err(tmp_path, {k: v for k, v in sd.items() if k != "synthesis.b16.conv1.weight"},
         "'synthesis.b16.conv1.weight' is missing")
    _err(tmp_path, {**sd, "synthesis.b16.conv0.weight": np.zeros((4, 6, 3, 1), np.float32)},
         r"'synthesis.b16.conv0.weight': expected shape \(4, 6, 3, 3\), got \(4, 6, 3, 1\)")
    _err(tmp_path, {**sd, "mapping.embed.weight": np.zeros((5, 2), np.float32)}, "conditional")
    _err(tmp_path, {k: v for k, v in sd.items() if not k.startswith("synthesis.b8.torgb")}, "'skip'")
    _err(tmp_path, {**sd, "synthesis.b16.skip.weight": np.zeros((4, 5, 1, 1), np.float32)}, "resnet")
    _err(tmp_path, {**sd, "synthesis.b8.resample_filter": np.eye(4, dtype=np.float32)}, "resample_filter")
    _err(tmp_path, {**sd, "synthesis.b16.conv1.bias": np.arange(4)}, "'synthesis.b16.conv1.bias': expected floating")
    _err(tmp_path, _state_dict(rng, chans={4: 6, 8: 4, 16: 5}), "channels per resolution")
    _err(tmp_path, {k: v for k, v in sd.items() if not k.startswith("synthesis.b8.")}, "synthesis blocks")
    (tmp_path / "g.pt").write_bytes(b"\x80\x04")
    with pytest.raises(DataFormatError, match="safetensors or .npz"):
        convert.load_stylegan2(tmp_path / "g.pt")
    (tmp_path / "bad.safetensors").write_bytes(b"not a file")
    with pytest.raises(DataFormatError, match="bad.safetensors"):
        convert.load_stylegan2(tmp_path / "bad.safetensors")


def test_import_generator_makes_the_run_generator(tmp_path, capsys):
    from jaxlab import cli
    from jaxlab.video2stylegan import run

    path = _save(tmp_path, _state_dict(np.random.default_rng(5)), "safetensors")
    wd = tmp_path / "run"
    base = ["video2stylegan", "import-generator", "--config", "smoke", "--workdir", str(wd),
            f"--config.gan.weights={path}", "--config.encoder.loop.num_steps=2",
            "--config.encoder.loop.checkpoint_every=2"]
    assert cli.main(base) == 2
    err = capsys.readouterr().err
    flags = err[err.index("run with ") + len("run with "):].split()
    assert set(flags) == {"--config.gan.z_dim=6", "--config.gan.w_dim=5", "--config.gan.channel_base=64",
                          "--config.gan.channel_max=6"}  # smoke is 16 px with mapping_layers 2 already
    assert cli.main(base + flags) == 0
    loaded = run.load(wd)
    conv = convert.load_stylegan2(path)
    assert loaded.step == loaded.config.gan.loop.num_steps == int(loaded.state.step)
    jax.tree.map(np.testing.assert_array_equal, loaded.state.g_ema, conv.params)
    np.testing.assert_array_equal(loaded.state.w_avg, conv.w_avg)
    assert (wd / "figures" / "samples.png").exists()
    summary = json.loads((wd / "summary.json").read_text())["results"]["generator"]
    assert summary["imported_from"] == str(path) and summary["channel_base"] == 64
    # the encoder trains against the imported generator
    assert cli.main(["video2stylegan", "train-encoder", *base[2:], *flags]) == 0
    assert json.loads((wd / "summary.json").read_text())["results"]["encoder"]["steps"] == 2
