import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.core import train as train_lib
from jaxlab.vectornet import configs, models, training
from jaxlab.vectornet.models import PolylineSubgraph, VectorNet
from jaxlab.vectornet.polylines import AGENT, LANE, NUM_FEATURES, PAD, TARGET


def _np_subgraph(params, x, mask, depth, include_self=True):
    """Dense NumPy forward of Eq. 2 (LayerNorm eps 1e-6, as flax)."""
    for i in range(depth):
        p = params[f"layer_{i}"]
        h = x @ np.asarray(p["Dense_0"]["kernel"], np.float64) + np.asarray(p["Dense_0"]["bias"])
        mu, var = h.mean(-1, keepdims=True), h.var(-1, keepdims=True)
        ln = p["LayerNorm_0"]
        h = (h - mu) / np.sqrt(var + 1e-6) * np.asarray(ln["scale"]) + np.asarray(ln["bias"])
        h = np.maximum(h, 0)
        pooled = np.zeros_like(h)
        for idx in np.ndindex(*h.shape[:-2]):
            for a in range(h.shape[-2]):
                sel = mask[idx].copy()
                if not include_self:
                    sel[a] = False
                pooled[idx + (a,)] = h[idx][sel].max(0) if sel.any() else 0.0
        x = np.concatenate([h, pooled], -1)
    out = np.zeros(x.shape[:-2] + x.shape[-1:])
    for idx in np.ndindex(*x.shape[:-2]):
        if mask[idx].any():
            out[idx] = x[idx][mask[idx]].max(0)
    return out


@pytest.mark.parametrize("include_self", [True, False])
def test_subgraph_equals_dense_numpy_reference(include_self):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 5, 7)).astype(np.float32)
    mask = rng.random((2, 3, 5)) < 0.6
    mask[0, 1] = False  # an empty (padding) polyline
    mod = PolylineSubgraph(depth=3, width=8, pool_includes_self=include_self)
    params = mod.init(jax.random.key(0), x, mask)["params"]
    got = np.asarray(mod.apply({"params": params}, x, mask))
    ref = _np_subgraph(params, x.astype(np.float64), mask, 3, include_self)
    np.testing.assert_allclose(got, ref, rtol=2e-4, atol=2e-5)
    assert np.all(got[0, 1] == 0)


