"""MultiHeadAttention and T5 relative position bias: a dense NumPy reference, flax's own attention,
width masks vs extracted smaller modules, KV-cache decoding, fully masked rows, bucket table."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.nn.attention import (
    MultiHeadAttention,
    RelativePositionBias,
    causal_mask,
    combine_masks,
    padding_mask,
    relative_position_bucket,
)


def _rand_params(module, *args, seed=0, **kw):
    """Variables of `module` with NumPy random values (non-zero biases make every term count)."""
    shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), *args, **kw))
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: jnp.asarray(rng.normal(0.0, 0.5, s.shape), s.dtype), shapes["params"])


def _run(module, variables, *args, **kw):
    """`module.apply` under jit: one XLA compile is cheaper than compiling each eager op."""
    return jax.jit(lambda v, *a: module.apply(v, *a, **kw))(variables, *args)


def _np(tree):
    return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


def _bucket_py(r, bidirectional, num_buckets, max_distance):
    """T5 bucket of one relative position, written from the paper's description in plain Python."""
    ret = 0
    if bidirectional:
        num_buckets //= 2
        if r > 0:
            ret = num_buckets
        n = abs(r)
    else:
        n = max(-r, 0)
    exact = num_buckets // 2
    if n < exact:
        return ret + n
    large = exact + int(math.log(n / exact) / math.log(max_distance / exact) * (num_buckets - exact))
    return ret + min(large, num_buckets - 1)


def _softmax_rows(logits, valid):
    out = np.zeros_like(logits)
    for i in range(logits.shape[0]):
        if valid[i].any():
            z = np.where(valid[i], logits[i], -np.inf)
            e = np.exp(z - z.max())
            out[i] = e / e.sum()
    return out


def _ref_mha(p, xq, xkv, num_heads, scale, mask=None, bias=None):
    """Dense NumPy multi-head attention in float64, head by head."""
    p = _np(p)
    xq, xkv = np.asarray(xq, np.float64), np.asarray(xkv, np.float64)
    lin = lambda x, d: x @ d["kernel"] + (d.get("bias", 0.0))
    q, k, v = lin(xq, p["query"]), lin(xkv, p["key"]), lin(xkv, p["value"])
    b, tq, tk = xq.shape[0], xq.shape[1], xkv.shape[1]
    hd = q.shape[-1] // num_heads
    mask = np.ones((b, num_heads, tq, tk), bool) if mask is None else np.broadcast_to(mask, (b, num_heads, tq, tk))
    bias = np.zeros((1, num_heads, tq, tk)) if bias is None else np.asarray(bias, np.float64)
    o = np.zeros((b, tq, num_heads * hd))
    for bi in range(b):
        for h in range(num_heads):
            s = slice(h * hd, (h + 1) * hd)
            logits = scale * q[bi, :, s] @ k[bi, :, s].T + bias[min(bi, bias.shape[0] - 1), h]
            o[bi, :, s] = _softmax_rows(logits, mask[bi, h]) @ v[bi, :, s]
    out = lin(o, p["out"])
    return out * mask.any(axis=(1, 3))[..., None]


# --------------------------------------------------------------------------- relative position buckets


def test_relative_position_bucket_hand_table():
    # bidirectional, 32 buckets, max_distance 128: 16 per side, exact below E = 8, then
    # 8 + floor(log(n/8) / log(16) * 8) = 8 + floor(2 log2(n/8)), capped at 15; keys after the query + 16
    r = jnp.array([0, -1, 1, -7, -8, -12, -16, -20, -32, -64, -127, -128, -1000, 7, 8, 20, 1000])
    want = [0, 1, 17, 7, 8, 9, 10, 10, 12, 14, 15, 15, 15, 23, 24, 26, 31]
    got = relative_position_bucket(r, bidirectional=True, num_buckets=32, max_distance=128)
    assert got.dtype == jnp.int32
    np.testing.assert_array_equal(np.asarray(got), want)
    # causal: n = max(-r, 0); exact below 16, then 16 + floor(log(n/16) / log(8) * 16), capped at 31
    r = jnp.array([3, 0, -1, -15, -16, -20, -32, -64, -127, -128, -500])
    want = [0, 0, 1, 15, 16, 17, 21, 26, 31, 31, 31]
    got = relative_position_bucket(r, bidirectional=False, num_buckets=32, max_distance=128)
    np.testing.assert_array_equal(np.asarray(got), want)


