"""Actions of lidarfirst: simulate, train-classifier, train-detector, run, compare, evaluate.

    jaxlab lidarfirst simulate --workdir runs/lf            # KITTI layout in runs/lf/kitti
    jaxlab lidarfirst train-classifier --workdir runs/lf    # Flax crop classifier (core.train.fit)
    jaxlab lidarfirst train-detector --workdir runs/lf      # full-frame baseline, in runs/lf/detector
    jaxlab lidarfirst compare --workdir runs/lf             # cluster-first vs full-frame (compare.json)
    jaxlab lidarfirst run --workdir runs/lf [--config.data_dir=DIR]
    jaxlab lidarfirst evaluate --workdir runs/lf
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxlab.core import actions, evaluation, optim
from jaxlab.core import train as train_lib
from jaxlab.core import workdir as workdir_lib
from jaxlab.lidarfirst import compare as compare_lib
from jaxlab.lidarfirst import cost, data, detector, pipeline, report, simulator
from jaxlab.lidarfirst.configs import LidarFirstConfig
from jaxlab.lidarfirst.models import make_model

__all__ = ["simulate", "train_classifier", "train_detector", "run_pipeline", "compare", "evaluate", "load",
           "load_detector", "ACTIONS"]
VAL_SCENES = 6  # named stream of the validation frames (thresholds)


def init_state(config: LidarFirstConfig) -> train_lib.TrainState:
    s = config.model.crop_size
    params = make_model(config).init(jax.random.fold_in(jax.random.key(config.seed), pipeline.INIT),
                                     jnp.zeros((1, s, s, 3)))["params"]
    o = config.opt
    tx = optax.adamw(optim.warmup_cosine(o.lr, o.warmup_steps, max(config.loop.num_steps, 1)),
                     weight_decay=o.weight_decay)
    return train_lib.TrainState.create(params=params, tx=tx)


@actions.action
def simulate(config: LidarFirstConfig, workdir: pathlib.Path) -> dict:
    """Writes `scene.num_frames` simulated evaluation frames in the KITTI object layout to WORKDIR/kitti."""
    root = workdir / "kitti"
    for i in range(config.scene.num_frames):
        frame = simulator.simulate_frame(pipeline.stream_seed(config.seed, pipeline.EVAL_SCENES, i), config.scene)
        data.write_frame(root, f"{i:06d}", frame)
    results = {"frames": config.scene.num_frames, "kitti_dir": str(root)}
    workdir_lib.update_summary(workdir, "simulate", results, config, seed=config.seed)
    return results


@actions.action(name="train-classifier")
def train_classifier(config: LidarFirstConfig, workdir: pathlib.Path) -> dict:
    """Trains the crop classifier (background/vehicle/pedestrian/cyclist) on simulated crops; resumes."""
    x, y = pipeline.training_crops(config, pipeline.TRAIN_SCENES, config.train_frames)
    n_val = max(len(y) // 5, 1)
    (x_val, y_val), (x_tr, y_tr) = (x[:n_val], y[:n_val]), (x[n_val:], y[n_val:])
    model = make_model(config)

    def loss_fn(params, extra, batch, key):
        del extra
        xb, yb = batch
        xb = jnp.where(jax.random.bernoulli(key, 0.5, (xb.shape[0], 1, 1, 1)), xb[:, :, ::-1], xb)  # flips
        logits = model.apply({"params": params}, xb)
        return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean(), (
            {"accuracy": jnp.mean(jnp.argmax(logits, -1) == yb)}, None)

    def batch_fn(step):
        idx = jax.random.randint(jax.random.fold_in(jax.random.fold_in(jax.random.key(config.seed), pipeline.BATCHES),
                                                     step), (config.batch_size,), 0, len(y_tr))
        idx = np.asarray(idx)
        return x_tr[idx], y_tr[idx]

    @jax.jit
    def per_example(params, batch):
        logits = model.apply({"params": params}, batch[0])
        return {"accuracy": (jnp.argmax(logits, -1) == batch[1]).astype(jnp.float32)}

    def eval_fn(state):
        return evaluation.batched_sum(per_example, (x_val, y_val), 256, state.params)

    state, history = train_lib.fit(init_state(config), train_lib.make_train_step(loss_fn), batch_fn,
                                   loop=config.loop, workdir=workdir, seed=config.seed, eval_fn=eval_fn,
                                   desc="lidarfirst classifier")
    times = train_lib.run_times(workdir)
    results = {"val_accuracy": eval_fn(state)["accuracy"], "train_crops": int(len(y_tr)), "val_crops": n_val,
               "class_counts": np.bincount(y, minlength=4).tolist(), "steps": int(jax.device_get(state.step)),
               "train_time_s": times["train_time_s"]}
    report.plot_training(workdir)
    workdir_lib.update_summary(workdir, "train_classifier", results, config, seed=config.seed)
    return results


def init_detector(config: LidarFirstConfig) -> train_lib.TrainState:
    sc, d = config.scene, config.detector
    params = detector.make_detector(d).init(jax.random.fold_in(jax.random.key(config.seed), pipeline.INIT),
                                            jnp.zeros((1, sc.image_height, sc.image_width, 3)))["params"]
    tx = optax.adamw(optim.warmup_cosine(d.lr, min(50, d.num_steps // 10), d.num_steps),
                     weight_decay=config.opt.weight_decay)
    return train_lib.TrainState.create(params=params, tx=tx)


@actions.action(name="train-detector")
def train_detector(config: LidarFirstConfig, workdir: pathlib.Path) -> dict:
    """Trains the full-frame CenterNet-style baseline on the classifier's training scenes (WORKDIR/detector)."""
    d = config.detector
    x, t = detector.training_set(config, pipeline.TRAIN_SCENES, config.train_frames)
    xv, tv = detector.training_set(config, VAL_SCENES, config.val_frames)
    model = detector.make_detector(d)

    def loss_fn(params, extra, batch, key):
        del extra, key
        total, parts = detector.loss(model.apply({"params": params}, batch[0]), batch[1], d.size_weight)
        return total, (parts, None)

    def batch_fn(step):
        rng = np.random.default_rng([config.seed, pipeline.BATCHES, step])
        idx = rng.integers(0, len(x), d.batch_size)
        return x[idx], {k: v[idx] for k, v in t.items()}

    val_loss = jax.jit(lambda p, xb, tb: detector.loss(model.apply({"params": p}, xb), tb, d.size_weight)[0])

    def eval_fn(state):
        return {"loss": float(np.mean([val_loss(state.params, xv[i:i + 1], {k: v[i:i + 1] for k, v in tv.items()})
                                       for i in range(len(xv))]))}

    loop = dataclasses.replace(config.loop, num_steps=d.num_steps)
    state, _ = train_lib.fit(init_detector(config), train_lib.make_train_step(loss_fn), batch_fn, loop=loop,
                             workdir=workdir / "detector", seed=config.seed, eval_fn=eval_fn,
                             desc="lidarfirst detector")
    times = train_lib.run_times(workdir / "detector")
    results = {"val_loss": eval_fn(state)["loss"], "train_images": int(len(x)), "steps": int(state.step),
               "train_time_s": times["train_time_s"]}
    workdir_lib.update_summary(workdir, "train_detector", results, config, seed=config.seed)
    return results


