"""Cluster-first vs full-frame: per-frame runs of the baseline, risk-ranked recall, threshold choice.

Both pipelines see the same simulated frames (the same camera image; cluster-first also the LiDAR
scan). Ground truth: the camera-visible objects (KITTI labels) with their R^3 class computed from
the true object boxes and velocities. A ground-truth box is found when a detection of the right
class overlaps it by IoU >= 0.5 (greedy by score, each detection used once). Score thresholds are
chosen per method on validation frames (highest F1 over a grid), then applied to the test frames.

`risk_ranked_recall` is the second protocol, the group's risk-ranked recall (risk-ranked-recall
`calcRecall`): for each confidence 0.50, 0.55, ..., 0.95, a ground-truth box counts as found when
some detection of at least that confidence, of any class, covers it by intersection over the
ground truth's area (IoG) >= 0.8; a detection may cover several boxes. The curve of all objects
uses IoU >= 0.8 instead, as there.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.lidarfirst import detector, risk
from jaxlab.lidarfirst.configs import LidarFirstConfig

THRESHOLDS = tuple(np.round(np.arange(0.05, 0.96, 0.05), 2))
CONFIDENCES = tuple(np.round(np.arange(0.50, 0.96, 0.05), 2))  # risk-ranked recall's sweep
RISK_NAMES = ("imminent", "potential", "none")


def gt_risk(inp, cfg: LidarFirstConfig) -> np.ndarray:
    """R^3 class `[G]` of each ground-truth box's object (true centre, size, heading, velocity)."""
    if inp.gt_objects is None or inp.objects is None or len(inp.gt_objects) == 0:
        return np.full(len(inp.gt_boxes), risk.NONE, np.int32)
    o, k, p = inp.objects, inp.gt_objects, cfg.pipeline
    cls, _ = risk.r3(jnp.asarray(o.center[k, :2], jnp.float32), jnp.asarray(o.size[k, :2], jnp.float32),
                     jnp.asarray(o.yaw[k], jnp.float32), jnp.asarray(o.velocity[k], jnp.float32),
                     jnp.asarray(inp.ego_velocity, jnp.float32), dt=p.r3_dt, t_compute=p.r3_t_compute,
                     a_max=p.r3_a_max, margin=p.r3_margin)
    return np.asarray(cls, np.int32)


def make_detect(model, params, cfg: LidarFirstConfig):
    """A jitted `image [1, H, W, 3] float -> (boxes, scores, classes)` of the full-frame detector."""
    stride = detector.output_stride(cfg.detector)

    @jax.jit
    def detect(x):
        return detector.decode(model.apply({"params": params}, x), stride, cfg.detector.top_k)

    return detect


def fullframe_frame(inp, detect) -> dict:
    """The full-frame pipeline on one frame: every detection arrives when the whole image is done."""
    t0 = time.perf_counter()
    boxes, scores, classes = jax.device_get(detect(jnp.asarray(inp.image[None], jnp.float32) / 255.0))
    t = time.perf_counter() - t0
    h, w = inp.image.shape[:2]
    boxes = np.clip(boxes[0], 0, [w - 1, h - 1, w - 1, h - 1])
    dets = [{"box": b.tolist(), "class": int(c), "score": float(s), "time_s": t}
            for b, s, c in zip(boxes, scores[0], classes[0])]
    return {"detections": dets, "times": {"camera_s": t, "total_s": t}}


def match(dets: list[dict], gt_boxes: np.ndarray, gt_classes: np.ndarray, threshold: float,
          iou_min: float = 0.5) -> tuple[np.ndarray, int]:
    """Greedy matching by score of the detections scoring >= threshold: `(found [G] bool, number kept)`,
    each detection to the unmatched box of its class with the highest IoU >= iou_min."""
    from jaxlab.lidarfirst.pipeline import iou

    found = np.zeros(len(gt_boxes), bool)
    kept = sorted((d for d in dets if d["score"] >= threshold), key=lambda d: -d["score"])
    for d in kept:
        if not len(gt_boxes):
            break
        o = iou(np.asarray(d["box"], np.float64)[None], np.asarray(gt_boxes, np.float64))[0]
        o[found | (np.asarray(gt_classes) != d["class"])] = -1
        j = int(o.argmax())
        if o[j] >= iou_min:
            found[j] = True
    return found, len(kept)


def f1_at(rows: list[dict], threshold: float) -> float:
    tp = n_det = n_gt = 0
    for r in rows:
        found, kept = match(r["detections"], np.array(r["gt_boxes"]).reshape(-1, 4), np.array(r["gt_classes"]),
                            threshold)
        tp, n_det, n_gt = tp + found.sum(), n_det + kept, n_gt + len(found)
    return 2 * tp / max(n_det + n_gt, 1)


def choose_threshold(rows: list[dict]) -> float:
    """The score threshold of highest F1 on `rows` (validation frames); ties to the lower threshold."""
    f1 = [f1_at(rows, t) for t in THRESHOLDS]
    return float(THRESHOLDS[int(np.argmax(f1))])


