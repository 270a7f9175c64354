"""The `jaxlab meguide` actions: train, evaluate, load; resume and rerun give the same summary."""

import json
import shutil

import jax
import numpy as np
import pytest

from jaxlab import cli
from jaxlab.core import train as train_lib
from jaxlab.core.config import override
from jaxlab.core.metrics import merge_by_step, read_metrics
from jaxlab.meguide import configs, metrics, run
from jaxlab.meguide.sampler import make_sampler

SMOKE = configs.get_config("smoke")


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("smoke")
    assert cli.main(["meguide", "train", "--config", "smoke", "--workdir", str(workdir)]) == 0
    return workdir


def _results(workdir):
    return json.loads((workdir / "summary.json").read_text())["results"]


def test_cli_smoke_run_writes_the_workdir(smoke_run):
    for name in ("config.json", "metrics.jsonl", "summary.json", "figures/accuracy.png"):
        assert (smoke_run / name).exists(), name
    res = _results(smoke_run)
    assert res["steps"] == SMOKE.loop.num_steps and res["segments"] == 1
    assert res["test_accuracy"] > 0.5  # 3 balanced classes: chance is 1/3
    evals = [r for r in merge_by_step(read_metrics(smoke_run)) if "eval_val_accuracy" in r]
    assert [r["step"] for r in evals] == [10, 20]
    assert res["best_val_accuracy"] == max(r["eval_val_accuracy"] for r in evals)
    assert 0 < evals[0]["train_time_s"] < evals[1]["train_time_s"] <= res["train_time_s"]
    # padding budgets: distinct (node rows, edge rows) of the training batches, counted apart
    data = run.load_data(SMOKE)
    sampler = make_sampler(SMOKE, data)
    shapes = {(b.nodes["x"].shape[0], b.senders.shape[0]) for b in map(sampler.batch, range(SMOKE.loop.num_steps))}
    assert res["padding_budgets"] == len(shapes)


def test_evaluate_and_load_agree_with_training(smoke_run):
    res = _results(smoke_run)
    ev = run.evaluate(None, smoke_run)
    assert ev["step"] == SMOKE.loop.num_steps
    assert ev["test_accuracy"] == pytest.approx(res["test_accuracy"])
    data = run.load_data(SMOKE)
    assert ev["label_smoothness"] == pytest.approx(metrics.label_smoothness(data.adj, data.y))
    assert 0 < ev["label_smoothness"] < 2
    assert json.loads((smoke_run / "evaluation.json").read_text())["step"] == SMOKE.loop.num_steps
    loaded = run.load(smoke_run)
    assert loaded.step == SMOKE.loop.num_steps and loaded.extras["data"].num_nodes == data.num_nodes
    assert cli.main(["meguide", "evaluate", "--workdir", str(smoke_run)]) == 0


def test_rerun_of_a_finished_run_leaves_the_results(smoke_run, tmp_path):
    workdir = tmp_path / "copy"
    shutil.copytree(smoke_run, workdir)
    before = _results(workdir)
    assert before["padding_budgets"] >= 1 and before["train_time_s"] > 0
    assert cli.main(["meguide", "train", "--config", "smoke", "--workdir", str(workdir)]) == 0
    assert _results(workdir) == before


