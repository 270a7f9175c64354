"""Width/depth buckets: the bucketed step must update the parameters exactly as the masked
step does (same loss, same new parameters), on both coupling sides, at the smallest bucket
(which also drops layers) and the largest."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.scalenet import buckets, sampler, supernet
from jaxlab.scalenet.configs import get_config
from jaxlab.scalenet.space import Space, SpaceConfig

SP_CFG = SpaceConfig(stages=((1, 1, 8, 1), (2, 2, 12, 3)), head_channels=32, max_mult=1.5,
                     mult_grid=((1.0,), (1.2, 1.3), (1.4, 1.5)), res_grid=((8,), (8,), (8,)))


def _cfg(mode):
    cfg = get_config("smoke")
    return dataclasses.replace(cfg, space=SP_CFG,
                               supernet=dataclasses.replace(cfg.supernet, buckets=mode, weight_decay=1e-3))


@pytest.fixture(scope="module")
def steps():
    space = Space(SP_CFG)
    net, state = supernet.init_state(_cfg("off"), space)
    # perturb every leaf so BN affine terms, SE biases and the classifier matter
    rng = np.random.default_rng(1)
    params = jax.tree_util.tree_map(lambda l: l + 0.2 * rng.standard_normal(l.shape).astype(np.float32),
                                    state.params)
    state = state.replace(params=params, opt_state=state.tx.init(params))
    return space, state, supernet.make_step(_cfg("off"), net), supernet.make_step(_cfg("on"), net)


def test_bucket_choice_is_the_smallest_that_holds_the_arch():
    space = Space(SP_CFG)
    assert buckets.bucket_mults(space) == (1.0, 1.3, 1.5)
    base = np.array([1, 2, 1])
    assert buckets.choose_bucket(space, space.scale(base, 1.0, 1.0)) == 1.0
    assert buckets.choose_bucket(space, space.scale(base, 1.2, 1.2)) == 1.3
    assert buckets.choose_bucket(space, space.scale(base, 1.0, 1.4)) == 1.5   # width decides
    assert buckets.choose_bucket(space, space.scale(base, 1.2, 1.0)) == 1.3   # depth decides: 3 layers in stage 1
    assert buckets.choose_bucket(space, space.scale(base, 1.5, 1.0)) == 1.3   # ceil(2 * 1.5) = ceil(2 * 1.3)
    v = buckets.bucket_view(space, 1.0)
    # bilateral supernet slots hold ceil(1.5 c) + c; bucket 1.0 holds c
    np.testing.assert_array_equal(space.super_channels, [20, 20, 30])
    np.testing.assert_array_equal(v.super_channels, [8, 8, 12])
    np.testing.assert_array_equal(v.stage_layers, [1, 2])


@pytest.mark.parametrize("w,d,side", [(1.0, 1.0, 1), (1.5, 1.5, 0)])
def test_bucketed_step_equals_masked_step(steps, w, d, side):
    space, state, masked, bucketed = steps
    arch = space.scale(np.array([1, 2, 2]), d, w, side)
    assert buckets.choose_bucket(space, arch) < 1.5 or (w, d) == (1.5, 1.5)
    rng = np.random.default_rng(2)
    batch = {"x": jnp.asarray(rng.random((8, 8, 8, 3), np.float32)),
             "y": jnp.asarray(rng.integers(0, 10, 8)), "arch": arch}
    copy = lambda s: jax.tree_util.tree_map(jnp.array, s)  # the steps donate their input
    s_m, m_m = masked(copy(state), batch, jax.random.key(0))
    s_b, m_b = bucketed(copy(state), batch, jax.random.key(0))
    np.testing.assert_allclose(m_b["loss"], m_m["loss"], rtol=1e-5)
    np.testing.assert_allclose(m_b["grad_norm"], m_m["grad_norm"], rtol=1e-4)
    for a, b in zip(jax.tree_util.tree_leaves(s_b.params), jax.tree_util.tree_leaves(s_m.params)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_sampled_archs_always_fit_their_bucket():
    space = Space(get_config("smoke").space)
    rng = np.random.default_rng(0)
    for kind in ("hierarchical", "uniform"):
        for _ in range(50):
            arch, _, info = sampler.sample(space, rng, kind)
            m = buckets.choose_bucket(space, arch)
            assert m >= max(info["w"], info["d"]) - 1e-9 or kind == "uniform"
            v = buckets.bucket_view(space, m)
            assert np.all(np.asarray(arch["channels"]) <= v.super_channels)
            dropped = np.setdiff1d(np.arange(space.num_layers), v.layer_ids)
            assert np.all(np.asarray(arch["ops"])[dropped] == 0)


def test_auto_setting_keeps_masks_for_short_runs():
    assert buckets.use_buckets("auto", buckets.AUTO_MIN_STEPS) == (jax.default_backend() == "cpu")
    assert not buckets.use_buckets("auto", 10)
    assert buckets.use_buckets("on", 10) and not buckets.use_buckets("off", 10**6)
    with pytest.raises(ValueError, match="supernet.buckets"):
        buckets.use_buckets("sometimes", 10)


def test_bucketed_scorer_equals_masked_scorer(steps):
    """The search's scorer on the bucket of each architecture gives the masked scorer's
    accuracies (both coupling sides summed); a slice from the wrong end would not."""
    from jaxlab.scalenet.data import Data

    space, state, _, _ = steps
    cfg = _cfg("off")
    data = Data(cfg.data)
    net = supernet.SuperNet(space)
    archs, r, _ = sampler.sample_batch(space, np.random.default_rng(3), 12)
    archs = {k: np.asarray(v) for k, v in archs.items() if k != "side"}
    masked = supernet.make_scorer(cfg, space, net, state.params, data)(archs, int(r[0]))
    bucketed = supernet.make_scorer(_cfg("on"), space, net, state.params, data)(archs, int(r[0]))
    mults = {buckets.choose_bucket(space, {k: v[i] for k, v in archs.items()}) for i in range(12)}
    assert len(mults) > 1  # several buckets in one call
    np.testing.assert_allclose(bucketed, masked, atol=1.5 / cfg.search.eval_batch)
    assert len(set(np.round(masked, 4))) > 2  # the accuracies differ between architectures
