import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.signal

from jaxlab.video2stylegan import fir, gan, models


def _upfirdn_scipy(x, f, up, down):
    """Reference upfirdn along H then W with scipy (full convolution), [H, W] input."""
    y = np.stack([scipy.signal.upfirdn(f, row, up=up) for row in x.T]).T
    return np.stack([scipy.signal.upfirdn(f, col, up=up) for col in y])


def test_fir_upsample_matches_scipy_upfirdn():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(7, 5)).astype(np.float32)
    f = fir.setup_filter()
    ours = np.asarray(fir.upsample2d(jnp.asarray(x)[None, :, :, None]))[0, :, :, 0]
    full = _upfirdn_scipy(x, f * 2, up=2, down=1)  # gain 4 = 2 per axis
    # stylegan's padding (2, 1) with a 4-tap filter keeps full-convolution samples 1 .. 2H
    np.testing.assert_allclose(ours, full[1:15, 1:11], rtol=1e-5, atol=1e-5)
    # interpolation of a constant keeps the constant away from the border
    c = np.asarray(fir.upsample2d(jnp.ones((1, 6, 6, 1))))[0, 2:-2, 2:-2, 0]
    np.testing.assert_allclose(c, 1.0, rtol=1e-6)


def test_fir_downsample_matches_scipy():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(8, 8)).astype(np.float32)
    f = fir.setup_filter()
    ours = np.asarray(fir.downsample2d(jnp.asarray(x)[None, :, :, None]))[0, :, :, 0]
    full = _upfirdn_scipy(x, f, up=1, down=1)  # [11, 11]
    np.testing.assert_allclose(ours, full[2::2, 2::2][:4, :4], rtol=1e-5, atol=1e-5)


def _upsample_conv_numpy(x, w, f, up):
    """`conv2d_resample(up)` by its definition, per sample and channel with scipy: zero-insert,
    pad k//2 + the FIR's own padding, 2-D true convolution with outer(f, f)·up², then a VALID
    cross-correlation with w. x [B, H, W, Ci], w [k, k, Ci, Co]."""
    b, h, wd, ci = x.shape
    k, co = w.shape[0], w.shape[3]
    lo, hi = k // 2 + (len(f) + up - 1) // 2, k // 2 + (len(f) - up) // 2
    f2 = np.outer(f, f) * up * up
    out = np.zeros((b, up * h, up * wd, co))
    for n in range(b):
        u = np.zeros((up * h, up * wd, ci))
        u[::up, ::up] = x[n]
        u = np.pad(u, ((lo, hi), (lo, hi), (0, 0)))
        z = np.stack([scipy.signal.convolve2d(u[:, :, c], f2, mode="valid") for c in range(ci)], -1)
        for i in range(up * h):
            for j in range(up * wd):
                out[n, i, j] = np.einsum("abc,abcd->d", z[i:i + k, j:j + k], w)
    return out


@pytest.mark.parametrize("k,taps,shape", [(3, (1, 3, 3, 1), (2, 4, 5, 3)), (3, (1, 2, 5, 3), (1, 3, 3, 2)),
                                          (1, (1, 3, 3, 1), (1, 4, 3, 2)), (5, (1, 3, 3, 1), (1, 3, 4, 2))])
def test_upsample_conv_matches_its_definition(k, taps, shape):
    # an asymmetric filter and kernel catch a flipped tap or filter; k = 1 and 5 the paddings
    rng = np.random.default_rng(5)
    x = rng.normal(size=shape).astype(np.float32)
    w = rng.normal(size=(k, k, shape[-1], 3)).astype(np.float32)
    f = fir.setup_filter(taps)
    ours = np.asarray(fir.upsample_conv2d(jnp.asarray(x), jnp.asarray(w), f))
    np.testing.assert_allclose(ours, _upsample_conv_numpy(x, w, f, 2), rtol=1e-4, atol=1e-4)


def _upsample_conv_definition(x, w):
    """`upsample_conv2d`'s definition in JAX: FIR up-sampling with a border of k//2 interpolated
    pixels (padding (3, 2) for k = 3 and 4 taps), then a VALID convolution; autodiff's gradients."""
    z = fir.upfirdn2d(x, fir.setup_filter(), up=2, pad=(3, 2), gain=4)
    return jax.lax.conv_general_dilated(z, w, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))


