import json
import shutil

import jax
import numpy as np
import pytest

from jaxlab.core import train as train_lib
from jaxlab.lidarfirst import configs, pipeline, run


def _cfg(**loop):
    cfg = configs.get_config("smoke")
    cfg.train_frames, cfg.scene.num_frames = 3, 2
    cfg.loop.num_steps, cfg.loop.checkpoint_every, cfg.loop.eval_every = 20, 10, 10
    cfg.loop.num_devices = 1
    cfg.detector.num_steps, cfg.val_frames = 10, 2
    return cfg


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    wd = tmp_path_factory.mktemp("lf") / "run"
    cfg = _cfg()
    run.simulate(cfg, wd)
    run.train_classifier(cfg, wd)
    res = run.run_pipeline(cfg, wd)
    return cfg, wd, res


def test_every_action_of_the_smoke_config(smoke):
    cfg, wd, res = smoke
    assert (wd / "kitti" / "velodyne" / "000001.bin").exists() and (wd / "figures" / "frame.png").exists()
    summary = json.loads((wd / "summary.json").read_text())["results"]
    assert set(summary) == {"simulate", "train_classifier", "run"}
    assert summary["train_classifier"]["steps"] == 20
    ev = run.evaluate(None, wd)
    assert ev["frames"] == 2 and ev["ground_precision"] >= 0.98 and ev["cluster_purity"] > 0.9
    assert ev["map50"] == res["map50"]
    # the run on the written KITTI folder sees the same points as the in-memory frames
    kcfg = _cfg()
    kcfg.data_dir = str(wd / "kitti")
    wd2 = wd.parent / "kitti-run"
    shutil.copytree(wd, wd2, ignore=shutil.ignore_patterns("config.json", "summary.json"))
    res2 = run.run_pipeline(kcfg, wd2)
    assert res2["frames"] == 2 and res2["mean_crops"] == res["mean_crops"]
    # and so does the run on the same frames written as a Waymo segment (range-image path, JPEG camera)
    from jaxlab.lidarfirst import simulator, waymo

    sims = [simulator.simulate_frame(pipeline.stream_seed(cfg.seed, pipeline.EVAL_SCENES, i), cfg.scene)
            for i in range(cfg.scene.num_frames)]
    extrinsic = np.eye(4)
    extrinsic[:3, 3] = (1.43, 0.0, 2.184)
    waymo.write_frames(wd.parent / "seg.tfrecord", [waymo.from_simulation(f, extrinsic) for f in sims])
    wcfg = _cfg()
    wcfg.data_dir = str(wd.parent / "seg.tfrecord")
    wd3 = wd.parent / "waymo-run"
    shutil.copytree(wd, wd3, ignore=shutil.ignore_patterns("config.json", "summary.json"))
    res3 = run.run_pipeline(wcfg, wd3)
    assert res3["frames"] == 2 and res3["mean_crops"] == res["mean_crops"]
    assert [r["name"] for r in json.loads((wd3 / "frames.json").read_text())] == ["seg-0", "seg-1"]
    frames = json.loads((wd / "frames.json").read_text())
    for row in frames:  # detections are produced in crop order: ranks and times increase
        ranks = [d["rank"] for d in row["detections"]]
        times = [d["time_s"] for d in row["detections"]]
        assert ranks == sorted(ranks) and times == sorted(times)


def _classify_first_frame(smoke):
    """A copy of the smoke config, the trained classifier and the first evaluation frame."""
    import copy

    cfg, wd, _ = smoke
    cfg = copy.deepcopy(cfg)
    loaded = run.load(wd)
    classify = jax.jit(lambda x: jax.nn.softmax(loaded.model.apply({"params": loaded.state.params}, x)))
    return cfg, classify, next(pipeline.evaluation_frames(cfg))