def test_killed_run_resumes_to_the_same_parameters_and_summary(smoke_run, tmp_path, monkeypatch):
    class Killed(Exception):
        pass

    orig_fit = train_lib.fit

    def killed_fit(*args, **kwargs):
        orig_fit(*args, **kwargs, stop_after=15)
        raise Killed  # no summary is written, as after a SIGKILL

    workdir = tmp_path / "killed"
    monkeypatch.setattr(train_lib, "fit", killed_fit)
    with pytest.raises(Killed):
        run.train(SMOKE, workdir)
    monkeypatch.setattr(train_lib, "fit", orig_fit)
    assert (workdir / "config.json").exists() and not (workdir / "summary.json").exists()
    # killed between checkpoints: the newest (step 15, written by stop_after) never happened
    shutil.rmtree(workdir / "checkpoints" / "15")
    res = run.train(SMOKE, workdir)
    ref = _results(smoke_run)
    for key in ("steps", "best_val_accuracy", "test_accuracy", "val_accuracy", "padding_budgets",
                "meguide_num_roots", "data_s", "sampler_setup_s"):
        if key not in ("data_s", "sampler_setup_s"):
            assert res[key] == ref[key], key
        assert res[key] is not None, key
    # the training time covers the steps before the kill too, not only the resumed segment's
    times = train_lib.run_times(workdir)
    assert times["segments"][-1]["start_step"] == 10
    assert res["train_time_s"] == times["train_time_s"] > times["segments"][-1]["train_time_s"]
    a, b = run.load(workdir).state.params, run.load(smoke_run).state.params
    jax.tree.map(np.testing.assert_array_equal, a, b)


def test_missing_data_path_is_one_error_line(tmp_path, capsys):
    code = cli.main(["meguide", "train", "--config", "smoke", "--config.data=/nope",
                     "--workdir", str(tmp_path / "w")])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "/nope" in err[0] and "Traceback" not in err[0]


def test_more_than_one_device_is_refused_before_anything_is_written(tmp_path, capsys):
    code = cli.main(["meguide", "train", "--config", "smoke", "--config.loop.num_devices=8",
                     "--workdir", str(tmp_path / "w")])
    assert code == 2
    assert "loop.num_devices" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()


def test_summary_selects_the_test_score_by_validation_and_times_compiles(tmp_path):
    cfg = override(SMOKE, ["nodes_per_batch=200", "sampler=saint-rw", "loop.eval_every=5"])
    res = run.train(cfg, tmp_path)
    evals = [r for r in merge_by_step(read_metrics(tmp_path)) if "eval_val_accuracy" in r]
    vals = [r["eval_val_accuracy"] for r in evals]
    best = evals[vals.index(max(vals))]  # the first of ties
    assert res["best_val_step"] == best["step"]
    assert res["test_accuracy_at_best_val"] == best["eval_test_accuracy"]
    assert res["selection_metric"] == "accuracy"
    assert abs(res["nodes_per_batch"] - 200) <= 10 and res["loss_nodes_per_batch"] < res["nodes_per_batch"]
    assert res["sampler_size"]["saint.num_roots"] != SMOKE.saint.num_roots
    assert 0 < res["compile_time_s"] < res["train_time_s"]
    assert 0 < res["sampling_time_s"]


def test_selected_by_validation_takes_the_first_best_row():
    hist = [{"step": 5, "loss": 1.0}, {"step": 10, "eval_val_micro_f1": 0.5, "eval_test_micro_f1": 0.4},
            {"step": 20, "eval_val_micro_f1": 0.7, "eval_test_micro_f1": 0.6, "train_time_s": 2.0},
            {"step": 30, "eval_val_micro_f1": 0.7, "eval_test_micro_f1": 0.9}]
    sel = run.selected_by_validation(hist, "micro_f1")
    assert (sel["best_val_step"], sel["test_micro_f1_at_best_val"], sel["train_time_to_best_val_s"]) == (20, 0.6, 2.0)
    assert run.selected_by_validation(hist[:1], "micro_f1") == {}


def test_multilabel_sbm_trains_with_micro_f1(tmp_path):
    res = run.train(override(SMOKE, ["sbm.num_labels=6", "sbm.noise=2", "sampler=meguide", "loop.num_steps=60",
                                     "loop.eval_every=20"]), tmp_path)
    assert res["selection_metric"] == "micro_f1" and res["edge_homophily"] is None
    assert "best_val_micro_f1" in res and "best_val_accuracy" not in res
    # predicting each label's training frequency scores about 0.43 on this graph; the labels
    # follow the hidden classes, which the graph and features carry
    assert res["test_micro_f1_at_best_val"] > 0.6
