import types

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxlab.core import train as train_lib
from jaxlab.video2stylegan import control


def test_target_attributes_keep_whole_groups():
    cur, new = np.arange(7.0)[None], -np.arange(7.0)[None] - 1
    keep = np.array([[True, False, True, False]])  # yaw kept, pitch new, roll kept, expression new
    out = np.asarray(control.target_attributes(jnp.asarray(cur), jnp.asarray(new), jnp.asarray(keep)))
    np.testing.assert_array_equal(out, [[0.0, -2.0, 2.0, -4.0, -5.0, -6.0, -7.0]])


def test_untrained_net_edits_nothing_and_fine_entries_stay_bitwise():
    net = control.ControlNet(k=2, w_dim=8, hidden=16)
    ws = jax.random.normal(jax.random.key(0), (3, 5, 8))
    p = jax.random.normal(jax.random.key(1), (3, 7))
    params = net.init(jax.random.key(2), ws[:, :2], p, p)["params"]
    delta = net.apply({"params": params}, ws[:, :2], p, jnp.zeros_like(p))
    np.testing.assert_array_equal(delta, 0.0)
    edited = control.apply_edit(ws, jnp.ones((3, 2, 8)))
    np.testing.assert_array_equal(edited[:, 2:], ws[:, 2:])
    np.testing.assert_array_equal(edited[:, :2], ws[:, :2] + 1.0)


def test_control_net_learns_to_reach_targets_of_a_known_attribute_map():
    """A synthetic 'generator' (W+ flattened) and 'regressor' (tanh of a fixed linear map of the coarse
    entries): after training, edits reach changed targets far better than no edit, keep the other
    groups, and never touch the fine entries."""
    k, n, d = 2, 4, 8
    rng = np.random.default_rng(0)
    a = jnp.asarray(rng.normal(size=(k * d, 7)) / np.sqrt(k * d), jnp.float32)
    b = jnp.asarray(rng.normal(size=(n * d, 6)), jnp.float32)

    def latents(z):
        return jnp.repeat(z[:, None], n, axis=1)

    def generate(ws):
        return ws.reshape(ws.shape[0], -1)

    def attrs(x):
        return jnp.tanh(x[:, :k * d] @ a)

    def embed(x):
        e = x @ b
        return e / jnp.linalg.norm(e, axis=-1, keepdims=True)

    net = control.ControlNet(k=k, w_dim=d, hidden=128)
    cc = types.SimpleNamespace(identity=0.05, reg=1e-3)
    loss_fn = control.make_loss_fn(net, latents, generate, attrs, embed, cc)
    params = net.init(jax.random.key(0), jnp.zeros((1, k, d)), jnp.zeros((1, 7)), jnp.zeros((1, 7)))["params"]
    state = train_lib.TrainState.create(params=params, tx=optax.adam(3e-3))
    step = train_lib.make_train_step(loss_fn)

    def batch(i, size=64):
        r = np.random.default_rng([7, i])
        return {"z": r.normal(size=(size, d)).astype(np.float32),
                "p_new": r.uniform(-0.7, 0.7, (size, 7)).astype(np.float32),
                "keep": r.uniform(size=(size, 4)) < 0.5}

    for i in range(600):
        state, _ = step(state, batch(i), jax.random.key(0))
    ev = batch(10 ** 6, 256)
    ws = latents(jnp.asarray(ev["z"]))
    p_cur = attrs(generate(ws))
    p_tgt = control.target_attributes(p_cur, jnp.asarray(ev["p_new"]), jnp.asarray(ev["keep"]))
    edited = control.apply_edit(ws, net.apply({"params": state.params}, ws[:, :k], p_tgt, p_cur))
    p1 = np.asarray(attrs(generate(edited)))
    changed = ~ev["keep"][:, [0, 1, 2, 3, 3, 3, 3]]
    err = np.abs(p1 - np.asarray(p_tgt))
    no_edit = np.abs(np.asarray(p_cur) - np.asarray(p_tgt))
    assert err[changed].mean() < 0.25 * no_edit[changed].mean(), (err[changed].mean(), no_edit[changed].mean())
    assert err[~changed].mean() < 0.25 * no_edit[changed].mean()  # the kept groups stay near their values
    np.testing.assert_array_equal(np.asarray(edited[:, k:]), np.asarray(ws[:, k:]))


def test_control_table_pairs_runs_by_seed(tmp_path):
    import json

    from jaxlab.video2stylegan import report

    def summary(d, err, plain):
        yaw = [{"target_deg": 10.0, "error_deg": err, "no_edit_error_deg": plain, "pitch_roll_drift_deg": 1.0}]
        ctl = {"yaw": yaw, "yaw_error_deg": err, "yaw_no_edit_error_deg": plain, "judge_independent": True,
               "expression": {"error": 0.1, "no_edit_error": 0.2, "pose_drift_deg": 1.0}, "identity_similarity": 0.9}
        d.mkdir()
        (d / "summary.json").write_text(json.dumps({"results": {"control": ctl}}))
        return d

    runs = [summary(tmp_path / "a", 4.0, 10.0), summary(tmp_path / "b", 6.0, 14.0)]
    table = report.control_table(runs)
    # paired differences -6 and -8: mean -7, t(0.975, 1) * sd / sqrt(2) = 12.706 * 1.414 / 1.414
    assert "| yaw error (degrees), target +10 | 5.0 ± 12.7 | 12.0 ± 25.4 | -7.0 ± 12.7 |" in table, table
