"""The scanned trajectory against plain Python-loop references; sweep; float64."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxlab import dmf
from jaxlab.dmf import dynamics


def _np_grads(fs, target, mask, reduction):
    """Analytic dl/dW_i = (W_N..W_{i+1})^T G (W_{i-1}..W_1)^T in NumPy."""
    n = len(fs)
    w = fs[0]
    for f in fs[1:]:
        w = f @ w
    r = w - target
    if mask is not None:
        r = r * mask
    cnt = mask.sum() if mask is not None else r.size
    loss = 0.5 * np.sum(r**2) if reduction == "half_sum" else np.sum(r**2) / cnt
    g = r if reduction == "half_sum" else 2 * r / cnt
    grads = []
    for i in range(n):
        after = np.eye(fs[i].shape[0])
        for f in fs[i + 1:]:
            after = f @ after
        before = np.eye(fs[0].shape[1])
        for f in fs[:i]:
            before = f @ before
        grads.append(after.T @ g @ before.T)
    return loss, w, grads


def _np_run(fs, target, lr, steps, log_every, optimizer, mask=None, reduction="half_sum"):
    fs = [x.copy() for x in fs]
    logs = {"loss": [], "grad_norm": [], "sv": []}
    v, count = 0.0, 0
    for t in range(steps):
        loss, w, g = _np_grads(fs, target, mask, reduction)
        if t % log_every == 0 and t // log_every < steps // log_every:
            logs["loss"].append(loss)
            logs["grad_norm"].append(np.sqrt(sum(np.sum(x**2) for x in g)))
            logs["sv"].append(np.linalg.svd(w, compute_uv=False))
        if optimizer == "gd":
            fs = [f - lr * x for f, x in zip(fs, g)]
        else:  # GroupRMSprop, alpha 0.99, eps 1e-4
            count += 1
            v = 0.99 * v + 0.01 * sum(np.sum(x**2) for x in g)
            d = np.sqrt(v / (1 - 0.99**count)) + 1e-4
            fs = [f - lr * x / d for f, x in zip(fs, g)]
    return logs, fs


@pytest.mark.parametrize("optimizer,mask", [("gd", False), ("group_rmsprop", True)])
def test_scan_equals_python_loop(optimizer, mask):
    n, depth, steps, log_every = 6, 3, 47, 5
    with jax.enable_x64(True):
        key = jax.random.PRNGKey(0)
        target = dmf.low_rank_target(key, n, 2, (3.0, 1.0))
        fs = dmf.init_factors(jax.random.PRNGKey(1), n, depth, 0.1)
        m = (jax.random.uniform(jax.random.PRNGKey(2), (n, n)) < 0.6).astype(jnp.float64) if mask else None
        lr = 0.05 if optimizer == "gd" else 0.01
        traj = dmf.train(fs, target, mask=m, lr=lr, steps=steps, optimizer=optimizer, log_every=log_every)
    red = "mean" if mask else "half_sum"
    logs, final = _np_run([np.asarray(f) for f in fs], np.asarray(target), lr, steps, log_every, optimizer,
                          None if m is None else np.asarray(m), red)
    assert traj.loss.shape == (steps // log_every,)
    np.testing.assert_array_equal(np.asarray(traj.step), np.arange(steps // log_every) * log_every)
    np.testing.assert_allclose(np.asarray(traj.loss), logs["loss"], rtol=1e-10)
    np.testing.assert_allclose(np.asarray(traj.grad_norm), logs["grad_norm"], rtol=1e-10)
    np.testing.assert_allclose(np.asarray(traj.singular_values), np.array(logs["sv"]), rtol=1e-8, atol=1e-12)
    for a, b in zip(traj.factors, final):
        np.testing.assert_allclose(np.asarray(a), b, rtol=1e-10, atol=1e-14)
    with jax.enable_x64(True):  # the unlogged `advance` reaches the same factors
        adv = dmf.advance(fs, target, mask=m, lr=lr, steps=steps, optimizer=optimizer)
    for a, b in zip(adv, final):
        np.testing.assert_allclose(np.asarray(a), b, rtol=1e-10, atol=1e-14)


def test_rmsprop_matches_optax_python_loop_and_continues():
    n = 5
    with jax.enable_x64(True):
        target = dmf.low_rank_target(jax.random.PRNGKey(0), n, 2, (2.0, 1.0))
        fs = dmf.init_factors(jax.random.PRNGKey(1), n, 2, 0.1)
        traj = dmf.train(fs, target, lr=1e-2, steps=20, optimizer="rmsprop")
        tx = optax.rmsprop(1e-2)
        p, s = list(fs), tx.init(list(fs))
        losses = []
        for _ in range(20):
            loss, g = jax.value_and_grad(dmf.loss_fn)(p, target)
            losses.append(float(loss))
            u, s = tx.update(g, s, p)
            p = optax.apply_updates(p, u)
        np.testing.assert_allclose(np.asarray(traj.loss), losses, rtol=1e-10)
        # continuing from (factors, opt_state) equals one longer run
        a = dmf.train(fs, target, lr=1e-2, steps=10, optimizer="rmsprop")
        b = dmf.train(a.factors, target, lr=1e-2, steps=10, optimizer="rmsprop", opt_state=a.opt_state, start_step=10)
        np.testing.assert_allclose(np.asarray(b.loss), losses[10:], rtol=1e-10)
        np.testing.assert_array_equal(np.asarray(b.step), np.arange(10, 20))


def test_float64_path_and_float32_outside():
    with jax.enable_x64(True):
        target = dmf.low_rank_target(jax.random.PRNGKey(0), 8, 2)
        fs = dmf.init_factors(jax.random.PRNGKey(1), 8, 3, 1e-6)
        traj = dmf.train(fs, target, lr=1e-3, steps=4)
        assert traj.loss.dtype == jnp.float64 and traj.singular_values.dtype == jnp.float64
        # end-to-end singular values around 1e-6 * sqrt(8) are resolved in float64
        s0 = np.asarray(traj.singular_values[0])
        w = np.asarray(dmf.end_to_end(fs))
        np.testing.assert_allclose(s0, np.linalg.svd(w, compute_uv=False), rtol=1e-9)
    target32 = dmf.low_rank_target(jax.random.PRNGKey(0), 8, 2)
    assert target32.dtype == jnp.float32
    tr32 = dmf.train(dmf.init_factors(jax.random.PRNGKey(1), 8, 3, 1e-2), target32, lr=1e-3, steps=4)
    assert tr32.loss.dtype == jnp.float32


def test_sweep_matches_single_runs_and_compiles_once():
    n, depth = 6, 2
    with jax.enable_x64(True):
        key = jax.random.PRNGKey(7)
        target = dmf.low_rank_target(key, n, 2, (3.0, 1.0))
        before = dynamics.trace_count()
        out = dmf.sweep(key, target, depth=depth, seeds=3, init_scales=[1e-3, 1e-2], lrs=[0.01, 0.02, 0.03], steps=30,
                        log_every=3)
        assert dynamics.trace_count() - before == 1
        assert out.loss.shape == (3, 2, 3, 10) and out.singular_values.shape == (3, 2, 3, 10, n)
        # a second sweep of the same shapes reuses the compiled program
        dmf.sweep(key, target, depth=depth, seeds=[5, 6, 7], init_scales=[1e-4, 1e-1], lrs=[0.1, 0.2, 0.3], steps=30,
                  log_every=3)
        assert dynamics.trace_count() - before == 1
        for s, i, j in [(0, 0, 0), (2, 1, 2), (1, 0, 1)]:
            fs = dmf.init_factors(jax.random.fold_in(key, s), n, depth, [1e-3, 1e-2][i])
            single = dmf.train(fs, target, lr=[0.01, 0.02, 0.03][j], steps=30, log_every=3)
            one = out.select(s, i, j)
            np.testing.assert_allclose(np.asarray(one.loss), np.asarray(single.loss), rtol=1e-10)
            np.testing.assert_allclose(np.asarray(one.singular_values), np.asarray(single.singular_values),
                                       rtol=1e-8, atol=1e-13)


def test_bad_inputs_raise_clear_errors():
    target = jnp.zeros((4, 4))
    fs = dmf.init_factors(jax.random.PRNGKey(0), 5, 2, 0.1)
    with pytest.raises(ValueError, match="target has shape"):
        dmf.train(fs, target, lr=0.1, steps=2)
    fs = dmf.init_factors(jax.random.PRNGKey(0), 4, 2, 0.1)
    with pytest.raises(ValueError, match="optimizer"):
        dmf.train(fs, target, lr=0.1, steps=2, optimizer="adam")
    with pytest.raises(ValueError, match="loss_reduction"):
        dmf.train(fs, target, lr=0.1, steps=2, loss_reduction="sum")
    with pytest.raises(ValueError, match="mask has shape"):
        dmf.train(fs, target, mask=jnp.ones((3, 4)), lr=0.1, steps=2)


def _assert_same_runs(a, b):
    for x, y in zip(jax.tree.leaves(a.to_numpy()), jax.tree.leaves(b.to_numpy())):
        assert x.shape == y.shape
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("devices", [pytest.param(None, marks=pytest.mark.slow), 3])  # CI: 3 (needs padding)
def test_sharded_sweep_equals_one_device(devices):
    # 5 seeds x 2 lrs = 10 runs: not a multiple of the 8 test devices (nor of 3), so the
    # run axis is padded and sliced back; completion + track_escape cover the optional inputs
    assert jax.device_count() == 8
    n = 5
    with jax.enable_x64(True):
        key = jax.random.PRNGKey(3)
        target = dmf.low_rank_target(key, n, 2, (3.0, 1.0))
        mask = (jax.random.uniform(jax.random.PRNGKey(4), (n, n)) < 0.7).astype(target.dtype)
        kw = dict(depth=3, seeds=5, init_scales=[1e-2], lrs=[0.05, 0.1], steps=20, log_every=2, mask=mask,
                  track_escape=True)
        one = dmf.sweep(key, target, devices=1, **kw)
        many = dmf.sweep(key, target, devices=devices, **kw)
    assert many.loss.shape == (5, 1, 2, 10) and many.grad_u.shape == (5, 1, 2, 10, n)
    _assert_same_runs(one, many)
    # the unsharded vmap is the same computation as a single run
    with jax.enable_x64(True):
        fs = dmf.init_factors(jax.random.fold_in(key, 4), n, 3, 1e-2)
        single = dmf.train(fs, target, mask=mask, lr=0.1, steps=20, log_every=2, track_escape=True)
    np.testing.assert_allclose(np.asarray(many.select(4, 0, 1).loss), np.asarray(single.loss), rtol=1e-10)


def test_sweep_devices_argument_is_checked():
    target = jnp.zeros((4, 4))
    with pytest.raises(ValueError, match="devices"):
        dmf.sweep(jax.random.PRNGKey(0), target, depth=2, seeds=2, init_scales=[0.1], lrs=[0.1], steps=2, devices=0)
