import pathlib
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxlab.core import checkpoint as ckpt_lib
from jaxlab.core import parallel, train


def _problem(num_steps=40):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 5)).astype(np.float32)
    w_true = rng.normal(size=(5, 3)).astype(np.float32)
    y = np.tanh(x @ w_true)

    def batch_fn(step):
        r = np.random.default_rng([1, step])
        idx = r.choice(len(x), 32, replace=False)
        return x[idx], y[idx]

    def loss_fn(params, extra, batch, key):
        xb, yb = batch
        h = jnp.tanh(xb @ params["w1"])
        h = h * jax.random.bernoulli(key, 0.9, h.shape) / 0.9  # dropout: uses the step key
        pred = h @ params["w2"]
        loss = jnp.mean((pred - yb) ** 2)
        return loss, ({"mse": loss}, {"calls": extra["calls"] + 1})

    def init():
        k1, k2 = jax.random.split(jax.random.key(0))
        params = {"w1": 0.5 * jax.random.normal(k1, (5, 16)), "w2": 0.5 * jax.random.normal(k2, (16, 3))}
        return train.TrainState.create(params=params, tx=optax.adam(1e-2), extra={"calls": jnp.zeros((), jnp.int32)})

    return init, loss_fn, batch_fn


def test_train_step_decreases_loss_and_counts():
    init, loss_fn, batch_fn = _problem()
    step = train.make_train_step(loss_fn)
    state = init()
    key = jax.random.key(1)
    first = None
    for s in range(30):
        state, m = step(state, batch_fn(s), jax.random.fold_in(key, s))
        first = float(m["loss"]) if first is None else first
    assert float(m["loss"]) < 0.5 * first
    assert int(state.step) == 30 and int(state.extra["calls"]) == 30


def test_train_step_compiler_options_reach_xla_and_keep_results():
    from jaxlab.core import runtime

    init, loss_fn, batch_fn = _problem()
    key = jax.random.key(1)
    losses = []
    for opts in (None, runtime.cpu_compiler_options()):
        step, state = train.make_train_step(loss_fn, compiler_options=opts), init()
        for s in range(5):
            state, m = step(state, batch_fn(s), jax.random.fold_in(key, s))
        losses.append(float(m["loss"]))
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-5)
    bad = train.make_train_step(loss_fn, compiler_options={"xla_jaxlab_no_such_option": "1"})
    with pytest.raises(Exception, match="xla_jaxlab_no_such_option"):
        bad(init(), batch_fn(0), key)


def test_resume_is_bitwise_identical(tmp_path):
    init, loss_fn, batch_fn = _problem()
    step = train.make_train_step(loss_fn)
    full, _ = train.fit(init(), step, batch_fn, num_steps=40, workdir=tmp_path / "a", seed=3,
                        log_every=10, checkpoint_every=10, progress=False)
    # "Killed" after 25 steps (last checkpoint at 20), then restarted from scratch objects.
    train.fit(init(), step, batch_fn, num_steps=40, workdir=tmp_path / "b", seed=3,
              log_every=10, checkpoint_every=10, progress=False, stop_after=25)
    assert ckpt_lib.CheckpointManager(tmp_path / "b" / "checkpoints").latest_step() == 25
    resumed, _ = train.fit(init(), step, batch_fn, num_steps=40, workdir=tmp_path / "b", seed=3,
                           log_every=10, checkpoint_every=10, progress=False)
    for a, b in zip(jax.tree.leaves(full.state_dict()), jax.tree.leaves(resumed.state_dict())):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # A different seed gives different parameters: the comparison above can fail.
    other, _ = train.fit(init(), step, batch_fn, num_steps=40, workdir=tmp_path / "c", seed=4,
                         log_every=10, progress=False)
    assert not np.array_equal(np.asarray(other.params["w1"]), np.asarray(full.params["w1"]))


