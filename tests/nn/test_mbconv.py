import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.nas.widths import index_set, width_mask
from jaxlab.nn.mbconv import MaskedMBConv, MBConv, extract_mbconv

KERNELS = (3, 5)


def _setup(in_max, out_max, t, stride):
    blk = MaskedMBConv(in_max, out_max, t, kernels=KERNELS, stride=stride)
    x = jax.random.normal(jax.random.key(0), (3, 9, 9, in_max))
    ones = lambda n: jnp.ones(n)
    shapes = jax.eval_shape(blk.init, jax.random.key(1), x, 1, ones(in_max), ones(blk.hidden_max),
                            ones(blk.se_max), ones(out_max))
    # random weights, non-trivial BN affine parameters (host RNG: nothing to compile)
    rng = np.random.default_rng(2)
    params = jax.tree_util.tree_map(
        lambda l: jnp.asarray((0.5 if l.ndim > 1 else 1.0) * rng.standard_normal(l.shape), jnp.float32), shapes)
    return blk, params, x


def _masks(blk, c_in, c_out, side):
    hid = c_in * blk.expand_ratio
    se = max(1, hid // blk.se_div)
    sets = [(blk.in_max, c_in), (blk.hidden_max, hid), (blk.se_max, se), (blk.out_max, c_out)]
    masks = [width_mask(C, d, "bilateral", side=side) for C, d in sets]
    idx = [index_set(C, d, "bilateral", side=side) for C, d in sets]
    return masks, idx


@pytest.mark.parametrize("in_max,out_max,t,stride,c_in,c_out", [
    (6, 6, 3, 1, 4, 4),      # residual block
    (6, 10, 3, 2, 5, 7),     # strided, channel change
    (8, 8, 1, 1, 5, 5),      # t = 1: no expansion
])
def test_masked_equals_extracted(in_max, out_max, t, stride, c_in, c_out):
    blk, params, x0 = _setup(in_max, out_max, t, stride)
    fwd = jax.jit(blk.apply)
    for side, op in ((0, 1), (1, 2), (1, 1)):
        masks, idx = _masks(blk, c_in, c_out, side)
        x = x0 * masks[0]
        y = fwd(params, x, op, *masks)
        p, bs = extract_mbconv(params["params"], op, KERNELS, *idx, expand_ratio=t)
        sub = MBConv(c_in, c_out, hidden=c_in * t, kernel=KERNELS[op - 1], stride=stride,
                     se_hidden=len(idx[2]), expand=t != 1)
        ys, _ = sub.apply({"params": p, "batch_stats": bs}, x[..., idx[0]], train=True, mutable=["batch_stats"])
        np.testing.assert_allclose(np.asarray(y)[..., idx[3]], ys, rtol=2e-4, atol=2e-4)
        outside = np.ones(out_max, bool)
        outside[idx[3]] = False
        assert np.all(np.asarray(y)[..., outside] == 0.0)


def test_identity_and_exact_zero_gradients():
    blk, params, x = _setup(8, 8, 3, 1)
    masks, idx = _masks(blk, 5, 5, 1)
    x = x * masks[0]
    y0 = blk.apply(params, x, 0, *masks)
    np.testing.assert_array_equal(y0, x)

    def loss(p, op):
        return jnp.sum(blk.apply(p, x, op, *masks) ** 2)

    grad = jax.jit(jax.grad(loss))
    g = grad(params, 2)["params"]
    for name, v in g.items():
        v = np.asarray(v)
        if name.startswith("op1_"):
            assert np.all(v == 0.0), name  # unselected op
            continue
        assert np.any(v != 0.0), name
        # channel axes: find which index set each axis uses by its size
        sizes = {blk.in_max: idx[0], blk.hidden_max: idx[1], blk.se_max: idx[2]}
        for ax, n in enumerate(v.shape):
            if ax < v.ndim - 2 and v.ndim == 4:
                continue  # spatial kernel axes
            if n in sizes and n > 1:
                out = np.ones(n, bool)
                out[sizes[n]] = False
                sl = [slice(None)] * v.ndim
                sl[ax] = out
                assert np.all(v[tuple(sl)] == 0.0), (name, ax)
    g0 = grad(params, 0)["params"]
    assert all(np.all(np.asarray(v) == 0) for v in g0.values())