def test_upsample_conv_gradient_equals_autodiff_of_its_definition():
    # the hand-written backward of the overlap-add against JAX's differentiation of the same
    # function written as FIR up-sampling with a wide border and a VALID convolution
    rng = np.random.default_rng(6)
    x = jnp.asarray(rng.normal(size=(2, 5, 4, 3)).astype(np.float32))
    w = jnp.asarray(rng.normal(size=(3, 3, 3, 4)).astype(np.float32))
    f = fir.setup_filter()

    g = jnp.asarray(rng.normal(size=(2, 10, 8, 4)).astype(np.float32))
    ours = jax.vjp(lambda x, w: fir.upsample_conv2d(x, w, f), x, w)[1](g)
    ref = jax.vjp(_upsample_conv_definition, x, w)[1](g)
    for a, b in zip(ours, ref):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_upsample_conv_second_derivative_equals_its_definitions():
    # the path-length penalty differentiates the generator twice (reverse over reverse)
    rng = np.random.default_rng(9)
    x = jnp.asarray(rng.normal(size=(2, 4, 4, 3)).astype(np.float32))
    w = jnp.asarray(rng.normal(size=(3, 3, 3, 2)).astype(np.float32))
    y = jnp.asarray(rng.normal(size=(2, 8, 8, 2)).astype(np.float32))
    f = fir.setup_filter()

    def penalty(conv, w):
        gx = jax.grad(lambda x: jnp.sum(conv(x, w) * y))(x)
        return jnp.sum(jnp.square(gx) * x)

    ours = jax.grad(lambda w: penalty(lambda x, w: fir.upsample_conv2d(x, w, f), w))(w)
    np.testing.assert_allclose(ours, jax.grad(lambda w: penalty(_upsample_conv_definition, w))(w),
                               rtol=1e-4, atol=1e-3)


def test_upsample_conv_differs_from_upsample_then_same_conv_only_on_the_border():
    # the "upsample" variant pads the interpolated image with zeros; inside, the two agree
    rng = np.random.default_rng(7)
    x = jnp.asarray(rng.normal(size=(1, 6, 6, 2)).astype(np.float32))
    w = jnp.asarray(rng.normal(size=(3, 3, 2, 2)).astype(np.float32))
    a = np.asarray(fir.upsample_conv2d(x, w))
    b = np.asarray(jax.lax.conv_general_dilated(fir.upsample2d(x), w, (1, 1), "SAME",
                                                dimension_numbers=("NHWC", "HWIO", "NHWC")))
    np.testing.assert_allclose(a[:, 1:-1, 1:-1], b[:, 1:-1, 1:-1], rtol=1e-4, atol=1e-4)
    assert np.abs(a - b)[:, [0, -1]].max() > 1e-2


def test_upsample_conv_rejects_an_even_or_mismatched_kernel():
    x = jnp.ones((1, 4, 4, 3))
    with pytest.raises(ValueError, match="odd k"):
        fir.upsample_conv2d(x, jnp.ones((2, 2, 3, 1)))
    with pytest.raises(ValueError, match="Cin=3"):
        fir.upsample_conv2d(x, jnp.ones((3, 3, 2, 1)))


def _modconv_numpy(x, w, s, demod):
    """Explicit per-sample convolution with SAME zero padding: x [B,H,W,Ci], w [k,k,Ci,Co], s [B,Ci]."""
    b, h, wd, ci = x.shape
    k, _, _, co = w.shape
    p = k // 2
    out = np.zeros((b, h, wd, co))
    for n in range(b):
        wn = w * s[n][None, None, :, None]
        if demod:
            wn = wn / np.sqrt((wn ** 2).sum(axis=(0, 1, 2), keepdims=True) + 1e-8)
        xp = np.pad(x[n], ((p, p), (p, p), (0, 0)))
        for i in range(h):
            for j in range(wd):
                out[n, i, j] = np.einsum("abc,abcd->d", xp[i:i + k, j:j + k], wn)
    return out


@pytest.mark.parametrize("demod", [True, False])
def test_modulated_conv_matches_explicit_numpy_in_all_three_forms(demod):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3, 5, 6, 4)).astype(np.float32)
    w = rng.normal(size=(3, 3, 4, 2)).astype(np.float32)
    s = rng.uniform(0.5, 2, size=(3, 4)).astype(np.float32)
    ref = _modconv_numpy(x, w, s, demod)
    x, w, s = jnp.asarray(x), jnp.asarray(w), jnp.asarray(s)
    act = np.asarray(models.modulated_conv2d(x, w, s, demod, fused=False))
    np.testing.assert_allclose(act, ref, rtol=1e-4, atol=1e-4)
    for mode in (True, "vmap"):  # grouped conv over the batch, one conv per sample
        np.testing.assert_allclose(models.modulated_conv2d(x, w, s, demod, fused=mode), act, rtol=1e-4, atol=1e-4)


