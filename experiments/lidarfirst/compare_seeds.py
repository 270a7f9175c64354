"""Experiment 1: cluster-first vs full-frame at several seeds (train both, compare, aggregate).

Each seed trains the crop classifier and the full-frame detector on the same simulated scenes,
chooses each method's score threshold on validation frames and compares them on test frames
(`jaxlab lidarfirst compare`). Prints and writes the mean and a 95% t-interval over seeds.

    python experiments/lidarfirst/compare_seeds.py --seeds 0 1 2 --workdir runs/lidarfirst-compare
    python experiments/lidarfirst/compare_seeds.py --config default --workdir runs/lidarfirst-compare-default \
        --out experiments/lidarfirst/compare_results_default.json

`--config smoke` (the default) uses the smaller sizes below unless given; `default` and `paper`
keep their config's sizes unless given. Also prints the paired per-seed difference
(cluster-first minus full-frame) of each metric.
"""

from __future__ import annotations

import argparse
import json
import pathlib

import numpy as np
from scipy import stats

from jaxlab.core import stats as stats_lib
from jaxlab.core import workdir as workdir_lib
from jaxlab.lidarfirst import compare, configs, report, run

KEYS = ("threshold", "recall_imminent", "recall_potential", "recall_imminent_or_potential", "recall_none", "recall",
        "precision", "map50", "camera_macs_per_frame", "camera_s_per_frame", "total_s_per_frame",
        "time_to_risky_detection_s")


# The sizes of `--config smoke` (the first experiment's), where the flags are not given.
SMOKE = {"train_frames": 12, "val_frames": 6, "test_frames": 10, "classifier_steps": 200, "detector_steps": 300,
         "detector_batch": 4}


def config(seed: int, args) -> configs.LidarFirstConfig:
    cfg = configs.get_config(args.config)
    cfg.seed = seed
    given = {k: getattr(args, k) for k in SMOKE if getattr(args, k) is not None}
    sizes = {**SMOKE, **given} if args.config == "smoke" else given
    if "train_frames" in sizes:
        cfg.train_frames = sizes["train_frames"]
    if "val_frames" in sizes:
        cfg.val_frames = sizes["val_frames"]
    if "test_frames" in sizes:
        cfg.scene.num_frames = sizes["test_frames"]
    if "classifier_steps" in sizes:
        cfg.loop.num_steps, cfg.loop.eval_every, cfg.loop.checkpoint_every = sizes["classifier_steps"], 100, 100
    if "detector_steps" in sizes:
        cfg.detector.num_steps = sizes["detector_steps"]
    if "detector_batch" in sizes:
        cfg.detector.batch_size = sizes["detector_batch"]
    cfg.loop.num_devices = 1
    return cfg


def interval(values) -> tuple[float, float]:
    v = np.array([x for x in values if x is not None], float)
    if len(v) < 2:
        return (float(v.mean()) if len(v) else float("nan")), float("nan")
    return float(v.mean()), float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--workdir", default="runs/lidarfirst-compare")
    ap.add_argument("--config", choices=("smoke", "default", "paper"), default="smoke")
    ap.add_argument("--train-frames", type=int)
    ap.add_argument("--val-frames", type=int)
    ap.add_argument("--test-frames", type=int)
    ap.add_argument("--classifier-steps", type=int)
    ap.add_argument("--detector-steps", type=int)
    ap.add_argument("--detector-batch", type=int)
    ap.add_argument("--out", default="experiments/lidarfirst/compare_results.json")
    ap.add_argument("--aggregate-only", action="store_true",
                    help="read the finished runs' summary.json and compare.json instead of running them")
    args = ap.parse_args()
    per_seed = {}
    for seed in args.seeds:
        wd = pathlib.Path(args.workdir) / f"seed{seed}"
        if args.aggregate_only:
            summary = json.loads((wd / "summary.json").read_text())["results"]
            clf, det, res = summary["train_classifier"], summary["train_detector"], summary["compare"]
        else:
            cfg = config(seed, args)
            clf = run.train_classifier(cfg, wd)
            det = run.train_detector(cfg, wd)
            res = run.compare(cfg, wd)
        frames = json.loads((wd / "compare.json").read_text())["frames"]
        rrr = {m: compare.risk_ranked_recall(frames[m]["test"]) for m in ("cluster_first", "full_frame")}
        per_seed[seed] = {"results": res, "risk_ranked_recall": rrr, "classifier_train_s": clf["train_time_s"],
                          "detector_train_s": det["train_time_s"], "classifier_val_accuracy": clf["val_accuracy"]}
        print(seed, json.dumps(res["cluster_first"]), json.dumps(res["full_frame"]), flush=True)
    table = {m: {k: interval([per_seed[s]["results"][m][k] for s in args.seeds]) for k in KEYS}
             for m in ("cluster_first", "full_frame")}
    nan = float("nan")
    value = lambda m, k, s: nan if per_seed[s]["results"][m][k] is None else per_seed[s]["results"][m][k]
    diff = {k: stats_lib.paired_diff([value("cluster_first", k, s) for s in args.seeds],
                                     [value("full_frame", k, s) for s in args.seeds])[:2] for k in KEYS}
    curves = {m: {k: [interval([(per_seed[s]["risk_ranked_recall"][m][k] or [nan] * len(compare.CONFIDENCES))[i]
                                for s in args.seeds]) for i in range(len(compare.CONFIDENCES))]
                  for k in (*compare.RISK_NAMES, "all")} for m in ("cluster_first", "full_frame")}
    with open("/proc/loadavg") as f:
        load = f.read().split()[0]
    out = {"args": vars(args), "per_seed": per_seed, "mean_and_95ci": table, "paired_difference_95ci": diff,
           "risk_ranked_recall_mean_and_95ci": {"confidence": list(compare.CONFIDENCES), **curves},
           "loadavg_at_end": float(load)}
    workdir_lib.write_json(pathlib.Path(args.out), out)
    out_path = pathlib.Path(args.out)
    report.plot_risk_ranked_recall(out["risk_ranked_recall_mean_and_95ci"], out_path.parent,
                                   name=f"{out_path.stem}_risk_ranked_recall")
    print(f"| metric (mean ± 95% CI over {len(args.seeds)} seeds) | cluster-first | full-frame | paired difference |")
    print("|---|---|---|---|")
    for k in KEYS:
        a, b, d = table["cluster_first"][k], table["full_frame"][k], diff[k]
        print(f"| {k} | {a[0]:.4g} ± {a[1]:.2g} | {b[0]:.4g} ± {b[1]:.2g} | {d[0]:.4g} ± {d[1]:.2g} |")
    print("\nRisk-ranked recall (IoG >= 0.8 per R^3 class, IoU >= 0.8 for all; class-agnostic), mean ± 95% CI")
    print("| method | objects | " + " | ".join(f"conf {c:.2f}" for c in compare.CONFIDENCES[::2]) + " |")
    print("|---|---|" + "---|" * len(compare.CONFIDENCES[::2]))
    for m in ("cluster_first", "full_frame"):
        for k in (*compare.RISK_NAMES, "all"):
            cells = [stats_lib.fmt_ci(*curves[m][k][i], digits=2) for i in range(0, len(compare.CONFIDENCES), 2)]
            print(f"| {m} | {k} | " + " | ".join(cells) + " |")
    print(f"load average at the end: {load} (2 cores)")


if __name__ == "__main__":
    main()