@pytest.mark.parametrize("bidirectional,nb,md", [(True, 32, 128), (False, 32, 128), (True, 8, 20), (False, 10, 40)])
def test_relative_position_bucket_matches_python(bidirectional, nb, md):
    r = np.arange(-300, 301)
    got = np.asarray(relative_position_bucket(jnp.asarray(r), bidirectional=bidirectional, num_buckets=nb,
                                              max_distance=md))
    want = [_bucket_py(int(x), bidirectional, nb, md) for x in r]
    np.testing.assert_array_equal(got, want)
    assert got.min() == 0 and got.max() == nb - 1


def test_relative_position_bias_module_gathers_table():
    mod = RelativePositionBias(num_heads=3, num_buckets=16, max_distance=32, bidirectional=False)
    p = _rand_params(mod, 4, 9)
    table = np.asarray(p["rel_embedding"])
    for off in (0, 5):
        got = np.asarray(mod.apply({"params": p}, 4, 9, q_offset=off))
        assert got.shape == (1, 3, 4, 9)
        for i in range(4):
            for j in range(9):
                np.testing.assert_array_equal(got[0, :, i, j], table[_bucket_py(j - (i + off), False, 16, 32)])


# --------------------------------------------------------------------------- masks


def test_mask_helpers():
    valid = jnp.array([[1, 1, 0], [1, 0, 0]])
    m = padding_mask(valid, q_len=2)
    assert m.shape == (2, 1, 2, 3) and m.dtype == jnp.bool_
    np.testing.assert_array_equal(np.asarray(m[:, 0, 1]), np.asarray(valid, bool))
    np.testing.assert_array_equal(np.asarray(causal_mask(4)[0, 0]), np.tril(np.ones((4, 4), bool)))
    np.testing.assert_array_equal(np.asarray(causal_mask(2, 5, offset=2)[0, 0]),
                                  np.tril(np.ones((5, 5), bool))[2:4])
    np.testing.assert_array_equal(np.asarray(combine_masks(None, m, causal_mask(2, 3))),
                                  np.asarray(m) & np.tril(np.ones((2, 3), bool)))
    assert combine_masks(None, None) is None


# --------------------------------------------------------------------------- forward vs references


@pytest.mark.parametrize("case", ["plain", "padding", "relative", "cross_nobias_scale1"])
def test_mha_matches_numpy_reference(case):
    b, tq, d, h = 2, 5, 12, 3
    tk = 7 if case == "cross_nobias_scale1" else tq
    kw = {}
    if case == "cross_nobias_scale1":
        kw = {"use_bias": False, "scale": 1.0, "qkv_features": 9, "out_features": 6}
    mod = MultiHeadAttention(num_heads=h, **kw)
    kx = jax.random.split(jax.random.key(1), 2)
    xq = jax.random.normal(kx[0], (b, tq, d))
    xkv = jax.random.normal(kx[1], (b, tk, d)) if tk != tq else xq
    p = _rand_params(mod, xq, xkv)
    mask = bias = None
    if case == "padding":
        mask = padding_mask(jnp.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]))
    if case == "relative":
        rpb = RelativePositionBias(num_heads=h, num_buckets=8, max_distance=16)
        bias = rpb.apply({"params": _rand_params(rpb, tq, tk, seed=3)}, tq, tk)
        mask = causal_mask(tq)
    got = _run(mod, {"params": p}, xq, xkv, mask=mask, bias=bias)
    hd = (kw.get("qkv_features", d)) // h
    want = _ref_mha(p, xq, xkv, h, kw.get("scale", 1 / math.sqrt(hd)), mask=None if mask is None else np.asarray(mask),
                    bias=bias)
    assert got.shape == (b, tq, kw.get("out_features", d)) and got.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)


