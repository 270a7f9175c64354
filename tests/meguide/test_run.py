"""The `jaxlab meguide` actions: train, evaluate, load; resume and rerun give the same summary."""

import json
import shutil

import jax
import numpy as np
import pytest

from jaxlab import cli
from jaxlab.core import train as train_lib
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