def test_one_and_eight_devices_agree(tmp_path):
    assert jax.device_count() == 8
    init, loss_fn, batch_fn = _problem()
    step = train.make_train_step(loss_fn)

    def det_loss(params, extra, batch, key):  # no dropout: key handling differs per sharding
        xb, yb = batch
        loss = jnp.mean((jnp.tanh(xb @ params["w1"]) @ params["w2"] - yb) ** 2)
        return loss, ({}, None)

    step = train.make_train_step(det_loss)
    one, h1 = train.fit(init(), step, batch_fn, num_steps=20, workdir=tmp_path / "one",
                        mesh=parallel.make_mesh(1), log_every=5, progress=False)
    eight, h8 = train.fit(init(), step, batch_fn, num_steps=20, workdir=tmp_path / "eight",
                          mesh=parallel.make_mesh(8), log_every=5, progress=False)
    assert len(eight.params["w1"].sharding.device_set) == 8
    np.testing.assert_allclose(np.asarray(one.params["w1"]), np.asarray(eight.params["w1"]), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose([r["loss"] for r in h1], [r["loss"] for r in h8], rtol=1e-4)


def test_batch_not_divisible_by_devices_is_an_error():
    with pytest.raises(ValueError, match="not divisible"):
        parallel.shard_batch(np.zeros((12, 3)), parallel.make_mesh(8))


def test_nan_guard_names_step_and_metric(tmp_path):
    init, _, batch_fn = _problem()

    def loss_fn(params, extra, batch, key):
        xb, yb = batch
        loss = jnp.mean((jnp.tanh(xb @ params["w1"]) @ params["w2"] - yb) ** 2)
        # From update 13 on, the "ratio" metric divides by zero.
        ratio = jnp.where(extra["calls"] >= 12, jnp.log(0.0) * 0.0, 1.0)
        return loss, ({"ratio": ratio}, {"calls": extra["calls"] + 1})

    with pytest.raises(train.NonFiniteError) as e:
        train.fit(init(), train.make_train_step(loss_fn), batch_fn, num_steps=40, workdir=tmp_path,
                  log_every=10, checkpoint_every=5, progress=False)
    assert e.value.step == 13 and e.value.metric == "ratio"
    assert "step 13" in str(e.value)
    # Checkpoints stop before the bad step.
    assert ckpt_lib.CheckpointManager(tmp_path / "checkpoints").latest_step() == 10


def test_step_compiles_once_across_epochs(tmp_path):
    init, loss_fn, batch_fn = _problem()
    traces = []

    def counted(params, extra, batch, key):
        traces.append(1)  # runs only while tracing
        return loss_fn(params, extra, batch, key)

    train.fit(init(), train.make_train_step(counted), batch_fn, num_steps=50, workdir=tmp_path,
              log_every=7, checkpoint_every=20, eval_fn=lambda s: {"w": jnp.sum(s.params["w1"])},
              eval_every=10, progress=False)
    assert len(traces) == 1


def _flip_bytes(step_dir: pathlib.Path, n: int = 400) -> pathlib.Path:
    """Flips `n` bytes in the middle of the largest array data file of a step."""
    data = [f for f in step_dir.rglob("*") if f.is_file() and "/d/" in f.as_posix()]
    target = max(data, key=lambda f: f.stat().st_size)
    raw = bytearray(target.read_bytes())
    lo = max(0, len(raw) // 2 - n // 2)
    for i in range(lo, min(len(raw), lo + n)):
        raw[i] ^= 0xFF
    target.write_bytes(bytes(raw))
    return target


def _leaves(state):
    return [np.asarray(x) for x in jax.tree.leaves(state.params)]


def _full_run_and_one_stopped_at_20(tmp_path):
    """A 30-step run, and the same run stopped after its checkpoint of step 20 (of 10, 20)."""
    init, loss_fn, batch_fn = _problem()
    step = train.make_train_step(loss_fn)
    full, _ = train.fit(init(), step, batch_fn, num_steps=30, workdir=tmp_path / "full", log_every=10,
                        progress=False)
    wd = tmp_path / "run"
    train.fit(init(), step, batch_fn, num_steps=30, workdir=wd, log_every=10, checkpoint_every=10,
              stop_after=20, progress=False)
    return init, step, batch_fn, full, wd


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_corrupt_latest_checkpoint_is_detected_and_training_falls_back(tmp_path, damage):
    init, step, batch_fn, full, wd = _full_run_and_one_stopped_at_20(tmp_path)
    step_dir = wd / "checkpoints" / "20"
    if damage == "flip":
        _flip_bytes(step_dir)
    else:
        f = max((f for f in step_dir.rglob("*") if f.is_file() and "/d/" in f.as_posix()),
                key=lambda f: f.stat().st_size)
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    manager = ckpt_lib.CheckpointManager(wd / "checkpoints")
    with pytest.raises(ckpt_lib.CorruptCheckpointError, match="step 20"):
        manager.restore(20, init().state_dict())
    manager.close()
    with pytest.warns(RuntimeWarning, match="step 20"):
        resumed, history = train.fit(init(), step, batch_fn, num_steps=30, workdir=wd, log_every=10,
                                     checkpoint_every=10, progress=False)
    # The bad step is kept aside, not deleted, and the run redid steps 11..30 from step 10.
    moved = list((wd / "corrupt-checkpoints").iterdir())
    assert len(moved) == 1 and moved[0].name.startswith("20-") and any(moved[0].rglob("*"))
    for a, b in zip(_leaves(full), _leaves(resumed)):
        np.testing.assert_array_equal(a, b)
    assert [r["step"] for r in history] == [10, 20, 30]


def test_intact_checkpoint_of_another_structure_is_an_error_and_overwrites_nothing(tmp_path):
    init, loss_fn, batch_fn = _problem()
    step = train.make_train_step(loss_fn)
    train.fit(init(), step, batch_fn, num_steps=20, workdir=tmp_path, log_every=10,
              checkpoint_every=10, progress=False)
    before = sorted((p.relative_to(tmp_path), p.read_bytes()) for p in tmp_path.rglob("*") if p.is_file())
    other = train.TrainState.create(params={"w": jnp.zeros((2, 2))}, tx=optax.sgd(0.1))
    with pytest.raises(ckpt_lib.CheckpointError, match=str(tmp_path / "checkpoints" / "20")):
        train.fit(other, step, batch_fn, num_steps=40, workdir=tmp_path, log_every=10, progress=False)
    after = sorted((p.relative_to(tmp_path), p.read_bytes()) for p in tmp_path.rglob("*") if p.is_file())
    assert before == after


def test_load_state_names_the_step_it_used_and_refuses_when_none_is_intact(tmp_path):
    from jaxlab.core.workdir import WorkdirError

    init, loss_fn, batch_fn = _problem()
    step = train.make_train_step(loss_fn)
    train.fit(init(), step, batch_fn, num_steps=20, workdir=tmp_path, log_every=10,
              checkpoint_every=10, progress=False)
    _flip_bytes(tmp_path / "checkpoints" / "20")
    with pytest.warns(RuntimeWarning, match="step 20"):
        _, used = train.load_state(tmp_path, init())
    assert used == 10
    assert (tmp_path / "checkpoints" / "20").exists()  # reading never moves anything
    _flip_bytes(tmp_path / "checkpoints" / "10")
    with pytest.warns(RuntimeWarning), pytest.raises(WorkdirError, match="no finished checkpoint"):
        train.load_state(tmp_path, init())


def test_a_state_saved_outside_fit_is_resumed_by_fit(tmp_path):
    # 20 steps by hand with fit's keys, saved with save_state; fit continues it to 40 and ends
    # where an uninterrupted fit ends
    init, loss_fn, batch_fn = _problem()
    step = train.make_train_step(loss_fn)
    state = init()
    for s in range(20):
        state, _ = step(state, batch_fn(s), jax.random.fold_in(jax.random.key(0), s))
    assert train.save_state(tmp_path / "a", state, 20, meta={"source": "hand"}) == tmp_path / "a" / "checkpoints" / "20"
    with pytest.raises(ValueError, match="positive"):
        train.save_state(tmp_path / "b", state, 0)
    _, used = train.load_state(tmp_path / "a", init())
    assert used == 20
    resumed, _ = train.fit(init(), step, batch_fn, num_steps=40, workdir=tmp_path / "a", log_every=10,
                           checkpoint_every=20, progress=False)
    whole, _ = train.fit(init(), step, batch_fn, num_steps=40, workdir=tmp_path / "c", log_every=10,
                         checkpoint_every=20, progress=False)
    jax.tree.map(np.testing.assert_array_equal, resumed.params, whole.params)
    assert int(resumed.extra["calls"]) == 40


def test_resume_keeps_one_metric_row_per_step_and_accumulates_time(tmp_path):
    import json

    init, loss_fn, batch_fn = _problem()
    step = train.make_train_step(loss_fn)
    evals = lambda st: {"w1_norm": jnp.linalg.norm(st.params["w1"])}
    train.fit(init(), step, batch_fn, num_steps=40, workdir=tmp_path, log_every=5, checkpoint_every=20,
              eval_fn=evals, eval_every=10, stop_after=35, progress=False)
    first = train.run_times(tmp_path)
    assert [s["end_step"] for s in first["segments"]] == [35]
    # As if killed before the save at 35 (rows 25..35 logged after the checkpoint at 20).
    shutil.rmtree(tmp_path / "checkpoints" / "35")
    _, history = train.fit(init(), step, batch_fn, num_steps=40, workdir=tmp_path, log_every=5,
                           checkpoint_every=20, eval_fn=evals, eval_every=10, progress=False)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train_steps = [r["step"] for r in rows if "loss" in r]
    eval_steps = [r["step"] for r in rows if "eval_w1_norm" in r]
    assert train_steps == list(range(5, 45, 5)) and eval_steps == [10, 20, 30, 40]
    assert [r["step"] for r in history] == list(range(5, 45, 5))
    times = train.run_times(tmp_path)
    # Both calls are listed; the totals count steps 0..20 once (from the checkpoint).
    assert [(s["start_step"], s["end_step"]) for s in times["segments"]] == [(0, 35), (20, 40)]
    assert times["train_time_s"] > times["segments"][-1]["train_time_s"]  # includes 0..20
    # Rerunning the finished run changes nothing it reports.
    _, again = train.fit(init(), step, batch_fn, num_steps=40, workdir=tmp_path, log_every=5,
                         checkpoint_every=20, eval_fn=evals, eval_every=10, progress=False)
    assert again == history and train.run_times(tmp_path) == times


def test_unfinished_checkpoint_is_skipped_with_warning(tmp_path):
    init, loss_fn, batch_fn = _problem()
    step = train.make_train_step(loss_fn)
    train.fit(init(), step, batch_fn, num_steps=20, workdir=tmp_path, log_every=10,
              checkpoint_every=10, progress=False)
    ckdir = tmp_path / "checkpoints"
    shutil.copytree(ckdir / "20", ckdir / "30.orbax-checkpoint-tmp")  # as a kill mid-save leaves it
    with pytest.warns(RuntimeWarning, match="unfinished checkpoint"):
        state, history = train.fit(init(), step, batch_fn, num_steps=30, workdir=tmp_path,
                                   log_every=10, progress=False)
    assert history[-1]["step"] == 30 and int(state.step) == 30
    assert sorted(p.name for p in ckdir.iterdir()) == ["10", "20", "30"]  # the leftover is gone
    assert (ckdir / "30" / "jaxlab_manifest.json").exists()


@pytest.mark.parametrize("cut", ["item metadata", "item data and manifest", "whole item and manifest"])
def test_a_half_deleted_latest_step_is_skipped_like_a_corrupt_one(tmp_path, cut):
    # A kill during a non-atomic `rm -r` (an older jaxlab's max_to_keep, a user) leaves a
    # step directory that orbax still lists as finished. Restoring it must not fail as
    # "another structure": it is incomplete, so training falls back to the step before.
    init, step, batch_fn, full, wd = _full_run_and_one_stopped_at_20(tmp_path)
    step_dir = wd / "checkpoints" / "20"
    (step_dir / "default" / "_METADATA").unlink()
    if cut != "item metadata":
        shutil.rmtree(step_dir / "default" / "d")
        (step_dir / "jaxlab_manifest.json").unlink()
    if cut == "whole item and manifest":
        shutil.rmtree(step_dir / "default")
    with pytest.warns(RuntimeWarning, match="step 20 .* incomplete"):
        resumed, history = train.fit(init(), step, batch_fn, num_steps=30, workdir=wd, log_every=10,
                                     checkpoint_every=10, progress=False)
    for a, b in zip(_leaves(full), _leaves(resumed)):
        np.testing.assert_array_equal(a, b)
    assert [r["step"] for r in history] == [10, 20, 30]


def test_deleting_a_step_is_one_rename_and_its_leftovers_are_never_steps(tmp_path):
    from jaxlab.core import checkpoint

    manager = checkpoint.CheckpointManager(tmp_path, max_to_keep=2)
    for s in (10, 20, 30):
        manager.save(s, {"w": np.full(3, s, np.float32)})
    assert manager.all_steps() == [20, 30]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["20", "30"]  # 10 went, and its trash with it
    manager.close()
    # A kill while the trash was being emptied: a half-removed step 10 sits in it.
    half = tmp_path / checkpoint.TRASH / "10"
    shutil.copytree(tmp_path / "20", half)
    shutil.rmtree(half / "default")
    again = checkpoint.CheckpointManager(tmp_path, max_to_keep=2)
    assert again.all_steps() == [20, 30] and not (tmp_path / checkpoint.TRASH).exists()
    again.save(40, {"w": np.full(3, 40, np.float32)})
    assert again.all_steps() == [30, 40]
    np.testing.assert_array_equal(again.restore(None, {"w": np.zeros(3, np.float32)})["w"], np.full(3, 40))
    again.close()


def test_a_step_left_by_an_interrupted_run_is_replaced_when_saved_again(tmp_path):
    # A resumed run that did not restore from step 10 (say it was killed before its
    # manifest) reaches step 10 again: saving must replace it, not fail.
    from jaxlab.core import checkpoint

    first = checkpoint.CheckpointManager(tmp_path)
    first.save(10, {"w": np.zeros(3, np.float32)})
    first.close()
    again = checkpoint.CheckpointManager(tmp_path)
    with pytest.warns(RuntimeWarning, match="replacing checkpoint step 10"):
        again.save(10, {"w": np.ones(3, np.float32)})
    np.testing.assert_array_equal(again.restore(10, {"w": np.zeros(3, np.float32)})["w"], np.ones(3))
    again.close()


def test_fit_resumes_a_state_with_two_optimizers(tmp_path):
    """A GAN-like state: two TrainStates with different optimizers in one struct."""
    import flax.struct

    class Pair(flax.struct.PyTreeNode):
        step: jax.Array
        g: train.TrainState
        d: train.TrainState

    def init():
        g = train.TrainState.create(params={"w": jnp.ones((3,))}, tx=optax.adam(1e-2))
        d = train.TrainState.create(params={"v": jnp.full((3,), 2.0)}, tx=optax.sgd(1e-1, momentum=0.9))
        return Pair(step=jnp.zeros((), jnp.int32), g=g, d=d)

    def batch_fn(s):
        return np.random.default_rng([7, s]).normal(size=(4, 3)).astype(np.float32)

    @jax.jit
    def step_fn(state, batch, key):
        noise = jax.random.normal(key, (3,))
        gl, gg = jax.value_and_grad(lambda p: jnp.sum((batch @ p["w"] - state.d.params["v"].sum()) ** 2))(
            state.g.params)
        dl, dg = jax.value_and_grad(lambda p: jnp.sum((p["v"] - state.g.params["w"] + noise) ** 2))(state.d.params)
        new = state.replace(step=state.step + 1, g=state.g.apply_gradients(gg), d=state.d.apply_gradients(dg))
        return new, {"loss": gl + dl}

    full, _ = train.fit(init(), step_fn, batch_fn, num_steps=20, workdir=tmp_path / "full", log_every=5,
                        progress=False)
    train.fit(init(), step_fn, batch_fn, num_steps=20, workdir=tmp_path / "cut", log_every=5,
              checkpoint_every=5, stop_after=10, progress=False)
    resumed, history = train.fit(init(), step_fn, batch_fn, num_steps=20, workdir=tmp_path / "cut",
                                 log_every=5, checkpoint_every=5, progress=False)
    assert int(resumed.step) == 20 and [r["step"] for r in history] == [5, 10, 15, 20]
    for a, b in zip(jax.tree.leaves(full), jax.tree.leaves(resumed)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # The SGD momentum of the second optimizer came back from the checkpoint, not from zero.
    assert float(jnp.abs(jax.tree.leaves(resumed.d.opt_state)[0]).sum()) > 0


def test_prefetch_gives_the_same_run_and_calls_each_step_once_in_order(tmp_path):
    init, loss_fn, batch_fn = _problem()
    step = train.make_train_step(loss_fn)
    calls = []

    def recorded(s):
        calls.append(s)
        return batch_fn(s)

    plain, _ = train.fit(init(), step, batch_fn, num_steps=40, workdir=tmp_path / "a", seed=3,
                         log_every=10, progress=False)
    # stopped at 25 and resumed: the prefetcher must not run ahead past either end
    train.fit(init(), step, recorded, num_steps=40, workdir=tmp_path / "b", seed=3, log_every=10,
              checkpoint_every=10, progress=False, stop_after=25, prefetch=3)
    resumed, _ = train.fit(init(), step, recorded, num_steps=40, workdir=tmp_path / "b", seed=3,
                           log_every=10, progress=False, prefetch=3)
    assert calls == list(range(25)) + list(range(25, 40))
    for a, b in zip(jax.tree.leaves(plain.state_dict()), jax.tree.leaves(resumed.state_dict())):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    seg = train.run_times(tmp_path / "b")["segments"][-1]
    assert 0 < seg["data_time_s"] and 0 < seg["data_wait_s"] <= seg["wall_time_s"]


def test_prefetch_raises_the_batch_error_in_the_loop(tmp_path):
    init, loss_fn, batch_fn = _problem()

    def broken(s):
        if s == 7:
            raise ValueError("bad batch 7")
        return batch_fn(s)

    with pytest.raises(ValueError, match="bad batch 7"):
        train.fit(init(), train.make_train_step(loss_fn), broken, num_steps=20, workdir=tmp_path,
                  log_every=5, progress=False, prefetch=2)
    # steps before the failing batch were trained and logged
    assert (tmp_path / "metrics.jsonl").read_text().count('"step": 5') == 1


def test_compile_time_counts_the_steps_compiles_and_not_evaluations(tmp_path):
    init, loss_fn, batch_fn = _problem()
    step = train.make_train_step(loss_fn)
    tx = optax.adam(1e-2)  # the optimizer is static in the step: one object, one compile

    def fresh():
        return init().replace(tx=tx)

    train.fit(fresh(), step, batch_fn, num_steps=10, workdir=tmp_path / "a", log_every=5, progress=False)
    t_first = train.run_times(tmp_path / "a")
    assert 0 < t_first["compile_time_s"] < t_first["train_time_s"]

    def eval_fn(state):  # a new function every call: compiles at every evaluation
        scale = float(len(compiled) + 1)
        compiled.append(1)
        return {"w": jax.jit(lambda p: scale * jnp.sum(p["w1"] ** 2))(state.params)}

    compiled = []
    before = train.compile_seconds()
    _, history = train.fit(fresh(), step, batch_fn, num_steps=10, workdir=tmp_path / "b", log_every=5,
                           eval_fn=eval_fn, eval_every=2, progress=False)
    assert len(compiled) == 5 and train.compile_seconds() > before
    # the step is compiled already: this run compiled only inside its evaluations
    assert train.run_times(tmp_path / "b")["compile_time_s"] < 0.1 * t_first["compile_time_s"]
    assert all(r["compile_time_s"] <= t_first["compile_time_s"] for r in history if "compile_time_s" in r)


def test_restore_best_picks_the_argmin_of_the_logged_validation_metric(tmp_path):
    init, loss_fn, batch_fn = _problem()
    step = train.make_train_step(loss_fn)

    def eval_fn(state):  # best at step 20, neither the first nor the last checkpoint
        return {"score": (float(state.step) - 20.0) ** 2}

    train.fit(init(), step, batch_fn, num_steps=40, workdir=tmp_path / "run", log_every=10, eval_every=10,
              checkpoint_every=10, keep=10, eval_fn=eval_fn, progress=False)
    at20, _ = train.fit(init(), step, batch_fn, num_steps=20, workdir=tmp_path / "short", log_every=10,
                        progress=False)
    best, at, info = train.restore_best(tmp_path / "run", init(), "eval_score", keep=10)
    assert (at, info["value"], int(best.step), info["latest_step"]) == (20, 0.0, 20, 40)
    assert info["candidates"] == {10: 100.0, 20: 0.0, 30: 100.0, 40: 400.0}
    for a, b in zip(_leaves(at20), _leaves(best)):
        np.testing.assert_array_equal(a, b)
    assert train.restore_best(tmp_path / "run", init(), "eval_score", keep=10, mode="max")[1] == 40
    # A corrupt best is named and left out; 10 and 30 tie, the earlier one wins.
    _flip_bytes(tmp_path / "run" / "checkpoints" / "20")
    with pytest.warns(RuntimeWarning, match="step 20.*not a selection candidate"):
        _, at, info = train.restore_best(tmp_path / "run", init(), "eval_score", keep=10)
    assert (at, info["value"], 20 in info["candidates"]) == (10, 100.0, False)
    # No such metric: the newest checkpoint, with a warning and no value.
    with pytest.warns(RuntimeWarning, match="no intact kept checkpoint"):
        _, at, info = train.restore_best(tmp_path / "run", init(), "eval_nothing", keep=10)
    assert (at, info["value"], info["fallback"]) == (40, None, True)


def test_restore_best_scores_each_kept_checkpoint_with_a_function(tmp_path):
    init, loss_fn, batch_fn = _problem()
    step = train.make_train_step(loss_fn)
    train.fit(init(), step, batch_fn, num_steps=40, workdir=tmp_path / "run", log_every=10, checkpoint_every=10,
              keep=10, progress=False)  # no evaluation logged during training
    at30, _ = train.fit(init(), step, batch_fn, num_steps=30, workdir=tmp_path / "short", log_every=10,
                        progress=False)
    seen = []

    def score(state):  # the restored state itself is scored: best at step 30
        seen.append(int(state.step))
        return -abs(float(state.step) - 30.0)

    best, at, info = train.restore_best(tmp_path / "run", init(), score, keep=10, mode="max")
    assert sorted(seen) == [10, 20, 30, 40] and at == 30 and info["value"] == 0.0
    for a, b in zip(_leaves(at30), _leaves(best)):
        np.testing.assert_array_equal(a, b)
    _flip_bytes(tmp_path / "run" / "checkpoints" / "30")
    with pytest.warns(RuntimeWarning, match="step 30.*not a selection candidate"):
        _, at, info = train.restore_best(tmp_path / "run", init(), score, keep=10, mode="max")
    assert at in (20, 40) and 30 not in info["candidates"] and at == 20  # 20 and 40 tie: the earlier