def test_mha_matches_flax_multihead_dot_product_attention():
    b, tq, tk, d, h, qkv = 2, 4, 6, 10, 2, 8
    mine = MultiHeadAttention(num_heads=h, qkv_features=qkv, out_features=d)
    ref = nn.MultiHeadDotProductAttention(num_heads=h, qkv_features=qkv, out_features=d)
    xq = jax.random.normal(jax.random.key(0), (b, tq, d))
    xkv = jax.random.normal(jax.random.key(1), (b, tk, d))
    mask = padding_mask(jnp.array([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]]))
    p = _rand_params(mine, xq, xkv)
    hd = qkv // h
    # flax keeps the head axis in the kernels: [D, H, hd] in, [H, hd, D] out
    fp = {n: {"kernel": p[n]["kernel"].reshape(-1, h, hd), "bias": p[n]["bias"].reshape(h, hd)}
          for n in ("query", "key", "value")}
    fp["out"] = {"kernel": p["out"]["kernel"].reshape(h, hd, d), "bias": p["out"]["bias"]}
    ref_shapes = jax.eval_shape(lambda: ref.init(jax.random.key(0), xq, xkv))["params"]
    assert jax.tree.map(jnp.shape, ref_shapes) == jax.tree.map(jnp.shape, fp)
    got = _run(mine, {"params": p}, xq, xkv, mask=mask)
    want = _run(ref, {"params": fp}, xq, xkv, mask=mask)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- width masks


def test_head_and_embed_masks_equal_smaller_attention():
    b, t, d, h, hd = 2, 5, 8, 4, 3
    heads = np.array([0, 2, 3])  # active heads
    emb = np.array([0, 2, 3, 6, 7])  # active token channels (not a prefix)
    big = MultiHeadAttention(num_heads=h, head_dim=hd)
    x = jax.random.normal(jax.random.key(0), (b, t, d))
    emask = np.zeros(d, np.float32)
    emask[emb] = 1
    x = x * emask  # inactive input channels are zero in a supernet
    p = _rand_params(big, x)
    hmask = np.zeros(h, np.float32)
    hmask[heads] = 1
    got = _run(big, {"params": p}, x, head_mask=jnp.asarray(hmask), embed_mask=jnp.asarray(emask),
                    mask=padding_mask(jnp.array([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]])))
    cols = np.concatenate([np.arange(i * hd, (i + 1) * hd) for i in heads])
    sp = {n: {"kernel": p[n]["kernel"][emb][:, cols], "bias": p[n]["bias"][cols]} for n in ("query", "key", "value")}
    sp["out"] = {"kernel": p["out"]["kernel"][cols][:, emb], "bias": p["out"]["bias"][emb]}
    small = MultiHeadAttention(num_heads=len(heads), head_dim=hd)
    want = _run(small, {"params": sp}, x[..., emb], mask=padding_mask(jnp.array([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]])))
    np.testing.assert_allclose(np.asarray(got[..., emb]), np.asarray(want), rtol=1e-5, atol=1e-5)
    inactive = np.setdiff1d(np.arange(d), emb)
    np.testing.assert_array_equal(np.asarray(got[..., inactive]), 0.0)
    # the mask does something: all heads on differs
    full = _run(big, {"params": p}, x)
    assert not np.allclose(np.asarray(full[..., emb]), np.asarray(want), atol=1e-3)