def test_modulated_1x1_equals_the_convolution_form_with_first_and_second_derivatives():
    # the toRGB layers' 1x1 modulated convolution has a hand-written backward pass; autodiff of
    # the plain expression conv(x·s, W) is the reference, for values, gradients with respect to
    # all three inputs, and a second derivative (the path-length penalty differentiates through it)
    rng = np.random.default_rng(11)
    x = jnp.asarray(rng.normal(size=(3, 4, 5, 6)).astype(np.float32))
    w = jnp.asarray(rng.normal(size=(6, 3)).astype(np.float32))
    s = jnp.asarray(rng.uniform(0.5, 2, size=(3, 6)).astype(np.float32))
    proj = jnp.asarray(rng.normal(size=(3, 4, 5, 3)).astype(np.float32))

    def plain(x, w, s):
        return jnp.einsum("bhwc,co->bhwo", x * s[:, None, None, :], w, precision="highest")

    def loss(f):
        return lambda x, w, s: jnp.sum(f(x, w, s) * proj)

    def second(f):  # d/dw of the squared gradient norm with respect to the styles
        return jax.grad(lambda w: jnp.sum(jax.grad(loss(f), argnums=2)(x, w, s) ** 2))(w)

    want = jax.grad(loss(plain), argnums=(0, 1, 2))(x, w, s)
    for form in ("batched", "shared"):
        with models.one_by_one_form(form):
            y = models.modulated_1x1(x, w, s)
            got = jax.grad(loss(models.modulated_1x1), argnums=(0, 1, 2))(x, w, s)
            got2 = second(models.modulated_1x1)
        np.testing.assert_allclose(y, plain(x, w, s), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(y, _modconv_numpy(np.asarray(x), np.asarray(w)[None, None], np.asarray(s), False),
                                   rtol=1e-4, atol=1e-4)
        for a, b in zip(got, want, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(got2, second(plain), rtol=1e-4, atol=1e-3)
    with pytest.raises(ValueError, match="batched"):
        with models.one_by_one_form("grouped"):
            pass
    # modulated_conv2d takes this path for 1x1 kernels without demodulation
    np.testing.assert_allclose(models.modulated_conv2d(x, w[None, None], s, False), plain(x, w, s),
                               rtol=1e-5, atol=1e-5)


def test_up_modulated_conv_matches_per_sample_weights_in_all_three_forms():
    # modulation before and demodulation after the up-sampling convolution equal the
    # per-sample weights W·s·d convolved as `conv2d_resample(up=2)` defines it
    rng = np.random.default_rng(8)
    x = rng.normal(size=(2, 3, 4, 3)).astype(np.float32)
    w = rng.normal(size=(3, 3, 3, 2)).astype(np.float32)
    s = rng.uniform(0.5, 2, size=(2, 3)).astype(np.float32)
    ref = []
    for n in range(2):
        wn = w * s[n][None, None, :, None]
        wn = wn / np.sqrt((wn ** 2).sum(axis=(0, 1, 2), keepdims=True) + 1e-8)
        ref.append(_upsample_conv_numpy(x[n:n + 1], wn, fir.setup_filter(), 2)[0])
    for mode in (False, True, "vmap"):
        out = models.modulated_conv2d(jnp.asarray(x), jnp.asarray(w), jnp.asarray(s), True, fused=mode, up=True)
        np.testing.assert_allclose(out, np.stack(ref), rtol=1e-4, atol=1e-4)


def test_generator_up_conv_forms_share_parameters_and_agree_inside():
    # both forms take the same parameters (checkpoints load either way); "transpose" is the
    # default, and the forms differ only on the up-sampled layers' borders
    z = jnp.zeros((1, 8))
    gens = [models.Generator(resolution=16, z_dim=8, w_dim=8, mapping_layers=1, channel_base=64, channel_max=8,
                             up_conv=u) for u in ("transpose", "upsample")]
    trees = [jax.tree.structure(jax.eval_shape(lambda g=g: g.init(jax.random.key(1), z, "const"))) for g in gens]
    assert trees[0] == trees[1]
    layer = {u: models.SynthesisLayer(8, up=True, up_conv=u) for u in ("transpose", "upsample")}
    x = jax.random.normal(jax.random.key(2), (2, 6, 6, 8))
    w = jax.random.normal(jax.random.key(3), (2, 8))
    lp = jax.jit(lambda: layer["transpose"].init(jax.random.key(4), x, w, "none"))()
    a, b = (np.asarray(jax.jit(layer[u].apply, static_argnums=3)(lp, x, w, "none")) for u in ("transpose", "upsample"))
    np.testing.assert_allclose(a[:, 1:-1, 1:-1], b[:, 1:-1, 1:-1], rtol=1e-4, atol=1e-4)
    assert np.abs(a - b).max() > 1e-3
    assert models.Generator().up_conv == "transpose"
    with pytest.raises(ValueError, match="up_conv"):
        bad = models.SynthesisLayer(8, up=True, up_conv="nearest")
        jax.eval_shape(lambda: bad.init(jax.random.key(4), x, w, "none"))


def test_demodulation_makes_the_output_invariant_to_style_scale():
    rng = np.random.default_rng(3)
    x, w = jnp.asarray(rng.normal(size=(2, 4, 4, 3))), jnp.asarray(rng.normal(size=(3, 3, 3, 5)))
    s = jnp.asarray(rng.uniform(0.5, 2, size=(2, 3)))
    a = models.modulated_conv2d(x, w, s, True)
    b = models.modulated_conv2d(x, w, s * 7.0, True)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    c = models.modulated_conv2d(x, w, s * 7.0, False)  # without demodulation it scales
    np.testing.assert_allclose(c, 7.0 * models.modulated_conv2d(x, w, s, False), rtol=1e-4, atol=1e-4)


def test_ws_layout_matches_the_official_1024_ranges():
    lay = models.ws_layout(1024)
    assert models.num_ws(1024) == 18 and models.num_ws(32) == 8 and models.num_ws(64) == 10
    assert max(lay.values()) == 17
    assert lay["b4.conv1"] == 0 and lay["b4.torgb"] == 1 and lay["b8.conv0"] == 1
    assert lay["b16.conv0"] == 3 and lay["b64.conv0"] == 7 and lay["b1024.torgb"] == 17
    for r in (8, 16, 32, 64, 128, 256, 512):  # a block's toRGB shares its index with the next up-conv
        assert lay[f"b{r}.torgb"] == lay[f"b{2 * r}.conv0"]
    # layers at 4-8 read w0-w3, 16-32 read w3-w7, 64-1024 read w7-w17
    assert {lay[k] for k in lay if k.split(".")[0] in ("b4", "b8")} == {0, 1, 2, 3}
    assert {lay[k] for k in lay if k.split(".")[0] in ("b16", "b32")} == {3, 4, 5, 6, 7}
    assert {lay[k] for k in lay if int(k.split(".")[0][1:]) >= 64} == set(range(7, 18))


@pytest.fixture(scope="module")
def tiny_g():
    g = models.Generator(resolution=16, z_dim=8, w_dim=8, mapping_layers=2, channel_base=64, channel_max=8)
    params = g.init({"params": jax.random.key(0), "noise": jax.random.key(1)}, jnp.zeros((1, 8)))["params"]
    # non-zero noise strengths so that noise shows in the output
    params = jax.tree_util.tree_map_with_path(
        lambda p, v: jnp.full_like(v, 0.5) if "noise_strength" in jax.tree_util.keystr(p) else v, params)
    return g, params


def test_generator_uses_ws_as_the_layout_says(tiny_g):
    g, params = tiny_g
    ws = jax.random.normal(jax.random.key(2), (1, models.num_ws(16), 8))

    def block8(w):
        _, inter = g.apply({"params": params}, w, "const", method=models.Generator.synthesis,
                           mutable=["intermediates"])
        return inter["intermediates"]["synthesis_net"]["b8"][0]

    jac = jax.jacobian(lambda w: jnp.sum(block8(w) ** 2))(ws)[0]  # [num_ws, w_dim]
    used = np.nonzero(np.abs(np.asarray(jac)).sum(-1) > 0)[0].tolist()
    assert used == [0, 1, 2]  # b4.conv1 (0), b8.conv0 (1), b8.conv1 (2); b8.torgb (3) is not in the features
    img_jac = jax.jacobian(lambda w: jnp.sum(gan.generate(g, params, w) ** 2))(ws)[0]
    assert np.all(np.abs(np.asarray(img_jac)).sum(-1) > 0)  # the image depends on all 6 entries


def test_truncation_psi_zero_gives_w_avg_and_cutoff():
    ws = jax.random.normal(jax.random.key(0), (2, 8, 4))
    w_avg = jnp.arange(4.0)
    np.testing.assert_allclose(gan.truncate(ws, w_avg, 0.0), jnp.broadcast_to(w_avg, ws.shape))
    np.testing.assert_allclose(gan.truncate(ws, w_avg, 1.0), ws, rtol=1e-5, atol=1e-6)
    t = gan.truncate(ws, w_avg, 0.5, cutoff=3)
    np.testing.assert_allclose(t[:, :3], w_avg + 0.5 * (ws[:, :3] - w_avg), rtol=1e-6)
    np.testing.assert_allclose(t[:, 3:], ws[:, 3:])


def test_noise_modes_are_deterministic_where_they_should_be(tiny_g):
    g, params = tiny_g
    ws = jax.random.normal(jax.random.key(3), (2, 6, 8))
    a, b = gan.generate(g, params, ws, noise_mode="const"), gan.generate(g, params, ws, noise_mode="const")
    np.testing.assert_array_equal(a, b)
    r1 = gan.generate(g, params, ws, jax.random.key(5), "random")
    r2 = gan.generate(g, params, ws, jax.random.key(5), "random")
    r3 = gan.generate(g, params, ws, jax.random.key(6), "random")
    np.testing.assert_array_equal(r1, r2)
    assert float(jnp.abs(r1 - r3).max()) > 1e-3 and float(jnp.abs(r1 - a).max()) > 1e-3


def test_const_noise_is_the_keyed_draw_embedded_as_a_constant(tiny_g):
    # the fixed maps are jax.random.normal of fold_in(key(NOISE_CONST), layer), drawn once at
    # trace time: a jitted const-noise generator holds no random-number generation at all
    drawn = jax.jit(lambda: jax.random.normal(jax.random.fold_in(jax.random.key(models.NOISE_CONST), 3),
                                              (1, 8, 8, 1)))()
    np.testing.assert_array_equal(models.const_noise(3, 8, 8), drawn)
    assert not np.array_equal(models.const_noise(4, 8, 8), drawn)
    g, params = tiny_g
    ws = jax.random.normal(jax.random.key(3), (2, 6, 8))
    hlo = jax.jit(lambda p, w: gan.generate(g, p, w, noise_mode="const")).lower(params, ws).as_text()
    assert "threefry" not in hlo and "erf_inv" not in hlo
    hlo_random = jax.jit(lambda p, w: gan.generate(g, p, w, jax.random.key(0), "random")).lower(params, ws).as_text()
    assert "threefry" in hlo_random


def test_style_mixing_takes_a_suffix_from_the_second_ws():
    ws, ws2 = jnp.zeros((3, 8, 2)), jnp.ones((3, 8, 2))
    for s in range(20):
        m = np.asarray(gan.mix_styles(ws, ws2, jax.random.key(s), 1.0))[0, :, 0]
        c = int(np.argmax(m)) if m.max() > 0 else 8
        assert 1 <= c < 8 and np.all(m[:c] == 0) and np.all(m[c:] == 1)
    np.testing.assert_array_equal(gan.mix_styles(ws, ws2, jax.random.key(0), 0.0), ws)


def test_minibatch_stddev_matches_numpy():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(8, 3, 3, 4)).astype(np.float32)
    out = np.asarray(models.minibatch_stddev(jnp.asarray(x), group_size=4))
    assert out.shape == (8, 3, 3, 5)
    np.testing.assert_array_equal(out[..., :4], x)
    for n in range(8):
        group = x[[m for m in range(8) if m % 2 == n % 2]]  # group of sample n: same index mod B/G
        np.testing.assert_allclose(out[n, 0, 0, 4], np.sqrt(group.var(axis=0) + 1e-8).mean(), rtol=1e-5)


def test_equalised_lr_mapping_weights_and_runtime_scale():
    m = models.MappingNetwork(w_dim=64, num_layers=1, lr_mul=0.01)
    p = m.init(jax.random.key(0), jnp.zeros((1, 64)))["params"]
    assert 80 < float(jnp.std(p["fc0"]["kernel"])) < 120  # stored N(0, 1) / lr_mul
    z = jax.random.normal(jax.random.key(1), (1, 64))
    zn = z / jnp.sqrt(jnp.mean(z ** 2) + 1e-8)
    expect = jax.nn.leaky_relu(zn @ (p["fc0"]["kernel"] * 0.01 / 8.0), 0.2) * np.sqrt(2)
    np.testing.assert_allclose(m.apply({"params": p}, z), expect, rtol=1e-4, atol=1e-5)


def test_r1_penalty_matches_finite_differences_on_a_tiny_d():
    d = models.Discriminator(resolution=8, channel_base=32, channel_max=4, mbstd_group=1)
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 3))
    p32 = d.init(jax.random.key(1), x)["params"]
    with jax.enable_x64(True):
        x64 = jnp.asarray(np.asarray(x), jnp.float64)
        p = jax.tree.map(lambda a: jnp.asarray(np.asarray(a), jnp.float64), p32)
        f = jax.jit(lambda xx: d.apply({"params": p}, xx))
        r1 = float(gan.r1_penalty(f, x64))
        eps, xs = 1e-5, np.asarray(x64)
        sq = 0.0
        for idx in np.ndindex(xs.shape):
            e = np.zeros_like(xs)
            e[idx] = eps
            g = (np.asarray(f(jnp.asarray(xs + e)))[idx[0]] - np.asarray(f(jnp.asarray(xs - e)))[idx[0]]) / (2 * eps)
            sq += g * g
    np.testing.assert_allclose(r1, sq / 2, rtol=1e-5)


