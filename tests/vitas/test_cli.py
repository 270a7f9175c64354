"""Every action of the smoke config from Python on a fresh workdir (the kill / resume of
train-supernet is checked by scripts/check_resume.sh vitas)."""

import numpy as np

import jaxlab.vitas as vitas


def test_smoke_pipeline(tmp_path):
    cfg = vitas.get_config("smoke")
    wd = tmp_path / "run"
    sup = vitas.train_supernet(cfg, wd)
    assert sup["steps"] == cfg.supernet.loop.num_steps
    lo, hi = sup["band"]
    # a killed train-supernet resuming to the same parameters: scripts/check_resume.sh vitas (CI)
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
