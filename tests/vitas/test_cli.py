"""Every action of the smoke config from Python on a fresh workdir; a killed supernet run resumes
to the same parameters."""

import shutil

import jax
import numpy as np

import jaxlab.vitas as vitas


def test_smoke_pipeline_and_resume(tmp_path):
    cfg = vitas.get_config("smoke")
    wd = tmp_path / "run"
    sup = vitas.train_supernet(cfg, wd)
    assert sup["steps"] == cfg.supernet.loop.num_steps
    lo, hi = sup["band"]
    ref = jax.tree.leaves(vitas.load(wd).state.params)
    # kill: drop the newest checkpoint, rerun -> resumes from the older one, same parameters
    ckpts = sorted((wd / "supernet" / "checkpoints").glob("[0-9]*"), key=lambda p: int(p.name))
    assert len(ckpts) >= 2
    shutil.rmtree(ckpts[-1])
    vitas.train_supernet(cfg, wd)
    again = jax.tree.leaves(vitas.load(wd).state.params)
    assert all(np.array_equal(a, b) for a, b in zip(ref, again))
    res = vitas.search(cfg, wd)
    assert lo <= res["best"]["flops"] <= hi
    assert "random" in res
    # every evaluation is an in-band net (out-of-band offspring are redrawn before scoring)
    assert res["evaluations"] == cfg.search.pop_size * (cfg.search.generations + 1)
    with np.load(wd / "search" / "ga_state.npz") as ga:
        assert len(ga["seen"]) == res["evaluations"] and np.all(ga["seen_violation"] == 0)
    ops = np.asarray(res["best"]["ops"])
    d = int((ops > 0).sum())
    assert (ops[:d] > 0).all() and (ops[d:] == 0).all()  # canonical (identity shifted)
    rt = vitas.retrain(cfg, wd)
    assert 0.0 <= rt["test_accuracy"] <= 1.0
    ev = vitas.evaluate(cfg, wd)
    assert ev["retrained_test_accuracy"] == rt["test_accuracy"]