def load_detector(workdir: str | pathlib.Path) -> actions.Loaded:
    """The config, full-frame detector and newest intact checkpointed state under WORKDIR/detector."""
    config = workdir_lib.load_config(workdir, LidarFirstConfig)
    state, step = train_lib.load_state(pathlib.Path(workdir) / "detector", init_detector(config),
                                       keep=config.loop.keep)
    return actions.Loaded(config, detector.make_detector(config.detector), state, step)


def load(workdir: str | pathlib.Path) -> actions.Loaded:
    """The config, classifier and newest intact checkpointed state of a run."""
    config = workdir_lib.load_config(workdir, LidarFirstConfig)
    state, step = train_lib.load_state(workdir, init_state(config), keep=config.loop.keep)
    return actions.Loaded(config, make_model(config), state, step)


@actions.action(name="run")
def run_pipeline(config: LidarFirstConfig, workdir: pathlib.Path) -> dict:
    """Runs the cluster-first pipeline (crops in risk order) on data_dir or simulated frames; writes frames.json."""
    loaded = load(workdir)
    classify = jax.jit(lambda x: jax.nn.softmax(loaded.model.apply({"params": loaded.state.params}, x)))
    s = config.model.crop_size
    classify(jnp.zeros((config.pipeline.crop_batch, s, s, 3))).block_until_ready()  # compile outside the timed frames
    rows, first = [], None
    for inp in pipeline.evaluation_frames(config):
        out = pipeline.process_frame(inp, classify, config)
        row = {"name": inp.name, "detections": out["detections"], "crops": out["crops"], "times": out["times"],
               "gt_boxes": inp.gt_boxes.tolist(), "gt_classes": inp.gt_classes.tolist()}
        if inp.instance_image is not None:
            row["segmentation"] = pipeline.ground_and_purity(out["segmentation"], inp.instance_image)
        rows.append(row)
        if first is None:
            first = (inp, out)
    rows[0]["warmup"] = True  # the first frame compiles the segmentation
    workdir_lib.write_json(workdir / "frames.json", rows)
    if first is not None:
        report.plot_frame(workdir, *first, config)
    results = report.metrics(rows)
    workdir_lib.update_summary(workdir, "run", results, config, seed=config.seed)
    return results


