import dataclasses
import json

import jax
import numpy as np
import pytest

from jaxlab import cli
from jaxlab.core import train as train_lib
from jaxlab.vectornet import argoverse, configs, data, report, run, training


def _config(data_dir=""):
    c = configs.get_config("smoke")
    c.num_train, c.num_val, c.num_test, c.batch_size, c.eval_batch_size = 24, 8, 8, 8, 8
    c.data_dir = data_dir
    c.scene = dataclasses.replace(c.scene, max_polylines=32)
    c.loop = dataclasses.replace(c.loop, num_steps=6, checkpoint_every=2, eval_every=3, log_every=2, num_devices=2)
    return c


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    root = tmp_path_factory.mktemp("vn")
    gen = run.generate(_config(), root / "gen")
    c = _config(gen["data_dir"])
    result = run.train(c, root / "train")
    return root, c, result


def test_every_smoke_action_runs_on_generated_av1_files(pipeline):
    root, c, result = pipeline
    assert sorted(p.name for p in (root / "gen" / "av1").iterdir()) == ["map_files", "test", "train", "val"]
    assert len(list((root / "gen" / "av1" / "train" / "data").glob("*.csv"))) == 24
    wd = root / "train"
    for name in ("config.json", "metrics.jsonl", "summary.json", "figures/training.png"):
        assert (wd / name).exists(), name
    assert result["steps"] == 6 and result["test"]["num_scenes"] == 8
    assert np.isfinite(result["test"]["ade"]) and result["test"]["fde"] >= result["test"]["de2"] - 1e-9
    ev = run.evaluate(None, wd)
    np.testing.assert_allclose(ev["test"]["ade"], result["test"]["ade"], rtol=1e-5)
    assert ev["test_constant_velocity"] == result["test_constant_velocity"]
    assert cli.main(["vectornet", "predict", "--workdir", str(wd)]) == 0
    assert (wd / "figures" / "predictions.png").exists()
    k6 = result["test_nearest_neighbour_k6"]  # the 6 guesses carry probabilities: p-/brier- metrics
    assert k6["brier_fde"] >= k6["fde"] and k6["p_fde"] - k6["fde"] <= -np.log(0.05) + 1e-9
    assert "brier-minFDE" in report.ablation_table({"smoke": [wd, wd]})


def test_evaluation_equals_an_independent_numpy_computation(pipeline):
    root, c, result = pipeline
    loaded = run.load(root / "train")
    test = data.split_arrays(c, "test")
    pred = training.predict(c, loaded.state.params, test)
    d = np.linalg.norm(pred - test["future"], axis=-1)
    np.testing.assert_allclose(result["test"]["ade"], d.mean(), rtol=1e-5)
    np.testing.assert_allclose(result["test"]["de3"], d[:, 29].mean(), rtol=1e-5)
    np.testing.assert_allclose(result["test"]["miss_rate"], (d[:, -1] > 2.0).mean())


