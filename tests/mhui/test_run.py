"""End to end through the CLI on the smoke config: train -> attack -> evaluate; resume, rerun, errors."""

import fcntl
import json
import os
import shutil

import jax
import numpy as np
import pytest
import scipy.special
from sklearn.metrics import roc_auc_score

from jaxlab import cli
from jaxlab.core import config as config_lib
from jaxlab.core import train as train_lib
from jaxlab.core import workdir as workdir_lib
from jaxlab.mhui import configs, models, run

NETWORKS = ("mhui", "prior_net")
# The smoke config without its deep ensemble: the ensemble's programs are a third of the
# pipeline's compile time; its training is checked by scripts/check_resume.sh in CI and
# its detection rows by the slow test below.
SMOKE = ["--config", "smoke", "--config.baselines.ensemble_size=0"]
TIMES = ("times", "segments", "train_time_s", "train_wall_time_s")  # train results that depend on the clock


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """The whole smoke pipeline through the CLI, run once for all pytest-xdist workers (the
    first worker runs it under a file lock, the others read its workdir; tests copy it
    before writing)."""
    root = tmp_path_factory.getbasetemp()
    root = root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root
    wd, done = root / "mhui-smoke" / "run", root / "mhui-smoke.done"
    with open(root / "mhui-smoke.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not done.exists():
                shutil.rmtree(wd.parent, ignore_errors=True)
                assert cli.main(["mhui", "train", *SMOKE, "--workdir", str(wd)]) == 0
                assert cli.main(["mhui", "attack", "--workdir", str(wd)]) == 0
                assert cli.main(["mhui", "evaluate", "--workdir", str(wd)]) == 0
                done.touch()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return wd


def _results(workdir):
    return json.loads((workdir / "summary.json").read_text())["results"]


def _np_softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_pipeline_writes_every_result(smoke_run):
    res = _results(smoke_run)
    assert set(res) == {"train", "attack", "evaluate"}
    for name in NETWORKS:
        assert (smoke_run / name / "checkpoints").is_dir() and (smoke_run / name / "metrics.jsonl").exists()
    train = res["train"]
    assert train["steps"] == {"mhui": 120, "prior_net": 60}
    assert len(train["mhui_head_test_acc"]) == 3 and train["mhui_head_test_acc"][-1] > 0.6
    methods = {r["method"] for r in res["evaluate"]["rows"]}
    assert methods == {"MH-UI", "MSP", "MC dropout", "MCD + Dirichlet", "RKL Prior Net"}
    for r in res["evaluate"]["rows"] + res["evaluate"]["adaptive"]:
        assert 0.0 <= r["auroc"] <= 1.0 and 0.0 <= r["aupr"] <= 1.0
    # every head subset of at least two heads, with both estimators, for each MH-UI set
    assert {(tuple(r["heads"]), r["combine"]) for r in res["evaluate"]["ablation_heads"]} == {
        (h, c) for h in [(0, 1), (0, 2), (1, 2), (0, 1, 2)] for c in ("pooled", "minka_log")}
    with np.load(smoke_run / "attacks.npz") as f:
        assert set(f.files) == set(res["attack"]) and len(f.files) == 2 * 2 + 2
        x = run.load(smoke_run).extras["data"]["x_test"]
        for k in f.files:
            adv = f[k]
            assert adv.shape == (96, 8, 8, 1) and adv.min() >= 0 and adv.max() <= 1
            if "pgd_linf" in k or "adaptive" in k:  # inside the eps = 0.1 ball
                assert np.abs(adv - x).max() <= 0.1 + 1e-6
    # the attacks work: PGD and C&W lower the attacked classifier's accuracy
    acc = res["train"]["mhui_head_test_acc"][-1]
    assert res["attack"]["mhui__pgd_linf__0.1"]["acc_under_attack"] < acc - 0.3
    assert res["attack"]["mhui__cw_l2__0"]["acc_under_attack"] < acc - 0.3
    tables = (smoke_run / "tables.md").read_text()
    assert "| pgd_linf | 0.1 |" in tables and "| cw_l2 | 0 |" in tables and "Adaptive" in tables
    for fig in ("precision_hist", "auroc_pgd_linf", "training"):
        assert (smoke_run / "figures" / f"{fig}.png").stat().st_size > 1000


def test_mhui_auroc_matches_an_independent_computation(smoke_run):
    """MH-UI's precision score from NumPy moment matching, its AUROC from scikit-learn."""
    loaded = run.load(smoke_run)
    x, y = loaded.extras["data"]["x_test"], loaded.extras["data"]["y_test"]
    state = loaded.state["mhui"]
    params, extra = jax.tree.map(lambda a: a[0], (state.params, state.extra))
    logits = jax.jit(lambda p, xx: models.forward(loaded.model["mhui"], p, extra, xx)[0])
    with np.load(smoke_run / "attacks.npz") as f:
        adv = f["mhui__pgd_linf__0.1"]
    zc, za = np.asarray(logits(params, x), np.float64), np.asarray(logits(params, adv), np.float64)

    def alpha0(z):  # pooled moment matching over the 3 heads
        p = _np_softmax(z)
        m, v = p.mean(0), np.maximum(p.var(0, ddof=1), 1e-12)
        return np.maximum((m * (1 - m)).sum(-1) / v.sum(-1) - 1, 1e-3)

    correct = zc[-1].argmax(-1) == y
    labels = np.r_[np.zeros(correct.sum()), np.ones(correct.sum())]
    expected = roc_auc_score(labels, np.r_[-alpha0(zc)[correct], -alpha0(za)[correct]])
    row = [r for r in _results(smoke_run)["evaluate"]["rows"]
           if r["attack"] == "pgd_linf" and r["method"] == "MH-UI" and r["score"] == "precision"]
    assert len(row) == 1 and row[0]["n"] == correct.sum()
    assert row[0]["auroc"] == pytest.approx(expected, abs=1e-3)


def test_train_summary_matches_the_checkpoints(smoke_run):
    loaded = run.load(smoke_run)
    assert loaded.step == 120 and loaded.extras["steps"] == {"mhui": 120, "prior_net": 60}
    x, y = loaded.extras["data"]["x_test"], loaded.extras["data"]["y_test"]
    train = _results(smoke_run)["train"]
    fwd = {n: jax.jit(lambda p, e, xx, n=n: models.forward(loaded.model[n], p, e, xx)[0]) for n in NETWORKS}
    st = loaded.state["mhui"]
    z = np.asarray(fwd["mhui"](*jax.tree.map(lambda a: a[0], (st.params, st.extra)), x))  # [H, N, K]
    np.testing.assert_allclose(train["mhui_head_test_acc"], (z.argmax(-1) == y).mean(-1), atol=1e-6)
    st = loaded.state["prior_net"]
    assert train["prior_net_test_acc"] == pytest.approx(
        np.mean(np.asarray(fwd["prior_net"](st.params, st.extra, x)).argmax(-1) == y), abs=1e-6)
    # the best test accuracy is taken over the whole run's evaluations (steps 60 and 120)
    rows = [json.loads(line) for line in (smoke_run / "mhui" / "metrics.jsonl").read_text().splitlines()]
    evals = [r["eval_test_acc_head2"] for r in rows if "eval_test_acc_head2" in r]
    assert len(evals) == 2 and train["mhui_best_test_acc"] == max(evals)


def test_rerun_of_a_finished_run_leaves_the_summary_as_it_was(smoke_run, tmp_path):
    wd = tmp_path / "run"
    shutil.copytree(smoke_run, wd)
    before = _results(wd)
    segments = {n: (wd / n / "segments.jsonl").read_text() for n in NETWORKS}
    assert cli.main(["mhui", "train", *SMOKE, "--workdir", str(wd)]) == 0
    assert cli.main(["mhui", "attack", "--workdir", str(wd)]) == 0
    assert _results(wd) == before  # times included: they are the whole run's, from its segments
    assert {n: (wd / n / "segments.jsonl").read_text() for n in NETWORKS} == segments


class _Killed(Exception):
    pass


@pytest.mark.slow  # CI runs the same kill / rerun check of mhui's training in scripts/check_resume.sh
def test_full_smoke_with_ensemble_killed_train_resumes_and_evaluates(tmp_path, monkeypatch):
    """The whole smoke config, deep ensemble included: a run killed in the middle of the
    ensemble's training and rerun ends with the uninterrupted run's parameters and summary;
    the ensemble's accuracies equal those recomputed from its checkpoint; evaluate scores
    the ensemble detectors."""
    ref, wd = tmp_path / "ref", tmp_path / "run"
    networks = ("mhui", "ensemble", "prior_net")
    assert cli.main(["mhui", "train", "--config", "smoke", "--workdir", str(ref)]) == 0
    real_fit = train_lib.fit

    def fit_killed_in_the_ensemble(*args, **kwargs):
        if "ensemble" not in kwargs["desc"]:
            return real_fit(*args, **kwargs)
        real_fit(*args, **{**kwargs, "stop_after": 100})
        # a SIGKILL after step 100: the checkpoint of step 100 never finished
        shutil.rmtree(wd / "ensemble" / "checkpoints" / "100")
        raise _Killed

    monkeypatch.setattr(train_lib, "fit", fit_killed_in_the_ensemble)
    with pytest.raises(_Killed):
        run.train(configs.get_config("smoke"), wd)
    monkeypatch.undo()
    assert not (wd / "prior_net").exists()
    assert cli.main(["mhui", "train", "--config", "smoke", "--workdir", str(wd)]) == 0
    resumed, full = run.load(wd), run.load(ref)
    for name in networks:
        jax.tree.map(np.testing.assert_array_equal, resumed.state[name].params, full.state[name].params)
    got, want = _results(wd)["train"], _results(ref)["train"]
    assert {k: v for k, v in got.items() if k not in TIMES} == {k: v for k, v in want.items() if k not in TIMES}
    assert got["segments"] == {"mhui": 1, "ensemble": 2, "prior_net": 1}
    assert got["times"]["ensemble"]["train_time_s"] > 0
    x, y = full.extras["data"]["x_test"], full.extras["data"]["y_test"]
    st = full.state["ensemble"]
    fwd = jax.jit(lambda p, e, xx: models.forward(full.model["ensemble"], p, e, xx)[0])
    probs = np.stack([_np_softmax(np.asarray(fwd(*jax.tree.map(lambda a, m=m: a[m], (st.params, st.extra)), x))[-1])
                      for m in range(2)])
    np.testing.assert_allclose(want["ensemble_member_test_acc"], (probs.argmax(-1) == y).mean(-1), atol=1e-6)
    assert want["ensemble_test_acc"] == pytest.approx(np.mean(probs.mean(0).argmax(-1) == y), abs=1e-6)
    assert cli.main(["mhui", "evaluate", "--workdir", str(ref)]) == 0
    rows = _results(ref)["evaluate"]["rows"]
    assert {"Ensemble", "Ensemble + Dirichlet"} <= {r["method"] for r in rows}
    assert {r["target"] for r in rows if r["method"] == "Ensemble"} == {"ensemble"}


def test_attack_before_train_is_a_one_line_error(tmp_path, capsys):
    workdir_lib.prepare(tmp_path, configs.get_config("smoke"))
    assert cli.main(["mhui", "attack", "--workdir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "jaxlab mhui train" in err


@pytest.mark.parametrize("args,field", [
    (["--config", "nonexistent"], "unknown config variant 'nonexistent'"),
    (["--config.attack.attacks=fgsm,deepfool"], "attack.attacks"),
    (["--config.detect.score=auroc"], "detect.score"),
    (["--config.detect.heads=5"], "detect.heads"),
    (["--config.detect.heads=1"], "at least 2 heads"),
    (["--config.baselines.ensemble_size=1"], "baselines.ensemble_size"),
    (["--config.train.head_weights=1,2"], "train.head_weights"),
    (["--config.model.dropout_rate=1.5"], "model.dropout_rate"),
])
def test_bad_configs_are_one_line_errors_that_write_nothing(tmp_path, capsys, args, field):
    wd = tmp_path / "w"
    assert cli.main(["mhui", "train", "--workdir", str(wd), *(["--config", "smoke"] if args[0] != "--config" else []),
                     *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and field in err, err
    assert not wd.exists()


def test_every_variant_validates():
    for variant in ("smoke", "default", "protocol", "protocol32", "paper"):
        cfg = config_lib.validate(configs.get_config(variant))
        assert isinstance(cfg, configs.MhuiConfig) and cfg.loop.num_steps > 0
    assert configs.get_config("paper").model.arch == "resnet"
    assert configs.get_config("protocol32").model.arch == "resnet"
    assert configs.get_config("protocol").baselines.forward_kl_prior_net


def test_msp_separates_cw_attacks_from_clean_inputs(smoke_run):
    """A known-good detector on a strong attack: C&W-L2 (kappa 0) leaves its successful
    inputs on the decision boundary, so the final head's max softmax probability must
    separate them from clean inputs. Checked from the saved attacks with scikit-learn,
    and against the evaluate rows."""
    loaded = run.load(smoke_run)
    x, y = loaded.extras["data"]["x_test"], loaded.extras["data"]["y_test"]
    st = loaded.state["mhui"]
    params, extra = jax.tree.map(lambda a: a[0], (st.params, st.extra))
    final = jax.jit(lambda p, xx: models.forward(loaded.model["mhui"], p, extra, xx)[0][-1])
    with np.load(smoke_run / "attacks.npz") as f:
        adv = f["mhui__cw_l2__0"]
    pc, pa = _np_softmax(np.asarray(final(params, x), np.float64)), _np_softmax(np.asarray(final(params, adv),
                                                                                             np.float64))
    correct = pc.argmax(-1) == y
    succ = correct & (pa.argmax(-1) != y)
    assert succ.sum() >= 0.5 * correct.sum()  # the attack is strong
    labels = np.r_[np.zeros(correct.sum()), np.ones(succ.sum())]
    auc = roc_auc_score(labels, np.r_[-pc.max(-1)[correct], -pa.max(-1)[succ]])
    assert auc > 0.8
    row = [r for r in _results(smoke_run)["evaluate"]["rows"]
           if r["attack"] == "cw_l2" and r["method"] == "MSP" and r["target"] == "mhui"]
    assert len(row) == 1 and row[0]["auroc_success"] == pytest.approx(auc, abs=1e-3)


def test_trained_prior_net_classifies_and_flags_noise(smoke_run):
    """The RKL Prior Network trained by `train`: its mean prediction classifies digits and
    its precision alpha_0 = sum exp z is lower on uniform noise (its out-of-distribution
    training inputs) than on test digits."""
    loaded = run.load(smoke_run)
    x, y = loaded.extras["data"]["x_test"], loaded.extras["data"]["y_test"]
    st = loaded.state["prior_net"]
    fwd = jax.jit(lambda p, e, xx: models.forward(loaded.model["prior_net"], p, e, xx)[0])
    z = np.asarray(fwd(st.params, st.extra, x), np.float64)
    noise = np.random.default_rng(0).uniform(size=x.shape).astype(np.float32)
    zn = np.asarray(fwd(st.params, st.extra, noise), np.float64)
    assert np.mean(z.argmax(-1) == y) > 0.5  # measured: 0.60 after the 60 smoke steps (chance: 0.1)
    log_a0, log_a0_noise = scipy.special.logsumexp(z, -1), scipy.special.logsumexp(zn, -1)
    assert np.median(log_a0_noise) < np.median(log_a0) - 0.2  # measured on the 60-step smoke net: 4.11 vs 4.54
