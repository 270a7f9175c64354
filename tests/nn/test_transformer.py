"""Transformer blocks and ViT: NumPy references, width masks vs extracted smaller modules,
KV-cache decoding through DecoderBlock, causality, shapes and compile counts."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import erf

from jaxlab.nn.attention import RelativePositionBias, padding_mask
from jaxlab.nn.transformer import DecoderBlock, Encoder, EncoderBlock, FeedForward, LayerNorm, RMSNorm
from jaxlab.nn.vit import PatchEmbed, ViT

TOL = {"rtol": 2e-5, "atol": 2e-5}


def _rand_params(module, *args, seed=0, **kw):
    """Parameters of `module` with NumPy random values (norm scales around 1)."""
    shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), *args, **kw))
    rng = np.random.default_rng(seed)
    leaves, tree = jax.tree_util.tree_flatten_with_path(shapes["params"])
    out = []
    for path, s in leaves:
        base = 1.0 if jax.tree_util.keystr(path).endswith("['scale']") else 0.0
        out.append(jnp.asarray(base + rng.normal(0.0, 0.4, s.shape), s.dtype))
    return jax.tree_util.tree_unflatten(tree, out)


def _run(module, variables, *args, **kw):
    """`module.apply` under jit: one XLA compile is cheaper than compiling each eager op."""
    return jax.jit(lambda v, *a: module.apply(v, *a, **kw))(variables, *args)


# --------------------------------------------------------------------------- NumPy references


def _np_ln(x, p, eps=1e-6):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * p["scale"] + p["bias"]


def _np_rms(x, p, eps=1e-6):
    return x / np.sqrt((x**2).mean(-1, keepdims=True) + eps) * p["scale"]


def _np_mha(p, xq, xkv, h, mask=None):
    lin = lambda x, d: x @ d["kernel"] + d["bias"]
    q, k, v = lin(xq, p["query"]), lin(xkv, p["key"]), lin(xkv, p["value"])
    hd = q.shape[-1] // h
    o = np.zeros(q.shape)
    for b in range(q.shape[0]):
        for i in range(h):
            s = slice(i * hd, (i + 1) * hd)
            logits = q[b, :, s] @ k[b, :, s].T / math.sqrt(hd)
            if mask is not None:
                logits = np.where(mask[b], logits, -np.inf)
            w = np.exp(logits - logits.max(-1, keepdims=True))
            o[b, :, s] = (w / w.sum(-1, keepdims=True)) @ v[b, :, s]
    return lin(o, p["out"])


def _np_mlp(x, p):
    h = x @ p["fc1"]["kernel"] + p["fc1"]["bias"]
    h = 0.5 * h * (1 + erf(h / math.sqrt(2)))  # exact GELU
    return h @ p["fc2"]["kernel"] + p["fc2"]["bias"]


def _f64(tree):
    return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


# --------------------------------------------------------------------------- norms and MLP


def test_layernorm_matches_flax_and_mask_equals_narrower_norm():
    x = jax.random.normal(jax.random.key(0), (3, 4, 10)) * 2 + 1
    ln = LayerNorm()
    p = _rand_params(ln, x)
    got = _run(ln, {"params": p}, x)
    np.testing.assert_allclose(np.asarray(got), np.asarray(_run(nn.LayerNorm(epsilon=1e-6), {"params": p}, x)), **TOL)
    act = np.array([1, 2, 5, 8, 9])
    mask = np.zeros(10, np.float32)
    mask[act] = 1
    xm = x * mask
    got = np.asarray(_run(ln, {"params": p}, xm, jnp.asarray(mask)))
    want = _np_ln(np.asarray(xm, np.float64)[..., act], {k: np.asarray(v)[act] for k, v in p.items()})
    np.testing.assert_allclose(got[..., act], want, **TOL)
    np.testing.assert_array_equal(got[..., np.setdiff1d(np.arange(10), act)], 0.0)


def test_rmsnorm_matches_formula_and_mask():
    x = jax.random.normal(jax.random.key(1), (2, 3, 8)) + 0.5
    rms = RMSNorm()
    p = _rand_params(rms, x)
    assert set(p) == {"scale"}  # T5: weight only
    np.testing.assert_allclose(np.asarray(_run(rms, {"params": p}, x)), _np_rms(np.asarray(x, np.float64), _f64(p)),
                               **TOL)
    act = np.array([0, 3, 4, 7])
    mask = np.zeros(8, np.float32)
    mask[act] = 1
    got = np.asarray(_run(rms, {"params": p}, x, jnp.asarray(mask)))  # inactive inputs need not be zero
    want = _np_rms(np.asarray(x, np.float64)[..., act], {"scale": np.asarray(p["scale"])[act]})
    np.testing.assert_allclose(got[..., act], want, **TOL)
    np.testing.assert_array_equal(got[..., np.setdiff1d(np.arange(8), act)], 0.0)


def test_mlp_width_masks_equal_smaller_dense_network():
    d, hidden = 8, 20
    x = jax.random.normal(jax.random.key(2), (2, 5, d))
    mlp = FeedForward(hidden)
    p = _rand_params(mlp, x)
    hid = np.array([0, 1, 4, 9, 10, 15, 19])
    emb = np.array([1, 2, 3, 6])
    hm, em = np.zeros(hidden, np.float32), np.zeros(d, np.float32)
    hm[hid], em[emb] = 1, 1
    xm = x * em
    got = np.asarray(_run(mlp, {"params": p}, xm, mlp_mask=jnp.asarray(hm), embed_mask=jnp.asarray(em)))
    pp = _f64(p)
    small = {"fc1": {"kernel": pp["fc1"]["kernel"][emb][:, hid], "bias": pp["fc1"]["bias"][hid]},
             "fc2": {"kernel": pp["fc2"]["kernel"][hid][:, emb], "bias": pp["fc2"]["bias"][emb]}}
    want = _np_mlp(np.asarray(xm, np.float64)[..., emb], small)
    np.testing.assert_allclose(got[..., emb], want, **TOL)
    np.testing.assert_array_equal(np.delete(got, emb, axis=-1), 0.0)
    # unmasked MLP is the full dense network
    np.testing.assert_allclose(np.asarray(_run(mlp, {"params": p}, x)), _np_mlp(np.asarray(x, np.float64), pp), **TOL)


# --------------------------------------------------------------------------- EncoderBlock / Encoder


@pytest.mark.parametrize("norm", ["layernorm", "rmsnorm"])
def test_encoder_block_matches_numpy_reference(norm):
    b, t, d, h = 2, 5, 8, 2
    blk = EncoderBlock(num_heads=h, mlp_ratio=2.0, norm=norm)
    x = jax.random.normal(jax.random.key(3), (b, t, d))
    p = _rand_params(blk, x)
    valid = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
    got = _run(blk, {"params": p}, x, mask=padding_mask(jnp.asarray(valid)))
    pp, xx = _f64(p), np.asarray(x, np.float64)
    nrm = _np_ln if norm == "layernorm" else _np_rms
    m = np.broadcast_to(valid[:, None, :], (b, t, t))
    y = xx + _np_mha(pp["attention"], nrm(xx, pp["norm1"]), nrm(xx, pp["norm1"]), h, mask=m)
    want = y + _np_mlp(nrm(y, pp["norm2"]), pp["mlp"])
    np.testing.assert_allclose(np.asarray(got), want, **TOL)


def _extract_block(p, emb, heads, hd, hid):
    """Weights of the smaller block made of the active slices of a masked block's weights."""
    cols = np.concatenate([np.arange(i * hd, (i + 1) * hd) for i in heads])
    a = p["attention"]
    att = {n: {"kernel": a[n]["kernel"][emb][:, cols], "bias": a[n]["bias"][cols]} for n in ("query", "key", "value")}
    att["out"] = {"kernel": a["out"]["kernel"][cols][:, emb], "bias": a["out"]["bias"][emb]}
    m = p["mlp"]
    mlp = {"fc1": {"kernel": m["fc1"]["kernel"][emb][:, hid], "bias": m["fc1"]["bias"][hid]},
           "fc2": {"kernel": m["fc2"]["kernel"][hid][:, emb], "bias": m["fc2"]["bias"][emb]}}
    norms = {k: jax.tree.map(lambda v: v[emb], p[k]) for k in ("norm1", "norm2")}
    return {"attention": att, "mlp": mlp, **norms}


