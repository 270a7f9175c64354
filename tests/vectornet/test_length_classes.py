"""The subgraph on polyline length classes (`PolylineSubgraph.slot_vectors`) and the
budgets that `polylines.slot_budget` derives for it."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.vectornet import configs, training
from jaxlab.vectornet.models import PolylineSubgraph
from jaxlab.vectornet.polylines import slot_budget


def _random_masks(rng, n, p, v, holes=False):
    lengths = rng.integers(0, v + 1, size=(n, p))
    mask = np.arange(v) < lengths[..., None]
    if holes:  # invalid vectors inside a polyline: its length is its last valid vector + 1
        mask &= rng.random(mask.shape) < 0.8
    return mask


def _brute_force_cost(mask, num_classes):
    """Fewest vectors over every split of the sorted slots into <= num_classes runs."""
    v = mask.shape[-1]
    lengths = np.max(np.where(mask, np.arange(1, v + 1), 0), axis=-1)
    m = np.sort(lengths, axis=-1)[:, ::-1].max(0)
    p = len(m)
    best = None
    for c in range(1, num_classes + 1):
        for cuts in itertools.combinations(range(1, p), c - 1):
            bounds = (0,) + cuts + (p,)
            cost = sum((b - a) * m[a] for a, b in zip(bounds, bounds[1:]))
            best = cost if best is None else min(best, cost)
    return best


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("num_classes", [1, 2, 3])
def test_slot_budget_fits_every_scene_and_is_the_cheapest_split(seed, num_classes):
    rng = np.random.default_rng(seed)
    mask = _random_masks(rng, 9, 7, 6, holes=seed % 2 == 1)
    budget = slot_budget(mask, num_classes)
    assert len(budget) == 7 and len(set(budget)) <= num_classes
    assert all(a >= b for a, b in zip(budget, budget[1:]))
    lengths = np.max(np.where(mask, np.arange(1, 7), 0), axis=-1)
    assert np.all(np.sort(lengths, axis=-1)[:, ::-1] <= np.asarray(budget))  # every scene fits
    assert sum(budget) == _brute_force_cost(mask, num_classes)


def test_slot_budget_rejects_bad_input():
    with pytest.raises(ValueError, match="scenes, polylines, vectors"):
        slot_budget(np.ones((4, 5), bool), 2)
    with pytest.raises(ValueError, match="num_classes"):
        slot_budget(np.ones((2, 4, 5), bool), 0)


@pytest.mark.parametrize("include_self", [True, False])
def test_length_classes_give_the_padded_outputs_and_gradients(include_self):
    rng = np.random.default_rng(3)
    b, p, v, f = 3, 6, 7, 5
    mask = _random_masks(rng, b, p, v, holes=True)
    mask[0, 2] = False  # an empty polyline
    mask[:, 5] = False  # a slot empty in every scene: a class of budget 0
    x = jnp.asarray(rng.normal(size=(b, p, v, f)), jnp.float32)
    budget = slot_budget(mask, p)  # one class per distinct per-slot maximum
    assert budget[-1] == 0 and len(set(budget)) >= 3
    padded = PolylineSubgraph(depth=2, width=8, pool_includes_self=include_self)
    classes = PolylineSubgraph(depth=2, width=8, pool_includes_self=include_self, slot_vectors=budget)
    params = padded.init(jax.random.key(0), x, mask)["params"]
    assert jax.tree.structure(params) == jax.tree.structure(classes.init(jax.random.key(0), x, mask)["params"])
    w = jnp.asarray(rng.normal(size=(b, p, 16)), jnp.float32)

    def loss(mod):
        return lambda prm, x: jnp.sum(w * jnp.tanh(mod.apply({"params": prm}, x, mask)))

    fwd = lambda mod: jax.jit(lambda prm, x: mod.apply({"params": prm}, x, mask))(params, x)
    np.testing.assert_allclose(fwd(classes), fwd(padded), rtol=1e-5, atol=1e-6)
    g_pad = jax.jit(jax.grad(loss(padded), argnums=(0, 1)))(params, x)
    g_cls = jax.jit(jax.grad(loss(classes), argnums=(0, 1)))(params, x)
    for a, c in zip(jax.tree.leaves(g_pad), jax.tree.leaves(g_cls)):
        np.testing.assert_allclose(c, a, rtol=1e-4, atol=1e-5)


def test_a_batch_that_does_not_fit_its_classes_gets_nan_not_truncated_features():
    rng = np.random.default_rng(4)
    mask = _random_masks(rng, 4, 5, 6)
    budget = slot_budget(mask, 2)
    x = jnp.asarray(rng.normal(size=(4, 5, 6, 3)), jnp.float32)
    mod = PolylineSubgraph(depth=1, width=4, slot_vectors=budget)
    params = mod.init(jax.random.key(0), x, mask)["params"]
    assert np.all(np.isfinite(mod.apply({"params": params}, x, mask)))
    longer = mask.copy()
    longer[0, :, :] = True  # every polyline of scene 0 at the full length
    assert sum(budget) < 5 * 6
    assert np.all(np.isnan(mod.apply({"params": params}, x, longer)))


def test_slot_vectors_are_validated():
    x, mask = jnp.zeros((1, 3, 4, 2)), jnp.ones((1, 3, 4), bool)
    for bad in [(4, 4), (4, 2, 3), (5, 4, 4), (4, 4, -1)]:
        with pytest.raises(ValueError, match="non-increasing vector budgets"):
            PolylineSubgraph(depth=1, width=4, slot_vectors=bad).init(jax.random.key(0), x, mask)


def test_training_step_on_classes_equals_the_padded_step():
    # the smoke network and data: the loss, metrics and updated parameters of one step
    from jaxlab.core import train as train_lib
    from jaxlab.vectornet import data

    config = configs.get_config("smoke")
    arrays = data.split_arrays(config, "train")
    slots = training.slot_vectors(config, arrays["vec_mask"])
    assert slots and sum(slots) < len(slots) * config.scene.max_vectors
    batch = {k: arrays[k][: config.batch_size] for k in training.batch_keys(config)}
    out = []
    for sv in ((), slots):
        step = train_lib.make_train_step(training.make_loss_fn(config, sv))
        state, metrics = step(training.init_state(config), batch, jax.random.key(1))
        out.append((jax.device_get(state.params), jax.device_get(metrics)))
    (p0, m0), (p1, m1) = out
    for k in m0:
        np.testing.assert_allclose(m1[k], m0[k], rtol=1e-5, atol=1e-6, err_msg=k)
    # Adam divides by the gradient's scale: float noise in a near-zero gradient moves its
    # update by a few 1e-6, a wrong gradient by up to the learning rate (1e-3)
    for a, c in zip(jax.tree.leaves(p0), jax.tree.leaves(p1)):
        np.testing.assert_allclose(c, a, rtol=1e-5, atol=3e-5)
    assert training.slot_vectors(_no_classes(config), arrays["vec_mask"]) == ()


def _no_classes(config):
    import dataclasses

    return dataclasses.replace(config, model=dataclasses.replace(config.model, length_classes=0))