def test_pooled_layers_equal_the_concatenating_layers_with_gradients():
    # PolylineSubgraph never broadcasts the per-polyline pool; SubgraphLayer (the paper's
    # concatenation, Eq. 2) does. Same parameter tree, same values and gradients.
    from jaxlab.vectornet.models import SubgraphLayer

    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(2, 4, 6, 7)), jnp.float32)
    mask = jnp.asarray(rng.random((2, 4, 6)) < 0.6).at[1, 2].set(False)
    mod = PolylineSubgraph(depth=3, width=8)
    params = mod.init(jax.random.key(0), x, mask)["params"]

    def concatenating(p):
        h = x
        for i in range(3):
            h = SubgraphLayer(8).apply({"params": p[f"layer_{i}"]}, h, mask)
        from jaxlab.vectornet.models import masked_max
        return masked_max(h, mask, axis=-2)

    probe = jnp.asarray(rng.normal(size=(2, 4, 16)), jnp.float32)
    f_new = lambda p: jnp.sum(jnp.tanh(mod.apply({"params": p}, x, mask)) * probe)
    f_old = lambda p: jnp.sum(jnp.tanh(concatenating(p)) * probe)
    np.testing.assert_allclose(mod.apply({"params": params}, x, mask), concatenating(params), rtol=1e-5, atol=1e-6)
    for a, b in zip(jax.tree.leaves(jax.grad(f_new)(params)), jax.tree.leaves(jax.grad(f_old)(params)), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def _subgraph_grads(hand_vjp, params, x, mask, probe, dtype=jnp.float32, width=8):
    mod = PolylineSubgraph(depth=3, width=width, hand_vjp=hand_vjp, dtype=dtype)
    f = lambda p, x: jnp.sum(jnp.tanh(mod.apply({"params": p}, x, mask).astype(jnp.float32)) * probe)
    return jax.value_and_grad(f, argnums=(0, 1))(params, x)


@pytest.mark.parametrize("ties,width", [(False, 8), (True, 8), (True, 72)])
def test_hand_vjp_equals_autodiff_of_the_flax_modules(ties, width):
    # the hand-written VJP of Dense + LayerNorm + ReLU + max-pool against JAX's differentiation
    # of nn.Dense + nn.LayerNorm: parameter and input gradients, with an empty polyline, padding
    # and (ties=True) duplicated vectors whose maxima tie, where the gradient must be split;
    # width 72: the LayerNorm means in chunks of 32, 32 and 8 features
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 4, 6, 7)).astype(np.float32)
    mask = rng.random((2, 4, 6)) < 0.7
    mask[1, 2] = False
    mask[0, 0, :3] = True
    if ties:
        x[0, 0, 1] = x[0, 0, 0]
        x[1, 3, :] = x[1, 3, :1]  # every vector of a polyline the same
        mask[1, 3, :4] = True
    x, mask = jnp.asarray(x), jnp.asarray(mask)
    hand = PolylineSubgraph(depth=3, width=width)
    params = hand.init(jax.random.key(0), x, mask)["params"]
    auto_params = PolylineSubgraph(depth=3, width=width, hand_vjp=False).init(jax.random.key(0), x, mask)["params"]
    for a, b in zip(jax.tree.leaves_with_path(params), jax.tree.leaves_with_path(auto_params), strict=True):
        assert a[0] == b[0] and np.array_equal(a[1], b[1])  # same names, shapes and initial values
    probe = jnp.asarray(rng.normal(size=(2, 4, 2 * width)), jnp.float32)
    (v_hand, (gp_hand, gx_hand)) = _subgraph_grads(True, params, x, mask, probe, width=width)
    (v_auto, (gp_auto, gx_auto)) = _subgraph_grads(False, params, x, mask, probe, width=width)
    np.testing.assert_allclose(v_hand, v_auto, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(gp_hand), jax.tree.leaves(gp_auto), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(gx_hand, gx_auto, rtol=1e-4, atol=1e-6)
    assert np.all(np.asarray(gx_hand)[~np.asarray(mask)] == 0)  # padding vectors get no gradient
    assert float(jnp.abs(gx_hand).max()) > 0


@pytest.mark.parametrize("vectors,width", [(1, 8), (20, 64), (40, 72)])
def test_hand_vjp_reductions_equal_numpy_sums(vectors, width):
    # the forms the hand-written VJP sums in (unrolled over vectors up to 32, matrix products
    # over rows, LayerNorm means in 32-feature chunks) against NumPy in float64
    x = np.random.default_rng(vectors).normal(size=(3, 5, vectors, width)).astype(np.float32)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(models._vector_sum(jnp.asarray(x)), x64.sum(-2, keepdims=True), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(models._sum_rows(jnp.asarray(x)), x64.reshape(-1, width).sum(0), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(models._feature_mean(jnp.asarray(x)), x64.mean(-1, keepdims=True), rtol=1e-5, atol=1e-6)
    assert models._vector_sum(jnp.asarray(x, jnp.bfloat16)).dtype == jnp.bfloat16


def test_hand_vjp_in_bfloat16_follows_autodiff():
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(size=(2, 3, 5, 7)), jnp.float32)
    mask = jnp.asarray(rng.random((2, 3, 5)) < 0.7)
    params = PolylineSubgraph(depth=3, width=8).init(jax.random.key(1), x, mask)["params"]
    probe = jnp.asarray(rng.normal(size=(2, 3, 16)), jnp.float32)
    (_, (gp_hand, gx_hand)) = _subgraph_grads(True, params, x, mask, probe, jnp.bfloat16)
    (_, (gp_auto, gx_auto)) = _subgraph_grads(False, params, x, mask, probe, jnp.bfloat16)
    assert gx_hand.dtype == jnp.float32
    for a, b in zip(jax.tree.leaves(gp_hand), jax.tree.leaves(gp_auto), strict=True):
        assert a.dtype == b.dtype == jnp.float32
        np.testing.assert_allclose(a, b, rtol=0.1, atol=0.05 * float(jnp.abs(b).max()))


def test_forward_mode_needs_the_autodiff_subgraph():
    x = jnp.ones((1, 2, 3, 7))
    mask = jnp.ones((1, 2, 3), bool)
    params = PolylineSubgraph(depth=2, width=4).init(jax.random.key(0), x, mask)["params"]
    tangent = jnp.ones_like(x)
    with pytest.raises(TypeError, match="forward-mode"):
        jax.jvp(lambda x: PolylineSubgraph(depth=2, width=4).apply({"params": params}, x, mask), (x,), (tangent,))
    auto = PolylineSubgraph(depth=2, width=4, hand_vjp=False)
    _, jvp_out = jax.jvp(lambda x: auto.apply({"params": params}, x, mask), (x,), (tangent,))
    assert jvp_out.shape == (1, 2, 8)


def _config(**model):
    c = configs.get_config("smoke")
    c.scene = dataclasses.replace(c.scene, max_polylines=8, max_vectors=6)
    c.model = dataclasses.replace(c.model, subgraph_width=16, global_width=16, decoder_width=16, **model)
    return c


def _inputs(rng, b=2, p=8, v=6):
    vec = rng.normal(size=(b, p, v, NUM_FEATURES)).astype(np.float32) * 5
    mask = rng.random((b, p, v)) < 0.7
    mask[:, 0, :2] = True
    kind = np.array([[TARGET, AGENT, LANE, LANE, AGENT, LANE, PAD, PAD]] * b, np.int32)
    mask[:, 6:] = False
    vec[~mask] = 0.0
    return vec, mask, kind


_JITTED = {}


def _apply(config, params, vec, mask, kind):
    """Inference forward, jitted once per context (the tests' configs differ only there)."""
    if config.model.context not in _JITTED:
        model = training.make_model(config, aux=False)
        _JITTED[config.model.context] = jax.jit(lambda p, v, m, k: model.apply({"params": p}, v, m, k))
    params = {k: v for k, v in params.items() if k != "node_decoder"}
    return np.asarray(_JITTED[config.model.context](params, jnp.asarray(vec), jnp.asarray(mask), jnp.asarray(kind)))


def test_permutation_invariance_of_vectors_and_polylines():
    c = _config()
    params = training.init_state(c).params
    rng = np.random.default_rng(1)
    vec, mask, kind = _inputs(rng)
    ref = _apply(c, params, vec, mask, kind)
    pv = rng.permutation(6)
    np.testing.assert_allclose(_apply(c, params, vec[:, :, pv], mask[:, :, pv], kind), ref, rtol=1e-5, atol=1e-5)
    pp = np.concatenate([[0], 1 + rng.permutation(7)])
    np.testing.assert_allclose(_apply(c, params, vec[:, pp], mask[:, pp], kind[:, pp]), ref, rtol=1e-5, atol=1e-5)
    # not invariant to moving the target away from row 0 (the decoder reads row 0)
    sw = np.array([1, 0, 2, 3, 4, 5, 6, 7])
    assert not np.allclose(_apply(c, params, vec[:, sw], mask[:, sw], kind[:, sw]), ref, atol=1e-3)


def test_more_padding_and_garbage_in_padding_give_the_same_output():
    c = _config()
    params = training.init_state(c).params
    rng = np.random.default_rng(2)
    vec, mask, kind = _inputs(rng)
    ref = _apply(c, params, vec, mask, kind)
    big_v = np.zeros((2, 12, 10, NUM_FEATURES), np.float32) + rng.normal(size=(2, 12, 10, NUM_FEATURES)) * 100
    big_m = np.zeros((2, 12, 10), bool)
    big_k = np.full((2, 12), PAD, np.int32)
    big_v[:, :8, :6][mask] = vec[mask]
    big_m[:, :8, :6] = mask
    big_k[:, :8] = kind
    np.testing.assert_allclose(_apply(c, params, big_v, big_m, big_k), ref, rtol=1e-5, atol=1e-5)


def test_context_switches_hide_what_they_should():
    rng = np.random.default_rng(3)
    vec, mask, kind = _inputs(rng)
    moved_agents, moved_lanes = vec.copy(), vec.copy()
    moved_agents[:, kind[0] == AGENT] += 3.0
    moved_lanes[:, kind[0] == LANE] += 3.0
    for context, agents_matter, lanes_matter in [("none", False, False), ("map", False, True),
                                                 ("map_agents", True, True)]:
        c = _config(context=context)
        params = training.init_state(c).params
        ref = _apply(c, params, vec, mask, kind)
        assert (not np.allclose(_apply(c, params, moved_agents, mask, kind), ref, atol=1e-4)) == agents_matter
        assert (not np.allclose(_apply(c, params, moved_lanes, mask, kind), ref, atol=1e-4)) == lanes_matter


def test_node_mask_hides_features_but_keeps_identifier():
    c = _config()
    params = training.init_state(c).params
    rng = np.random.default_rng(4)
    vec, mask, kind = _inputs(rng)
    model = training.make_model(c)
    node_mask = np.zeros((2, 8), bool)
    node_mask[:, 2] = True
    run = lambda v: model.apply({"params": params}, v, mask, kind, jnp.asarray(node_mask))
    traj, recon, feats = run(vec)
    np.testing.assert_allclose(np.linalg.norm(np.asarray(feats)[mask.any(-1)], axis=-1), 1.0, rtol=1e-5)
    # changing a masked polyline's shape while keeping its minimum start point changes nothing
    v2 = vec.copy()
    v2[:, 2, :, 2:4] += 7.0
    np.testing.assert_allclose(np.asarray(run(v2)[0]), np.asarray(traj), rtol=1e-5, atol=1e-5)
    v3 = vec.copy()
    v3[:, 2, :, 0:2] -= 7.0  # moves the identifier p^id
    v3[~mask] = 0
    assert not np.allclose(np.asarray(run(v3)[0]), np.asarray(traj), atol=1e-4)


def test_sampled_node_mask_never_picks_target_padding_or_hidden_context():
    kind = jnp.array([[TARGET, AGENT, LANE, PAD] * 4])
    vm = jnp.ones((1, 16, 3), bool)
    for seed in range(5):
        m = np.asarray(training.sample_node_mask(jax.random.key(seed), kind, vm, 0.9, "map"))
        assert not m[np.asarray(kind) != LANE].any() and m.any()


def _analytic_params(f, sub_depth, sub_w, glob_depth, glob_w):
    n = f * sub_w + sub_w + 2 * sub_w
    n += (sub_depth - 1) * (2 * sub_w * sub_w + sub_w + 2 * sub_w)
    d = 2 * sub_w + 2
    for _ in range(glob_depth):
        n += 3 * (d * glob_w + glob_w)
        d = glob_w
    return n


def test_paper_config_parameter_count_is_analytic():
    c = configs.get_config("paper")
    model = VectorNet(num_future=30)
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), *training.dummy_inputs(c)))["params"]
    count = lambda tree: sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))
    encoder = count({k: v for k, v in shapes.items() if k in ("subgraph", "global_graph")})
    assert encoder == _analytic_params(NUM_FEATURES, 3, 64, 1, 64)
    # decoder: 128 -> 64 (+LN) -> 60
    assert count(shapes["decoder"]) == 130 * 0 + 64 * 64 + 64 + 128 + 64 * 60 + 60
    two = VectorNet(num_future=30, global_depth=2, global_width=256)
    shapes2 = jax.eval_shape(lambda: two.init(jax.random.key(0), *training.dummy_inputs(c)))["params"]
    assert count(shapes2["global_graph"]) + count(shapes2["subgraph"]) == _analytic_params(NUM_FEATURES, 3, 64, 2, 256)


def test_train_step_compiles_once_and_loss_falls():
    c = _config()
    c.opt = dataclasses.replace(c.opt, lr=1e-2)
    traces = []
    inner = training.make_loss_fn(c)

    def loss_fn(*a):
        traces.append(1)
        return inner(*a)

    step = train_lib.make_train_step(loss_fn)
    state = training.init_state(c)
    rng = np.random.default_rng(5)
    vec, mask, kind = _inputs(rng, b=4)
    fut = np.cumsum(np.tile([[1.0, 0.2]], (30, 1)), 0)[None].repeat(4, 0).astype(np.float32)
    losses = []
    for s in range(15):
        batch = {"vectors": vec, "vec_mask": mask, "kind": kind, "future": fut, "future_mask": np.ones((4, 30), bool)}
        state, met = step(state, batch, jax.random.key(s))
        losses.append(float(met["traj_loss"]))
    assert len(traces) == 1
    assert losses[-1] < 0.5 * losses[0]