def _mask(n, idx):
    m = np.zeros(n, np.float32)
    m[idx] = 1
    return jnp.asarray(m)


@pytest.mark.parametrize("norm", ["layernorm", "rmsnorm"])
def test_encoder_block_width_masks_equal_smaller_block(norm):
    b, t, d, h, hd, hidden = 2, 6, 12, 4, 3, 24
    emb = np.array([0, 1, 4, 5, 6, 9, 10, 11])  # a non-prefix index set (e.g. bilateral/cyclic)
    heads = np.array([1, 3])
    hid = np.arange(0, 24, 2)
    big = EncoderBlock(num_heads=h, head_dim=hd, mlp_hidden=hidden, norm=norm)
    x = jax.random.normal(jax.random.key(4), (b, t, d))
    p = _rand_params(big, x, seed=1)
    got = _run(big, {"params": p}, x, head_mask=_mask(h, heads), embed_mask=_mask(d, emb), mlp_mask=_mask(hidden, hid))
    small = EncoderBlock(num_heads=len(heads), head_dim=hd, mlp_hidden=len(hid), norm=norm)
    want = _run(small, {"params": _extract_block(p, emb, heads, hd, hid)}, x[..., emb])
    np.testing.assert_allclose(np.asarray(got[..., emb]), np.asarray(want), **TOL)
    np.testing.assert_array_equal(np.delete(np.asarray(got), emb, axis=-1), 0.0)