def test_qkv_mask_equals_narrower_heads_with_same_scale():
    b, t, d, h, hd = 2, 4, 6, 2, 4
    keep = np.array([0, 2, 3])  # per-head active channels (same in every head)
    cols = np.concatenate([i * hd + keep for i in range(h)])
    qmask = np.zeros(h * hd, np.float32)
    qmask[cols] = 1
    big = MultiHeadAttention(num_heads=h, head_dim=hd)
    x = jax.random.normal(jax.random.key(2), (b, t, d))
    p = _rand_params(big, x, seed=5)
    got = _run(big, {"params": p}, x, qkv_mask=jnp.asarray(qmask))
    sp = {n: {"kernel": p[n]["kernel"][:, cols], "bias": p[n]["bias"][cols]} for n in ("query", "key", "value")}
    sp["out"] = {"kernel": p["out"]["kernel"][cols], "bias": p["out"]["bias"]}
    small = MultiHeadAttention(num_heads=h, head_dim=len(keep), scale=1 / math.sqrt(hd))
    want = _run(small, {"params": sp}, x)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- KV cache


@pytest.mark.parametrize("with_bias_and_padding", [False, True])
def test_cached_decoding_equals_causal_forward(with_bias_and_padding):
    b, t, d, h = 2, 6, 8, 2
    x = jax.random.normal(jax.random.key(3), (b, t, d))
    full_mod = MultiHeadAttention(num_heads=h, causal=True)
    dec_mod = MultiHeadAttention(num_heads=h, decode=True)
    p = _rand_params(full_mod, x)
    mask = bias_full = None
    rpb = RelativePositionBias(num_heads=h, num_buckets=8, max_distance=8, bidirectional=False)
    rp = {"params": _rand_params(rpb, t, t, seed=4)}
    if with_bias_and_padding:
        mask = padding_mask(jnp.array([[1] * t, [1, 1, 1, 1, 0, 0]]))
        bias_full = rpb.apply(rp, t, t)
    want = _run(full_mod, {"params": p}, x, mask=mask, bias=bias_full)

    cache = dec_mod.init(jax.random.key(0), x)["cache"]  # full max length allocates the cache
    assert cache["cached_key"].shape == (b, h, d // h, t) and cache["cached_value"].shape == (b, h, t, d // h)
    assert int(cache["cache_index"]) == 0
    traces = []

    @jax.jit
    def step(cache, tok, pos):
        traces.append(1)
        bias = rpb.apply(rp, 1, t, q_offset=pos) if with_bias_and_padding else None
        out, upd = dec_mod.apply({"params": p, "cache": cache}, tok, mask=mask, bias=bias, mutable=["cache"])
        return out, upd["cache"]

    outs = []
    for i in range(t):
        o, cache = step(cache, x[:, i:i + 1], jnp.int32(i))
        outs.append(o)
    got = jnp.concatenate(outs, axis=1)
    assert len(traces) == 1 and int(cache["cache_index"]) == t
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5)
    # decode mode is causal at init too (the call that creates the cache)
    np.testing.assert_allclose(np.asarray(_run(dec_mod, {"params": p}, x, mask=mask, bias=bias_full,
                                                        mutable=["cache"])[0]), np.asarray(want), rtol=1e-5, atol=1e-5)


def test_cached_decoding_prefill_chunk_then_steps():
    b, t, d, h = 1, 7, 6, 3
    x = jax.random.normal(jax.random.key(5), (b, t, d))
    p = _rand_params(MultiHeadAttention(num_heads=h), x)
    want = _run(MultiHeadAttention(num_heads=h, causal=True), {"params": p}, x)
    dec = MultiHeadAttention(num_heads=h, decode=True)
    cache = dec.init(jax.random.key(0), x)["cache"]
    step = jax.jit(lambda cache, tok: dec.apply({"params": p, "cache": cache}, tok, mutable=["cache"]))
    o1, upd = step(cache, x[:, :4])
    outs = [o1]
    cache = upd["cache"]
    for i in range(4, t):
        o, upd = step(cache, x[:, i:i + 1])
        cache = upd["cache"]
        outs.append(o)
    np.testing.assert_allclose(np.asarray(jnp.concatenate(outs, 1)), np.asarray(want), rtol=1e-5, atol=1e-5)


def test_decode_rejects_cross_attention():
    x = jnp.ones((1, 3, 4))
    with pytest.raises(ValueError, match="self-attention only"):
        MultiHeadAttention(num_heads=2, decode=True).init(jax.random.key(0), x, x)