def test_crop_budget_exits_early(smoke):
    cfg, classify, inp = _classify_first_frame(smoke)
    full = pipeline.process_frame(inp, classify, cfg)
    cfg.pipeline.crop_budget = 1
    one = pipeline.process_frame(inp, classify, cfg)
    assert one["crops"] == 1 < full["crops"]
    assert all(d["rank"] == 0 for d in one["detections"])


def test_batched_crops_give_the_one_at_a_time_detections(smoke):
    cfg, classify, inp = _classify_first_frame(smoke)
    cfg.pipeline.score_threshold = 0.0  # every crop is a detection
    one = pipeline.process_frame(inp, classify, cfg)
    cfg.pipeline.crop_batch = 3
    three = pipeline.process_frame(inp, classify, cfg)
    assert one["crops"] == three["crops"] >= 2
    assert three["crops_computed"] == 3 * -(-three["crops"] // 3)  # the last batch padded
    assert [(d["rank"], d["class"], d["box"]) for d in one["detections"]] == [
        (d["rank"], d["class"], d["box"]) for d in three["detections"]]
    np.testing.assert_allclose([d["score"] for d in one["detections"]], [d["score"] for d in three["detections"]],
                               rtol=1e-5)
    times = [d["time_s"] for d in three["detections"]]
    assert all(times[i] == times[i - i % 3] for i in range(len(times)))  # one time per batch


def test_killed_and_resumed_training_gives_the_same_parameters(smoke, tmp_path):
    cfg, wd, _ = smoke
    resumed = tmp_path / "resumed"
    shutil.copytree(wd, resumed)
    steps = sorted(p for p in (resumed / "checkpoints").iterdir() if p.name.isdigit())
    shutil.rmtree(steps[-1])  # as if killed after the step-10 checkpoint
    run.train_classifier(cfg, resumed)
    a, b = run.load(wd), run.load(resumed)
    assert a.step == b.step == 20
    for x, y in zip(jax.tree.leaves(a.state.params), jax.tree.leaves(b.state.params)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert train_lib.run_times(resumed)["segments"]


def test_train_detector_and_compare(smoke):
    import jax.numpy as jnp

    from jaxlab.lidarfirst import compare, cost

    cfg, wd, _ = smoke
    det = run.train_detector(cfg, wd)
    assert det["steps"] == 10 and det["train_images"] == 2 * cfg.train_frames
    res = run.compare(cfg, wd)
    loaded = run.load_detector(wd)
    sc = cfg.scene
    assert res["frame_macs"] == cost.count_macs(lambda x: loaded.model.apply({"params": loaded.state.params}, x),
                                                jnp.zeros((1, sc.image_height, sc.image_width, 3)))
    saved = json.loads((wd / "compare.json").read_text())
    cf, ff = saved["frames"]["cluster_first"], saved["frames"]["full_frame"]
    assert len(cf["val"]) == 2 and len(cf["test"]) == sc.num_frames
    for a, b in zip(cf["test"], ff["test"]):  # both methods are scored on the same ground truth
        assert a["gt_boxes"] == b["gt_boxes"] and a["gt_risk"] == b["gt_risk"]
        assert a["camera_macs"] == a["crops"] * res["crop_macs"] and len(b["detections"]) == cfg.detector.top_k
    for m in ("cluster_first", "full_frame"):
        assert res[m]["threshold"] in compare.THRESHOLDS
        assert res[m]["threshold"] == compare.choose_threshold(saved["frames"][m]["val"])


def test_average_precision_hand_worked():
    gts = [np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float), np.zeros((0, 4))]
    dets = [(0, 0.9, np.array([0, 0, 10, 10.0])), (1, 0.8, np.array([0, 0, 5, 5.0])),
            (0, 0.7, np.array([21, 21, 30, 30.0]))]
    # ranks: TP (P 1, R .5), FP (P .5), TP (P 2/3, R 1): AP = .5 * 1 + .5 * 2/3
    assert pipeline.average_precision(dets, gts) == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert np.isnan(pipeline.average_precision([], [np.zeros((0, 4))]))
