import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxlab.nas import widths as W


@settings(deadline=None, max_examples=15)
@given(st.integers(1, 64), st.data())
def test_mask_equals_index_set(total, data):
    d = data.draw(st.integers(0, total))
    side = data.draw(st.sampled_from([W.LEFT, W.RIGHT]))
    off = data.draw(st.integers(0, total - 1))
    for scheme in W.SCHEMES:
        idx = W.index_set(total, d, scheme, side=side, offset=off)
        assert len(idx) == d and len(set(idx.tolist())) == d
        ref = np.zeros(total)
        ref[idx] = 1
        m = np.asarray(W.width_mask(total, jnp.int32(d), scheme, side=jnp.int32(side), offset=jnp.int32(off)))
        np.testing.assert_array_equal(m, ref)


def test_bilateral_sides():
    np.testing.assert_array_equal(W.index_set(8, 3, "bilateral", side=W.RIGHT), [5, 6, 7])
    np.testing.assert_array_equal(W.index_set(8, 3, "bilateral", side=W.LEFT), [0, 1, 2])
    np.testing.assert_array_equal(W.index_set(8, 3, "cyclic", offset=6), [6, 7, 0])


def test_mask_traced_one_compile():
    traces = []

    @jax.jit
    def f(d, side):
        traces.append(1)
        return W.width_mask(16, d, "bilateral", side=side)

    for d in range(17):
        for s in (0, 1):
            assert float(f(d, s).sum()) == d
    assert len(traces) == 1


def test_usage_vitas_example():
    # ViTAS spec 2.2: C = 384, ratios 0.1..1.0.
    C = 384
    d = [38, 77, 115, 154, 192, 230, 269, 307, 346, 384]
    offs = W.default_cyclic_offsets(C, d)
    np.testing.assert_array_equal(offs, [0, 38, 115, 230, 0, 192, 38, 307, 230, 192])
    cyc = W.usage_stats(W.channel_usage(C, d, "cyclic"))
    assert cyc["max"] - cyc["min"] <= 1 and cyc["min"] == 5 and cyc["max"] == 6
    pre = W.usage_stats(W.channel_usage(C, d, "prefix"))
    assert (pre["min"], pre["max"]) == (1, 10)
    bil = W.channel_usage(C, d, "bilateral")
    # symmetric ratio set d_k + d_{K+1-k} = C -> not exact here (38+346 = 384 yes, ...)
    assert abs(bil.sum() - sum(d)) < 1e-9
    assert cyc["cv"] < pre["cv"]


@settings(deadline=None, max_examples=30)
@given(st.integers(2, 50), st.lists(st.integers(1, 50), min_size=1, max_size=12))
def test_cyclic_usage_near_uniform(total, ds):
    ds = [min(x, total) for x in ds]
    u = W.channel_usage(total, ds, "cyclic")
    assert u.max() - u.min() <= 1
    assert u.sum() == sum(ds)
    if sum(ds) % total == 0:
        assert u.max() == u.min()


def test_masked_update_touches_only_index_set():
    # One SGD step of a masked linear layer changes only rows/cols in I_k.
    C = 12
    w = jax.random.normal(jax.random.key(0), (C, C))
    x = jax.random.normal(jax.random.key(1), (5, C))
    for scheme, kw in [("prefix", {}), ("bilateral", {"side": 1}), ("cyclic", {"offset": 9})]:
        m = W.width_mask(C, 5, scheme, **kw)
        g = jax.grad(lambda w: jnp.sum(((x * m) @ w * m) ** 2))(w)
        idx = W.index_set(C, 5, scheme, **kw)
        outside = np.ones((C, C), bool)
        outside[np.ix_(idx, idx)] = False
        assert np.all(np.asarray(g)[outside] == 0.0)
        assert np.all(np.asarray(g)[~outside] != 0.0)


def test_bad_scheme():
    with pytest.raises(ValueError, match="unknown width scheme"):
        W.index_set(4, 2, "random")
