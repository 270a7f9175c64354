"""Metrics and figures of a lidarfirst run, from its files (frames.json, metrics.jsonl)."""

from __future__ import annotations

import json
import pathlib

import numpy as np

from jaxlab.core import plotting
from jaxlab.lidarfirst import pipeline, simulator

RISK_COLOURS = ("red", "orange", "green")


def metrics(rows: list[dict]) -> dict:
    """AP@0.5 per class and mean, mean latency (warm-up frame excluded), time to the first detection,
    the first-detected object's rank, ground precision/recall and cluster purity."""
    aps = {}
    for c, name in enumerate(simulator.CLASSES[1:], 1):
        gts = [np.array([b for b, k in zip(r["gt_boxes"], r["gt_classes"]) if k == c]).reshape(-1, 4) for r in rows]
        dets = [(f, d["score"], np.array(d["box"])) for f, r in enumerate(rows) for d in r["detections"]
                if d["class"] == c]
        aps[name] = pipeline.average_precision(dets, gts)
    finite = [v for v in aps.values() if v == v]
    timed = [r for r in rows if not r.get("warmup")] or rows
    first = [r["detections"][0]["time_s"] for r in timed if r["detections"]]
    out = {"ap50": aps, "map50": float(np.mean(finite)) if finite else None, "frames": len(rows),
           "mean_latency_s": float(np.mean([r["times"]["total_s"] for r in timed])),
           "mean_segment_s": float(np.mean([r["times"]["segment_s"] for r in timed])),
           "mean_time_to_first_detection_s": float(np.mean(first)) if first else None,
           "mean_crops": float(np.mean([r["crops"] for r in rows]))}
    seg = [r["segmentation"] for r in rows if "segmentation" in r]
    if seg:
        tot = {k: sum(s[k] for s in seg) for k in seg[0]}
        out["ground_precision"] = tot["ground_tp"] / max(tot["ground_pred"], 1)
        out["ground_recall"] = tot["ground_tp"] / max(tot["ground_true"], 1)
        out["cluster_purity"] = tot["cluster_majority"] / max(tot["cluster_points"], 1)
    return out


def plot_training(workdir: pathlib.Path) -> None:
    path = pathlib.Path(workdir) / "metrics.jsonl"
    if not path.exists():
        return
    rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    fig, ax = plotting.subplots(1, 1, figsize=(4.5, 3))
    tr = [(r["step"], r["loss"]) for r in rows if "loss" in r]
    if tr:
        ax.plot(*zip(*tr), label="train loss")
    ev = [(r["step"], r["eval_accuracy"]) for r in rows if "eval_accuracy" in r]
    if ev:
        ax.plot(*zip(*ev), "o-", label="val accuracy")
    ax.set_xlabel("step")
    ax.legend()
    plotting.save_figure(fig, workdir, "training")


def plot_frame(workdir: pathlib.Path, inp, out: dict, config) -> None:
    """Bird's-eye view of the clusters coloured by R^3 class, and the camera image with the
    detections numbered in detection order."""
    seg = out["segmentation"]
    c0, c1 = seg["columns"]
    theta, phi = seg["inclinations"], seg["azimuths"][c0:c1]  # the frame's own rows and columns (Waymo)
    r = seg["range_image"][:, c0:c1]
    x = r * np.cos(theta)[:, None] * np.cos(phi)[None]
    y = r * np.cos(theta)[:, None] * np.sin(phi)[None]
    fig, (a, b) = plotting.subplots(1, 2, figsize=(10, 4))
    v = r > 0
    a.scatter(-y[v & seg["ground"]], x[v & seg["ground"]], s=0.3, c="0.75")
    cl = seg["cluster"]
    for k in np.unique(cl[cl >= 0]):
        colour = RISK_COLOURS[int(seg["risk"][k])] if seg["valid"][k] else "0.3"
        a.scatter(-y[cl == k], x[cl == k], s=2, c=colour)
    a.set_aspect("equal", adjustable="datalim")
    a.set_xlabel("-y (m)")
    a.set_ylabel("x (m)")
    a.set_title("clusters (red imminent, orange potential, green none)", fontsize=9)
    b.imshow(inp.image)
    for i, d in enumerate(out["detections"]):
        x0, y0, x1, y1 = d["box"]
        b.add_patch(__import__("matplotlib.patches", fromlist=["Rectangle"]).Rectangle(
            (x0, y0), x1 - x0, y1 - y0, fill=False, color=RISK_COLOURS[d["risk"]]))
        b.text(x0, y0, f"{i + 1}:{simulator.CLASSES[d['class']][:3]}", color="white", fontsize=7)
    b.set_title("detections in order")
    b.axis("off")
    plotting.save_figure(fig, workdir, "frame")