@actions.action
def compare(config: LidarFirstConfig, workdir: pathlib.Path) -> dict:
    """Cluster-first vs full-frame on the same frames: recall per R^3 class at thresholds chosen on
    validation frames, AP@0.5, camera MACs and times per frame (compare.json)."""
    clf, det = load(workdir), load_detector(workdir)
    s, sc = config.model.crop_size, config.scene
    classify = jax.jit(lambda x: jax.nn.softmax(clf.model.apply({"params": clf.state.params}, x)))
    detect = compare_lib.make_detect(det.model, det.state.params, config)
    image0 = jnp.zeros((1, sc.image_height, sc.image_width, 3))
    t0 = time.perf_counter()
    jax.block_until_ready((classify(jnp.zeros((config.pipeline.crop_batch, s, s, 3))), detect(image0)))
    compile_s = time.perf_counter() - t0
    crop_macs = cost.count_macs(lambda x: clf.model.apply({"params": clf.state.params}, x), jnp.zeros((1, s, s, 3)))
    frame_macs = cost.count_macs(lambda x: det.model.apply({"params": det.state.params}, x), image0)
    cf_cfg = dataclasses.replace(config, pipeline=dataclasses.replace(config.pipeline, score_threshold=0.0))
    rows = {"cluster_first": {"val": [], "test": []}, "full_frame": {"val": [], "test": []}}
    for split, stream, n in (("val", VAL_SCENES, config.val_frames), ("test", pipeline.EVAL_SCENES, sc.num_frames)):
        for i in range(n):
            inp = pipeline.from_frame(f"{i:06d}", simulator.simulate_frame(
                pipeline.stream_seed(config.seed, stream, i), sc))
            gt = {"gt_boxes": inp.gt_boxes.tolist(), "gt_classes": inp.gt_classes.tolist(),
                  "gt_risk": compare_lib.gt_risk(inp, config).tolist()}
            out = pipeline.process_frame(inp, classify, cf_cfg)
            t = out["times"]
            rows["cluster_first"][split].append({**gt, "detections": out["detections"], "crops": out["crops"],
                                                 "times": {**t, "camera_s": t["total_s"] - t["segment_s"]},
                                                 "camera_macs": out["crops_computed"] * crop_macs})
            rows["full_frame"][split].append({**gt, **compare_lib.fullframe_frame(inp, detect),
                                              "camera_macs": frame_macs})
    for r in rows.values():
        r["test"][0]["warmup"] = r["val"][0]["warmup"] = True
    results = {"crop_macs": crop_macs, "frame_macs": frame_macs, "compile_s": compile_s}
    for name, r in rows.items():
        thr = compare_lib.choose_threshold(r["val"])
        test = r["test"]
        timed = [x for x in test if not x.get("warmup")] or test
        ttfd = [compare_lib.first_risky_detection_time(x, thr) for x in timed]
        res = {"threshold": thr, **compare_lib.risk_recall(test, thr),
               "map50": compare_lib.mean_ap(test), "risk_ranked_recall": compare_lib.risk_ranked_recall(test),
               "camera_macs_per_frame": float(np.mean([x["camera_macs"] for x in test])),
               "camera_s_per_frame": float(np.mean([x["times"]["camera_s"] for x in timed])),
               "total_s_per_frame": float(np.mean([x["times"]["total_s"] for x in timed])),
               "time_to_risky_detection_s": float(np.mean([v for v in ttfd if v is not None])) if any(
                   v is not None for v in ttfd) else None}
        results[name] = res
    workdir_lib.write_json(workdir / "compare.json", {"results": results, "frames": rows})
    report.plot_compare(workdir)
    workdir_lib.update_summary(workdir, "compare", results, config, seed=config.seed)
    return results


@actions.action(read_only=True)
def evaluate(config: LidarFirstConfig, workdir: pathlib.Path) -> dict:
    """AP@0.5, time to first detection, ground and cluster scores of a run's frames.json (evaluation.json)."""
    path = workdir / "frames.json"
    if not path.exists():
        raise workdir_lib.WorkdirError(f"{path} does not exist: run `jaxlab lidarfirst run` on this workdir first")
    results = report.metrics(json.loads(path.read_text()))
    workdir_lib.write_json(workdir / "evaluation.json", results)
    return results


ACTIONS = actions.collect(simulate, train_classifier, train_detector, run_pipeline, compare, evaluate)