# --------------------------------------------------------------------------- masking edge cases, dtypes, dropout


def test_fully_masked_row_gives_zeros_and_finite_gradients():
    b, t, d, h = 2, 4, 6, 2
    mod = MultiHeadAttention(num_heads=h)
    x = jax.random.normal(jax.random.key(6), (b, t, d))
    p = _rand_params(mod, x)
    # batch 1 has no valid key at all; in batch 0 query 2 is blocked from every key in both heads
    mask = np.broadcast_to(np.array([[1, 1, 0, 1], [0, 0, 0, 0]], bool)[:, None, None, :], (b, h, t, t)).copy()
    mask[0, :, 2, :] = False
    mask[0, 0, 1, :] = False  # only head 0 is blocked for query 1: that head contributes zero
    mask = jnp.asarray(mask)
    out = _run(mod, {"params": p}, x, mask=mask)
    assert np.all(np.isfinite(np.asarray(out)))
    np.testing.assert_array_equal(np.asarray(out[1]), 0.0)
    np.testing.assert_array_equal(np.asarray(out[0, 2]), 0.0)
    np.testing.assert_allclose(np.asarray(out), _ref_mha(p, x, x, h, 1 / math.sqrt(d // h), mask=np.asarray(mask)),
                               rtol=1e-5, atol=1e-5)
    gp, gx = jax.grad(lambda p, x: jnp.sum(_run(mod, {"params": p}, x, mask=mask) ** 2), argnums=(0, 1))(p, x)
    assert all(np.all(np.isfinite(np.asarray(g))) for g in jax.tree.leaves((gp, gx)))
    # the fully masked batch element receives no gradient
    np.testing.assert_array_equal(np.asarray(gx[1]), 0.0)


def test_bfloat16_inputs_softmax_in_float32():
    b, t, d, h = 2, 5, 8, 2
    x = jax.random.normal(jax.random.key(7), (b, t, d))
    p = _rand_params(MultiHeadAttention(num_heads=h), x)
    # large logits: a bf16 softmax would lose the small weights entirely; the f32 one matches the f32 model
    p32 = jax.tree.map(lambda a: a * 3.0, p)
    want = _run(MultiHeadAttention(num_heads=h), {"params": p32}, x)
    got = _run(MultiHeadAttention(num_heads=h, dtype=jnp.bfloat16), {"params": p32}, x.astype(jnp.bfloat16))
    assert got.dtype == jnp.bfloat16 and np.all(np.isfinite(np.asarray(got, np.float32)))
    scale = float(jnp.max(jnp.abs(want)))
    np.testing.assert_allclose(np.asarray(got, np.float32), np.asarray(want), atol=0.05 * scale)


def test_attention_dropout_only_when_not_deterministic():
    x = jax.random.normal(jax.random.key(8), (2, 6, 8))
    mod = MultiHeadAttention(num_heads=2, dropout_rate=0.5)
    p = _rand_params(mod, x)
    base = _run(MultiHeadAttention(num_heads=2), {"params": p}, x)
    np.testing.assert_array_equal(np.asarray(_run(mod, {"params": p}, x)), np.asarray(base))
    train = jax.jit(lambda key: mod.apply({"params": p}, x, deterministic=False, rngs={"dropout": key}))
    a, a2, c = train(jax.random.key(1)), train(jax.random.key(1)), train(jax.random.key(2))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(a2))
    assert not np.allclose(np.asarray(a), np.asarray(base)) and not np.allclose(np.asarray(a), np.asarray(c))


def test_bad_shapes_are_errors():
    x = jnp.ones((1, 2, 8))
    with pytest.raises(ValueError, match="not divisible"):
        MultiHeadAttention(num_heads=3).init(jax.random.key(0), x)
    with pytest.raises(ValueError, match=r"head_mask must have shape \(2,\)"):
        MultiHeadAttention(num_heads=2).init(jax.random.key(0), x, head_mask=jnp.ones(3))
    with pytest.raises(ValueError, match="expects \\[B, T, D\\]"):
        MultiHeadAttention(num_heads=2).init(jax.random.key(0), jnp.ones((2, 8)))


# --------------------------------------------------------------------------- the hand-written backward pass


def _attention_loss(mod, variables, xq, xkv, bias, mask, key):
    out = mod.apply(variables, xq, xkv, mask=mask, bias=bias, deterministic=key is None,
                    rngs=None if key is None else {"dropout": key})
    w = jnp.cos(jnp.arange(out.size, dtype=jnp.float32).reshape(out.shape))  # a cotangent with no symmetry
    return jnp.sum(out.astype(jnp.float32) * w)


@pytest.mark.parametrize("case", ["self_causal_bias_padding", "cross_padding", "per_batch_bias_dropout", "bfloat16"])
def test_hand_vjp_equals_autodiff(case):
    """`attention_vjp='hand'` gives autodiff's output and gradients (parameters, both inputs, the
    bias), with masked keys, a query row with no key, a bias broadcast over batch or heads, dropout."""
    b, tq, tk, d, h = 3, 6, 6, 8, 2
    rng = np.random.default_rng(11)
    xq = jnp.asarray(rng.normal(size=(b, tq, d)), jnp.float32)
    xkv, bias, mask, key, kw = None, None, None, None, {}
    if case == "self_causal_bias_padding":
        bias = jnp.asarray(rng.normal(size=(1, h, tq, tk)), jnp.float32)
        valid = np.ones((b, tk), bool)
        valid[1, :2] = False  # query rows 0 and 1 of batch 1 see no key under the causal mask
        valid[2, 4:] = False
        mask, kw = padding_mask(jnp.asarray(valid)), {"causal": True}
    elif case == "cross_padding":
        tk = 9
        xkv = jnp.asarray(rng.normal(size=(b, tk, d)), jnp.float32)
        valid = np.ones((b, tk), bool)
        valid[0, 5:] = False
        valid[2] = False  # every key of batch 2 masked
        mask = padding_mask(jnp.asarray(valid))
    elif case == "per_batch_bias_dropout":
        bias = jnp.asarray(rng.normal(size=(b, 1, tq, tk)), jnp.float32)
        key, kw = jax.random.key(3), {"dropout_rate": 0.3}
    dtype = jnp.bfloat16 if case == "bfloat16" else jnp.float32
    if case == "bfloat16":
        bias = jnp.asarray(rng.normal(size=(1, h, tq, tk)), jnp.float32)
    xq = xq.astype(dtype)
    xkv = None if xkv is None else xkv.astype(dtype)
    auto = MultiHeadAttention(num_heads=h, dtype=dtype, **kw)
    hand = MultiHeadAttention(num_heads=h, dtype=dtype, attention_vjp="hand", **kw)
    p = _rand_params(auto, xq, xkv)
    argnums = (0, 1, 2) if bias is None else (0, 1, 2, 3)
    grads = {}
    for name, mod in (("auto", auto), ("hand", hand)):
        f = lambda p, xq, xkv, bias, mod=mod: _attention_loss(mod, {"params": p}, xq, xkv, bias, mask, key)
        if xkv is None:
            f = (lambda f: lambda p, xq, _, bias: f(p, xq, None, bias))(f)
        val, g = jax.jit(jax.value_and_grad(f, argnums=argnums))(p, xq, xq if xkv is None else xkv, bias)
        grads[name] = (val, g)
    tol = dict(rtol=2e-2, atol=2e-2) if dtype == jnp.bfloat16 else dict(rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(float(grads["hand"][0]), float(grads["auto"][0]), **tol)
    leaves_a, leaves_h = jax.tree.leaves(grads["auto"][1]), jax.tree.leaves(grads["hand"][1])
    assert len(leaves_a) == len(leaves_h)
    for a, g in zip(leaves_a, leaves_h):
        assert a.dtype == g.dtype and a.shape == g.shape
        scale = max(1.0, float(jnp.max(jnp.abs(a.astype(jnp.float32)))))
        np.testing.assert_allclose(np.asarray(g, np.float32), np.asarray(a, np.float32), rtol=tol["rtol"],
                                   atol=tol["atol"] * scale)
    if bias is not None:  # the bias gradient is a real, non-zero term
        assert float(jnp.max(jnp.abs(grads["hand"][1][-1]))) > 1e-3


def test_hand_vjp_has_no_forward_mode_and_rejects_unknown_modes():
    x = jax.random.normal(jax.random.key(9), (2, 4, 8))
    mod = MultiHeadAttention(num_heads=2, attention_vjp="hand")
    p = _rand_params(mod, x)
    f = lambda x: mod.apply({"params": p}, x)
    with pytest.raises(TypeError, match="custom_vjp"):
        jax.jvp(f, (x,), (x,))
    out, tangent = jax.jvp(lambda x: MultiHeadAttention(num_heads=2).apply({"params": p}, x), (x,), (x,))
    assert np.all(np.isfinite(np.asarray(tangent)))
    with pytest.raises(ValueError, match="vjp must be 'autodiff' or 'hand'"):
        MultiHeadAttention(num_heads=2, attention_vjp="flash").apply({"params": p}, x)


def test_cache_kv_projects_the_memory_once():
    """`cache_kv=True`: the call that fills the cache equals plain cross-attention; later calls
    attend over the stored memory whatever `inputs_kv` they are given; decode + cache_kv is an error."""
    b, tq, tk, d, h = 2, 3, 5, 8, 2
    rng = np.random.default_rng(12)
    xq, mem, other = (jnp.asarray(rng.normal(size=s), jnp.float32) for s in ((b, tq, d), (b, tk, d), (b, tk, d)))
    mask = padding_mask(jnp.asarray([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool))
    plain = MultiHeadAttention(num_heads=h)
    cached = MultiHeadAttention(num_heads=h, cache_kv=True)
    p = _rand_params(plain, xq, mem)
    want = _run(plain, {"params": p}, xq, mem, mask=mask)
    out, upd = cached.apply({"params": p}, xq, mem, mask=mask, mutable=["cache"])
    np.testing.assert_allclose(np.asarray(out), np.asarray(want), rtol=1e-6, atol=1e-6)
    assert upd["cache"]["memory_key"].shape == (b, h, d // h, tk)
    again = cached.apply({"params": p, **upd}, xq, other, mask=mask)
    np.testing.assert_allclose(np.asarray(again), np.asarray(want), rtol=1e-6, atol=1e-6)
    assert not np.allclose(np.asarray(_run(plain, {"params": p}, xq, other, mask=mask)), np.asarray(want))
    with pytest.raises(ValueError, match="cache_kv is for cross-attention"):
        MultiHeadAttention(num_heads=h, cache_kv=True, decode=True).init(jax.random.key(0), xq)


@pytest.mark.parametrize("vjp", ["autodiff", "hand"])
def test_grouped_queries_equal_repeated_memory(vjp):
    """G query rows per memory row (a beam search's beams) equal plain cross-attention over the
    memory repeated G times: outputs, parameter gradients and the cached memory. Memory row 1 is
    all padding, so its groups' outputs must be exactly zero; the mask has per-query rows, so it
    must be tiled over the group, not broadcast."""
    b, g, tq, tk, d, h = 3, 4, 2, 5, 8, 2
    rng = np.random.default_rng(21)
    xq = jnp.asarray(rng.normal(size=(b * g, tq, d)), jnp.float32)
    mem = jnp.asarray(rng.normal(size=(b, tk, d)), jnp.float32)
    valid = jnp.asarray([[1, 1, 1, 0, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1]], bool)
    mask = combine_masks(padding_mask(valid), jnp.asarray(rng.random((b, 1, tq, tk)) < 0.8))
    module = MultiHeadAttention(num_heads=h, attention_vjp=vjp)
    p = _rand_params(module, xq[:b], mem)
    rep = lambda a: jnp.repeat(a, g, axis=0)

    def loss(p, mem, mask):
        out = module.apply({"params": p}, xq, mem, mask=mask)
        return jnp.sum(jnp.sin(out)), out

    (_, got), grad_got = jax.jit(jax.value_and_grad(loss, has_aux=True))(p, mem, mask)
    (_, want), grad_want = jax.jit(jax.value_and_grad(loss, has_aux=True))(p, rep(mem), rep(mask))
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-6)
    assert np.all(np.asarray(got)[g:2 * g] == 0.0)
    jax.tree.map(lambda a, w: np.testing.assert_allclose(np.asarray(a), np.asarray(w), rtol=1e-4, atol=1e-5),
                 grad_got, grad_want)

    cached = MultiHeadAttention(num_heads=h, attention_vjp=vjp, cache_kv=True)
    out, upd = cached.apply({"params": p}, xq, mem, mask=mask, mutable=["cache"])
    # once per input, not per query row
    assert upd["cache"]["memory_key"].shape == upd["cache"]["memory_value"].shape == (b, h, d // h, tk)
    again = cached.apply({"params": p, **upd}, xq, mem, mask=mask)
    np.testing.assert_allclose(np.asarray(again), np.asarray(want), rtol=1e-5, atol=1e-6)


def test_grouped_queries_reject_what_they_cannot_mean():
    rng = np.random.default_rng(22)
    x6, x5 = (jnp.asarray(rng.normal(size=(n, 2, 8)), jnp.float32) for n in (6, 5))
    mem = jnp.asarray(rng.normal(size=(3, 4, 8)), jnp.float32)
    module = MultiHeadAttention(num_heads=2)
    p = _rand_params(module, x6[:3], mem)
    with pytest.raises(ValueError, match="5 query rows for 3 memory rows"):
        module.apply({"params": p}, x5, mem)
    with pytest.raises(ValueError, match="without causal, decode or bias"):
        MultiHeadAttention(num_heads=2, causal=True).apply({"params": p}, x6, mem)
    with pytest.raises(ValueError, match="without causal, decode or bias"):
        module.apply({"params": p}, x6, mem, bias=jnp.zeros((1, 2, 2, 4)))
    with pytest.raises(ValueError, match="the mask needs 1 or 3 rows"):
        module.apply({"params": p}, x6, mem, mask=jnp.ones((6, 1, 1, 4), bool))


def test_cached_paths_apply_attention_dropout():
    """A cached decoding step and a cross-attention over a cached memory drop attention weights
    when not deterministic (the same key gives the same output, and it differs from the
    deterministic one), as the uncached path does."""
    rng = np.random.default_rng(23)
    x = jnp.asarray(rng.normal(size=(2, 5, 8)), jnp.float32)
    mem = jnp.asarray(rng.normal(size=(2, 6, 8)), jnp.float32)
    dec = MultiHeadAttention(num_heads=2, decode=True, dropout_rate=0.5)
    cross = MultiHeadAttention(num_heads=2, cache_kv=True, dropout_rate=0.5)
    p_dec, p_cross = _rand_params(dec, x), _rand_params(cross, x, mem)
    cache = dec.init(jax.random.key(0), x)["cache"]
    _, filled = cross.apply({"params": p_cross}, x, mem, mutable=["cache"])
    calls = {
        "decode": lambda det, key: dec.apply({"params": p_dec, "cache": cache}, x[:, :1], deterministic=det,
                                             rngs={"dropout": key}, mutable=["cache"])[0],
        "cache_kv": lambda det, key: cross.apply({"params": p_cross, **filled}, x, mem, deterministic=det,
                                                 rngs={"dropout": key}),
    }
    for name, call in calls.items():
        base, a, a2 = (np.asarray(call(det, jax.random.key(s))) for det, s in ((True, 1), (False, 1), (False, 1)))
        np.testing.assert_array_equal(a, a2, err_msg=name)
        assert not np.allclose(a, base), name