def detection_times(rows: list[dict], threshold: float) -> list[dict]:
    """(time_s, rank, distance, risk) of the cluster-first detections at or above `threshold` that hit a
    ground-truth box (IoU >= 0.5, right class), warm-up frame excluded."""
    out = []
    for r in rows:
        if r.get("warmup"):
            continue
        gt = np.array(r["gt_boxes"]).reshape(-1, 4)
        for d in r["detections"]:
            if d["score"] < threshold or not len(gt):
                continue
            o = pipeline.iou(np.array(d["box"])[None], gt)[0]
            o[np.array(r["gt_classes"]) != d["class"]] = -1
            if o.max() >= 0.5:
                j = int(o.argmax())
                out.append({"time_s": d["time_s"], "rank": d["rank"], "distance": d["distance"],
                            "gt_risk": int(r["gt_risk"][j])})
    return out


def plot_compare(workdir: pathlib.Path) -> None:
    """Time from the frame start to each correct cluster-first detection vs its crop rank and its distance
    (colour: the object's true R^3 class), with the full-frame pipeline's mean latency as a line."""
    saved = json.loads((pathlib.Path(workdir) / "compare.json").read_text())
    res, frames = saved["results"], saved["frames"]
    pts = detection_times(frames["cluster_first"]["test"], res["cluster_first"]["threshold"])
    fig, (a, b) = plotting.subplots(1, 2, figsize=(9, 3.5))
    for ax, key in ((a, "rank"), (b, "distance")):
        for risk_class, colour in enumerate(RISK_COLOURS):
            sel = [p for p in pts if p["gt_risk"] == risk_class]
            ax.scatter([p[key] for p in sel], [1e3 * p["time_s"] for p in sel], s=10, c=colour)
        ax.axhline(1e3 * res["full_frame"]["total_s_per_frame"], color="k", ls="--", label="full-frame latency")
        ax.set_xlabel("crop rank" if key == "rank" else "nearest-corner distance (m)")
        ax.set_ylabel("time to detection (ms)")
    a.legend()
    a.set_title("cluster-first detections (red imminent, orange potential, green none)", fontsize=8)
    plotting.save_figure(fig, workdir, "compare_times")


def plot_risk_ranked_recall(curves: dict, out_dir: str | pathlib.Path, name: str = "risk_ranked_recall") -> None:
    """Risk-ranked recall against the confidence threshold, one panel per method: a line per R^3
    class (IoG >= 0.8) and for all objects (IoU >= 0.8), mean over seeds with the 95% interval.

    Args:
      curves: `{"confidence": [C], method: {class: [(mean, half-width)] * C}}` as
        `compare_seeds.py` writes it.
    """
    conf = np.asarray(curves["confidence"])
    methods = [m for m in curves if m != "confidence"]
    fig, axes = plotting.subplots(1, len(methods), figsize=(4.2 * len(methods), 3.4), sharey=True)
    axes = np.atleast_1d(axes)
    colours = {"imminent": RISK_COLOURS[0], "potential": RISK_COLOURS[1], "none": RISK_COLOURS[2], "all": "k"}
    for ax, m in zip(axes, methods):
        for k, colour in colours.items():
            mean = np.array([v[0] for v in curves[m][k]], float)
            half = np.nan_to_num(np.array([v[1] for v in curves[m][k]], float))
            if np.isnan(mean).all():
                continue
            ax.plot(conf, mean, marker="o", ms=3, color=colour, label=k if k != "all" else "all (IoU)")
            ax.fill_between(conf, mean - half, mean + half, color=colour, alpha=0.15)
        ax.set_title(m.replace("_", "-"))
        ax.set_xlabel("confidence threshold")
        ax.set_ylim(0, 1.05)
    axes[0].set_ylabel("recall")
    axes[0].legend(fontsize=8)
    plotting.save_figure(fig, out_dir, name)