def test_encoder_stack_relative_bias_and_layer_mask():
    b, t, d, h, L = 2, 5, 8, 2, 3
    enc = Encoder(num_heads=h, num_layers=L, norm="rmsnorm", relative_attention=True, num_buckets=8, max_distance=16,
                  use_bias=False, attention_scale=1.0, activation="relu")
    x = jax.random.normal(jax.random.key(5), (b, t, d))
    p = _rand_params(enc, x)
    mask = padding_mask(jnp.array([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]))
    layer_mask = jnp.array([1.0, 0.0, 1.0])
    got = _run(enc, {"params": p}, x, mask=mask, layer_mask=layer_mask)
    # the same computation by hand: one shared bias, block 1 skipped, final norm
    bias = RelativePositionBias(h, num_buckets=8, max_distance=16).apply({"params": p["relative_bias"]}, t, t)
    blk = EncoderBlock(num_heads=h, norm="rmsnorm", use_bias=False, attention_scale=1.0, activation="relu")
    y = x
    for i in (0, 2):
        y = _run(blk, {"params": p[f"block_{i}"]}, y, mask=mask, bias=bias)
    want = _run(RMSNorm(), {"params": p["final_norm"]}, y)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), **TOL)
    assert not np.allclose(np.asarray(got), np.asarray(_run(enc, {"params": p}, x, mask=mask)), atol=1e-3)
    with pytest.raises(ValueError, match="num_layers=3"):
        jax.eval_shape(lambda: enc.apply({"params": p}, x, layer_mask=jnp.ones(2)))


# --------------------------------------------------------------------------- DecoderBlock


def _decoder_setup(b=2, t=6, s=4, d=8, h=2):
    blk = DecoderBlock(num_heads=h, norm="rmsnorm", mlp_ratio=2.0)
    x = jax.random.normal(jax.random.key(6), (b, t, d))
    enc = jax.random.normal(jax.random.key(7), (b, s, 6))
    p = _rand_params(blk, x, enc)
    return blk, p, x, enc