def risk_recall(rows: list[dict], threshold: float) -> dict:
    """Recall per R^3 class, overall recall and precision at `threshold`, and the counts."""
    by = {c: [0, 0] for c in range(3)}
    tp = n_det = 0
    for r in rows:
        found, kept = match(r["detections"], np.array(r["gt_boxes"]).reshape(-1, 4), np.array(r["gt_classes"]),
                            threshold)
        n_det += kept
        tp += found.sum()
        for f, c in zip(found, r["gt_risk"]):
            by[c][0] += int(f)
            by[c][1] += 1
    out = {f"recall_{RISK_NAMES[c]}": (v[0] / v[1] if v[1] else None) for c, v in by.items()}
    out.update({f"count_{RISK_NAMES[c]}": v[1] for c, v in by.items()})
    hi = [by[0][0] + by[1][0], by[0][1] + by[1][1]]
    out["recall_imminent_or_potential"] = hi[0] / hi[1] if hi[1] else None
    n_gt = sum(v[1] for v in by.values())
    out["recall"] = float(tp / max(n_gt, 1))
    out["precision"] = float(tp / n_det) if n_det else None
    return out


def overlap(a: np.ndarray, b: np.ndarray, kind: str = "iou") -> np.ndarray:
    """`[A, B]` IoU, or with kind="iog" the intersection over the area of each box of `a` (the
    ground truth), of boxes (left, top, right, bottom)."""
    from jaxlab.lidarfirst.pipeline import box_area, intersection, iou

    if kind == "iou":
        return iou(a, b)
    if kind != "iog":
        raise ValueError(f"overlap kind must be 'iou' or 'iog', got {kind!r}")
    return intersection(a, b) / np.maximum(box_area(a)[:, None], 1e-9)


def risk_ranked_recall(rows: list[dict], confidences=CONFIDENCES, min_overlap: float = 0.8) -> dict:
    """Recall per R^3 class (IoG) and of all objects (IoU) at each confidence, class-agnostic
    (module docstring). Returns `{"confidence": [...], "imminent"|"potential"|"none"|"all": [...],
    "count_<class>": n}`; a class without objects has None (calcRecall reports 1)."""
    hits = {k: np.zeros(len(confidences)) for k in (*RISK_NAMES, "all")}
    counts = dict.fromkeys((*RISK_NAMES, "all"), 0)
    for r in rows:
        gt = np.array(r["gt_boxes"], np.float64).reshape(-1, 4)
        if not len(gt):
            continue
        boxes = np.array([d["box"] for d in r["detections"]], np.float64).reshape(-1, 4)
        scores = np.array([d["score"] for d in r["detections"]], np.float64)
        iog, iou_ = overlap(gt, boxes, "iog"), overlap(gt, boxes, "iou")
        names = [RISK_NAMES[c] for c in r["gt_risk"]]
        for k in names:
            counts[k] += 1
        counts["all"] += len(gt)
        for i, c in enumerate(confidences):
            keep = scores >= c
            by_iog = (iog[:, keep] >= min_overlap).any(1)
            by_iou = (iou_[:, keep] >= min_overlap).any(1)
            for g, k in enumerate(names):
                hits[k][i] += by_iog[g]
            hits["all"][i] += by_iou.sum()
    out = {"confidence": [float(c) for c in confidences]}
    for k, h in hits.items():
        out[k] = [float(x / counts[k]) for x in h] if counts[k] else None
        out[f"count_{k}"] = counts[k]
    return out


def first_risky_detection_time(row: dict, threshold: float) -> float | None:
    """Seconds from the frame start to the detection of its highest-risk (then nearest-listed) object."""
    risky = [j for j in np.argsort(row["gt_risk"], kind="stable") if row["gt_risk"][j] < risk.NONE]
    if not risky:
        return None
    j = int(risky[0])
    gt = np.array(row["gt_boxes"]).reshape(-1, 4)
    for d in sorted((d for d in row["detections"] if d["score"] >= threshold), key=lambda d: d["time_s"]):
        found, _ = match([d], gt[j:j + 1], np.array(row["gt_classes"])[j:j + 1], 0.0)
        if found[0]:
            return float(d["time_s"])
    return None


def mean_ap(rows: list[dict]) -> float | None:
    """Mean over classes with ground truth of the VOC AP@0.5 of all detections (no threshold)."""
    from jaxlab.lidarfirst.pipeline import average_precision

    aps = []
    for c in (1, 2, 3):
        gts = [np.array([b for b, k in zip(r["gt_boxes"], r["gt_classes"]) if k == c]).reshape(-1, 4) for r in rows]
        dets = [(f, d["score"], np.array(d["box"])) for f, r in enumerate(rows) for d in r["detections"]
                if d["class"] == c]
        ap = average_precision(dets, gts)
        if ap == ap:
            aps.append(ap)
    return float(np.mean(aps)) if aps else None