@pytest.mark.slow  # CI covers the same kill/resume through scripts/check_resume.sh vectornet
def test_killed_and_resumed_training_equals_uninterrupted(pipeline):
    root, c, result = pipeline
    wd = root / "resumed"
    arrays = data.split_arrays(c, "train")
    step = train_lib.make_train_step(training.make_loss_fn(c))
    train_lib.fit(training.init_state(c), step, run.make_batch_fn(c, arrays), workdir=wd, loop=c.loop,
                  seed=c.seed, stop_after=4)
    resumed = run.train(c, wd)
    a, b = run.load(root / "train"), run.load(wd)
    assert a.step == b.step == 6
    for x, y in zip(jax.tree.leaves(a.state.params), jax.tree.leaves(b.state.params)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert resumed["test"] == result["test"] and resumed["segments"] == 2


def test_bad_data_dir_is_one_line_error(tmp_path, capsys):
    code = cli.main(["vectornet", "train", "--config", "smoke", "--workdir", str(tmp_path / "w"),
                     f"--config.data_dir={tmp_path / 'nothing'}"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nothing" in err[0] and "train" in err[0]


def test_summary_is_strict_json(pipeline):
    root, _, _ = pipeline
    json.loads((root / "train" / "summary.json").read_text())


def test_predict_scenario_file_through_the_cli(pipeline, tmp_path, capsys):
    """One procedural scene written as AV2 files (as `generate` writes them): `predict --scenario`
    draws it and returns the ADE/FDE of the model's prediction on the scene as the AV2 dataset
    reader reads it."""
    from jaxlab.vectornet.metrics import numpy_metrics

    root, c, _ = pipeline
    wd = root / "train"
    scene = data.procedural_scenes(7, "test", 1, 0.6, argoverse.AV2_OBSERVED, argoverse.AV2_STEPS,
                                   lane_change=c.lane_change)[0]
    argoverse.write_dataset({"test": [scene]}, tmp_path, "av2")
    path = tmp_path / "test" / scene.scene_id / f"scenario_{scene.scene_id}.parquet"
    capsys.readouterr()
    assert cli.main(["vectornet", "predict", "--workdir", str(wd), "--scenario", str(path)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["figure"] == f"figures/predict_{scene.scene_id}.png" and (wd / out["figure"]).exists()
    assert out["scenario"] == scene.scene_id and out["future_steps"] == c.scene.num_future
    s = c.scene
    arrays = data.vectorize_scenes(argoverse.load_split(tmp_path, "test", "av2", s.num_obs, s.num_future), c)
    pred = training.predict(c, run.load(wd).state.params, arrays)
    expected = numpy_metrics(pred, arrays["future"], arrays["future_mask"])
    np.testing.assert_allclose(out["ade"], expected["ade"][0], rtol=1e-6)
    np.testing.assert_allclose(out["fde"], expected["fde"][0], rtol=1e-6)
    # from Python: the same action, the option as a keyword argument
    assert run.predict(None, wd, scenario=path)["ade"] == out["ade"]


def test_predict_av1_csv_takes_the_city_map_of_the_runs_data(pipeline, capsys):
    root, c, _ = pipeline
    wd = root / "train"
    files = sorted((root / "gen" / "av1" / "test").rglob("*.csv"))
    capsys.readouterr()
    assert cli.main(["vectornet", "predict", "--workdir", str(wd), "--scenario", str(files[1])]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["figure"] == f"figures/predict_{files[1].stem}.png" and (wd / out["figure"]).exists()
    test = data.split_arrays(c, "test")  # the same files, read by the dataset loader
    pred = training.predict(c, run.load(wd).state.params, test)
    d = np.linalg.norm(pred[1] - test["future"][1], axis=-1)
    np.testing.assert_allclose([out["ade"], out["fde"]], [d.mean(), d[-1]], rtol=1e-5)


def test_predict_scenario_errors_name_the_file(pipeline, tmp_path, capsys):
    root, _, _ = pipeline
    wd = str(root / "train")
    bad = tmp_path / "scenario_x.parquet"
    bad.write_text("not parquet")
    (tmp_path / "seq.csv").write_text("TIMESTAMP,TRACK_ID\n1,a\n")
    (tmp_path / "notes.txt").write_text("")
    scene = data.procedural_scenes(0, "test", 1, 0.6, 50, 110)[0]
    alone = tmp_path / "alone" / f"scenario_{scene.scene_id}.parquet"
    argoverse.write_av2_scenario(scene, alone)
    for name, words in [("missing.parquet", "no such scenario file"), ("scenario_x.parquet", "parquet"),
                        ("seq.csv", "missing column"), ("notes.txt", "not a scenario file"),
                        (alone.relative_to(tmp_path), "needs its map")]:
        capsys.readouterr()
        assert cli.main(["vectornet", "predict", "--workdir", wd, "--scenario", str(tmp_path / name)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and str(tmp_path / name) in err[0] and words in err[0], err


def test_scenario_option_belongs_to_predict(pipeline, capsys):
    root, _, _ = pipeline
    with pytest.raises(SystemExit):
        cli.main(["vectornet", "evaluate", "--workdir", str(root / "train"), "--scenario", "x.parquet"])
    assert "--scenario is an option of 'predict', not of 'evaluate'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["vectornet", "--help"])
    help_text = capsys.readouterr().out
    assert "options of predict" in help_text and "--scenario FILE" in help_text
    with pytest.raises(TypeError, match="takes no option 'scenari'"):
        run.predict(None, root / "train", scenari="x")