def test_decoder_block_is_causal_and_ignores_padded_source():
    blk, p, x, enc = _decoder_setup()
    cross = padding_mask(jnp.array([[1, 1, 0, 0], [1, 1, 1, 1]]))
    out = _run(blk, {"params": p}, x, enc, cross_mask=cross)
    x2 = x.at[:, 4:].set(7.0)  # change the future
    enc2 = enc.at[0, 2:].set(-5.0)  # change padded source tokens
    out2 = _run(blk, {"params": p}, x2, enc2, cross_mask=cross)
    np.testing.assert_allclose(np.asarray(out2[:, :4]), np.asarray(out[:, :4]), **TOL)
    assert not np.allclose(np.asarray(out2[:, 4:]), np.asarray(out[:, 4:]))
    # but unpadded source tokens matter
    out3 = _run(blk, {"params": p}, x, enc.at[0, 1].set(-5.0), cross_mask=cross)
    assert not np.allclose(np.asarray(out3[0]), np.asarray(out[0]))


def test_decoder_block_cached_decoding_equals_full_forward():
    blk, p, x, enc = _decoder_setup()
    b, t, _ = x.shape
    cross = padding_mask(jnp.array([[1, 1, 1, 0], [1, 1, 1, 1]]))
    rpb = RelativePositionBias(num_heads=2, num_buckets=8, max_distance=8, bidirectional=False)
    rp = {"params": _rand_params(rpb, t, t, seed=9)}
    want = _run(blk, {"params": p}, x, enc, cross_mask=cross, self_bias=rpb.apply(rp, t, t))

    dec = blk.clone(decode=True)
    cache = dec.init(jax.random.key(0), x, enc)["cache"]
    traces = []

    @jax.jit
    def step(cache, tok, pos):
        traces.append(1)
        out, upd = dec.apply({"params": p, "cache": cache}, tok, enc, cross_mask=cross,
                             self_bias=rpb.apply(rp, 1, t, q_offset=pos), mutable=["cache"])
        return out, upd["cache"]

    outs = []
    for i in range(t):
        o, cache = step(cache, x[:, i:i + 1], jnp.int32(i))
        outs.append(o)
    assert len(traces) == 1
    np.testing.assert_allclose(np.asarray(jnp.concatenate(outs, 1)), np.asarray(want), **TOL)


def test_block_dropout_and_bfloat16():
    x = jax.random.normal(jax.random.key(8), (2, 5, 8))
    blk = EncoderBlock(num_heads=2, dropout_rate=0.3, attention_dropout_rate=0.3)
    p = _rand_params(blk, x)
    det = _run(blk, {"params": p}, x)
    no_drop = blk.clone(dropout_rate=0.0, attention_dropout_rate=0.0)
    np.testing.assert_array_equal(np.asarray(det), np.asarray(_run(no_drop, {"params": p}, x)))
    drop = _run(blk, {"params": p}, x, deterministic=False, rngs={"dropout": jax.random.key(0)})
    assert not np.allclose(np.asarray(drop), np.asarray(det))
    bf = _run(blk.clone(dtype=jnp.bfloat16), {"params": p}, x)
    assert bf.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(bf, np.float32), np.asarray(det), atol=0.1, rtol=0.05)


# --------------------------------------------------------------------------- ViT