def test_r1_parameter_gradient_as_patches_equals_xla_convolutions(monkeypatch):
    """The penalty's gradient with respect to D's parameters (a second derivative) with the
    convolutions as patches (`second_order_convs`, the CPU default) equals the one through
    XLA's convolutions, and the patched program holds no convolution at all."""
    from jaxlab.nn import conv as conv_lib

    d = models.Discriminator(resolution=8, channel_base=32, channel_max=4, mbstd_group=1)
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 3))
    p = d.init(jax.random.key(1), x)["params"]
    loss = lambda q: gan.r1_penalty(lambda xx: d.apply({"params": q}, xx), x)
    with conv_lib.use("auto"):
        patched = jax.jit(jax.grad(loss))
        hlo = patched.lower(p).compile().as_text()
        g_patch = patched(p)
    monkeypatch.setattr(gan, "second_order_convs", lambda: conv_lib.use("xla"))
    with conv_lib.use("xla"):
        g_xla = jax.jit(jax.grad(loss))(p)
    assert " convolution(" not in hlo
    for a, b in zip(jax.tree.leaves(g_patch), jax.tree.leaves(g_xla)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-4, atol=1e-6)
    assert max(float(jnp.max(jnp.abs(a))) for a in jax.tree.leaves(g_xla)) > 1e-4  # not all zero