def test_patch_embed_equals_reshape_matmul():
    b, hh, ww, c, ps, d = 2, 8, 12, 3, 4, 5
    x = jax.random.normal(jax.random.key(9), (b, hh, ww, c))
    pe = PatchEmbed(ps, d)
    p = _rand_params(pe, x)
    got = np.asarray(_run(pe, {"params": p}, x))
    xx = np.asarray(x, np.float64)
    patches = xx.reshape(b, hh // ps, ps, ww // ps, ps, c).transpose(0, 1, 3, 2, 4, 5).reshape(b, -1, ps * ps * c)
    k = np.asarray(p["proj"]["kernel"], np.float64).reshape(ps * ps * c, d)  # [p, p, C, D] flattened
    want = patches @ k + np.asarray(p["proj"]["bias"])
    assert got.shape == (b, (hh // ps) * (ww // ps), d)
    np.testing.assert_allclose(got, want, **TOL)
    with pytest.raises(ValueError, match="not a multiple"):
        _run(pe, {"params": p}, x[:, :7])


@pytest.mark.parametrize("num_classes,pool", [(10, "token"), (0, "token"), (7, "mean")])
def test_vit_output_shapes(num_classes, pool):
    vit = ViT(num_classes=num_classes, patch_size=4, embed_dim=16, depth=2, num_heads=2, pool=pool)
    x = jnp.ones((3, 16, 12, 3))
    shapes = jax.eval_shape(lambda: vit.init(jax.random.key(0), x))
    p = shapes["params"]
    assert p["pos_embedding"].shape == (1, 1 + 12, 16) and p["cls_token"].shape == (1, 1, 16)
    assert ("head" in p) == (num_classes > 0)
    out = jax.eval_shape(lambda v: vit.apply(v, x), shapes)
    assert out.shape == ((3, num_classes) if num_classes else (3, 16))
    toks = jax.eval_shape(lambda v: vit.apply(v, x, return_tokens=True), shapes)
    assert toks.shape == (3, 13, 16)


def test_vit_forward_composes_its_parts_and_jit_compiles_once():
    vit = ViT(num_classes=5, patch_size=4, embed_dim=8, depth=2, num_heads=2, dropout_rate=0.1)
    x = jax.random.normal(jax.random.key(10), (2, 8, 8, 3))
    p = _rand_params(vit, x)
    traces = []

    @jax.jit
    def fwd(p, x):
        traces.append(1)
        return vit.apply({"params": p}, x)

    out = fwd(p, x)
    out2 = fwd(p, x + 1.0)
    assert len(traces) == 1 and out.shape == out2.shape == (2, 5)
    # by hand: patch embed, class token, positions, encoder, class-token head
    tok = _run(PatchEmbed(4, 8), {"params": p["patch_embed"]}, x)
    tok = jnp.concatenate([jnp.broadcast_to(p["cls_token"], (2, 1, 8)), tok], 1) + p["pos_embedding"]
    tok = _run(Encoder(num_heads=2, num_layers=2), {"params": p["encoder"]}, tok)
    want = tok[:, 0] @ p["head"]["kernel"] + p["head"]["bias"]
    np.testing.assert_allclose(np.asarray(out), np.asarray(want), **TOL)
    # dropout only in training
    tr = _run(vit, {"params": p}, x, train=True, rngs={"dropout": jax.random.key(1)})
    assert not np.allclose(np.asarray(tr), np.asarray(out))


def test_vit_width_masks_equal_smaller_vit():
    d, h, hd, L = 12, 4, 3, 2
    emb, heads, hid = np.array([0, 2, 3, 5, 7, 8, 10, 11]), np.array([0, 2]), np.arange(32)
    big = ViT(num_classes=3, patch_size=4, embed_dim=d, depth=L, num_heads=h, mlp_ratio=4.0)
    x = jax.random.normal(jax.random.key(11), (2, 8, 8, 3))
    p = _rand_params(big, x, seed=3)
    got = _run(big, {"params": p}, x, embed_mask=_mask(d, emb), head_masks=jnp.stack([_mask(h, heads)] * L),
                    mlp_masks=jnp.stack([_mask(4 * d, hid)] * L))
    small = ViT(num_classes=3, patch_size=4, embed_dim=len(emb), depth=L, num_heads=len(heads),
                qkv_features=len(heads) * hd, mlp_ratio=4.0)
    e = p["encoder"]
    sp = {"patch_embed": {"proj": {"kernel": p["patch_embed"]["proj"]["kernel"][..., emb],
                                   "bias": p["patch_embed"]["proj"]["bias"][emb]}},
          "cls_token": p["cls_token"][..., emb], "pos_embedding": p["pos_embedding"][..., emb],
          "encoder": {f"block_{i}": _extract_block(e[f"block_{i}"], emb, heads, hd, hid) for i in range(L)},
          "head": {"kernel": p["head"]["kernel"][emb], "bias": p["head"]["bias"]}}
    sp["encoder"]["final_norm"] = jax.tree.map(lambda v: v[emb], e["final_norm"])
    want = _run(small, {"params": sp}, x)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-4)