@pytest.mark.slow  # compiles two GAN steps with R1 (minutes on 2 loaded cores)
def test_separate_lazy_update_is_the_main_update_then_an_r1_update():
    import dataclasses

    from jaxlab.video2stylegan.configs import GanConfig

    gc = GanConfig(resolution=16, z_dim=8, w_dim=8, channel_base=64, channel_max=8, batch_size=4, mbstd_group=2,
                   r1_gamma=1.0, r1_every=2, pl_weight=0.0, style_mixing=0.0, lazy_updates="separate")
    state = gan.init_state(gc, 0)
    real = jax.random.uniform(jax.random.key(3), (4, 16, 16, 3), minval=-1, maxval=1)
    key = jax.random.key(4)
    sep_step = jax.jit(gan.make_gan_step(gc, jit=False))  # no donation: the states are reused
    plain_step = jax.jit(gan.make_gan_step(dataclasses.replace(gc, r1_gamma=0.0), jit=False))
    sep, m = sep_step(state, real, key)
    # the same step without R1 (same optimizers), then one R1 update of D by hand at the updated D
    plain, _ = plain_step(state, real, key)
    _, d = gan.make_models(gc)
    r1, grads = jax.value_and_grad(lambda dp: gan.r1_penalty(lambda x: d.apply({"params": dp}, x), real))(
        plain.d.params)
    want = plain.d.apply_gradients(jax.tree.map(lambda gr: gc.r1_gamma / 2 * gc.r1_every * gr, grads))
    for a, b in zip(jax.tree.leaves(sep.d.params), jax.tree.leaves(want.params)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(m["r1"], r1, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(sep.g.params), jax.tree.leaves(plain.g.params)):
        np.testing.assert_array_equal(a, b)  # G is untouched by D's regulariser
    # off the regularisation step (step 1 of interval 2) the separate step is the plain one
    sep1, _ = sep_step(sep, real, key)
    plain1, _ = plain_step(sep, real, key)
    for a, b in zip(jax.tree.leaves(sep1.d.params), jax.tree.leaves(plain1.d.params)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
