"""lidarfirst clustering: the JAX range-image labeller vs scikit-learn DBSCAN on the same clouds.

Both cluster the non-ground points of simulated frames (ground from the JAX angle method, given to
both); DBSCAN works on the 3-D points (eps, min_samples), the JAX labeller on the range image
(beta > 10 deg, one compile per image size). Prints medians, their ratio, compile time apart,
the device and the load average before and after, and the cluster purity of each.

    python scripts/bench_lidarfirst.py --beams 32 --columns 512 --frames 5

With `--workdir RUN` (a run where `train-classifier` and `train-detector` are done) it also times the
whole cluster-first pipeline against the full-frame detector on the same simulated frames of that
run's config (medians per frame, their ratio; compile apart).
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.cluster import DBSCAN

from jaxlab.lidarfirst import configs, segmentation, simulator


def loadavg() -> float:
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def purity(labels: np.ndarray, inst: np.ndarray) -> float:
    m = labels >= 0
    if not m.any():
        return float("nan")
    return sum(np.bincount(inst[labels == k] + 1).max() for k in np.unique(labels[m])) / m.sum()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--beams", type=int, default=32)
    ap.add_argument("--columns", type=int, default=512)
    ap.add_argument("--frames", type=int, default=5)
    ap.add_argument("--eps", type=float, default=0.5)
    ap.add_argument("--min-samples", type=int, default=5)
    ap.add_argument("--workdir", default="", help="a run with train-classifier and train-detector done")
    args = ap.parse_args()
    before = loadavg()
    cores = os.cpu_count() or 1
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), load average before: {before:.2f}"
          f" on {cores} cores")
    if before > cores / 2:
        print(f"WARNING: load average {before:.2f} > half the cores: timings are from a loaded machine")
    cfg = configs.get_config("default")
    cfg.scene.num_beams, cfg.scene.num_columns = args.beams, args.columns
    p = cfg.pipeline
    theta = jnp.asarray(simulator.inclinations(cfg.scene), jnp.float32)
    phi = jnp.asarray(simulator.azimuths(cfg.scene.num_columns), jnp.float32)
    kw = dict(num_columns=cfg.scene.num_columns, ground_angle=float(np.deg2rad(p.ground_angle_deg)),
              smooth_window=p.smooth_window, dilation=False, cluster_angle=float(np.deg2rad(p.cluster_angle_deg)),
              min_size=p.min_cluster, max_size=p.max_cluster, max_clusters=p.max_clusters, wrap=True)
    frames = [simulator.simulate_frame(100 + i, cfg.scene) for i in range(args.frames)]
    t0 = time.perf_counter()
    jax.block_until_ready(segmentation.segment(jnp.asarray(frames[0].range_image, jnp.float32), theta, phi, **kw))
    compile_s = time.perf_counter() - t0
    t_jax, t_db, t_db_all, pur_jax, pur_db, npts = [], [], [], [], [], []
    for f in frames:
        rng = jnp.asarray(f.range_image, jnp.float32)
        t0 = time.perf_counter()
        out = jax.block_until_ready(segmentation.segment(rng, theta, phi, **kw))
        t_jax.append(time.perf_counter() - t0)
        ground, cl = np.asarray(out["ground"]), np.asarray(out["cluster"])
        fg = (f.range_image > 0) & ~ground
        pts = np.asarray(segmentation.range_image_to_points(rng, theta, phi))[fg]
        npts.append(len(pts))
        t0 = time.perf_counter()
        lab = DBSCAN(eps=args.eps, min_samples=args.min_samples, n_jobs=1).fit_predict(pts)
        t_db.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        DBSCAN(eps=args.eps, min_samples=args.min_samples, n_jobs=-1).fit_predict(pts)
        t_db_all.append(time.perf_counter() - t0)
        pur_jax.append(purity(cl[fg], f.instance_image[fg]))
        pur_db.append(purity(lab, f.instance_image[fg]))
    mj, md = float(np.median(t_jax)), float(np.median(t_db))
    print(f"\n{args.beams} beams x {args.columns} columns, {args.frames} frames, median "
          f"{int(np.median(npts))} non-ground points per frame\n")
    ma = float(np.median(t_db_all))
    print("| clustering | median s/frame (1 thread) | median s/frame (all threads) | purity | compile s |")
    print("|---|---|---|---|---|")
    print(f"| jaxlab labeller (incl. ground removal) | {mj:.4f} | - | {np.mean(pur_jax):.3f} | {compile_s:.2f} |")
    print(f"| scikit-learn DBSCAN eps={args.eps} min_samples={args.min_samples} (non-ground points) | {md:.4f} | "
          f"{ma:.4f} | {np.nanmean(pur_db):.3f} | - |")
    print(f"\nratio DBSCAN (1 thread) / jaxlab: {md / mj:.2f}x, DBSCAN (all threads) / jaxlab: {ma / mj:.2f}x")
    if args.workdir:
        pipelines(args.workdir, args.frames)
    after = loadavg()
    print(f"load average after: {after:.2f}")
    if after > cores / 2:
        print(f"WARNING: load average {after:.2f} > half the cores: timings are from a loaded machine")


def pipelines(workdir: str, num_frames: int) -> None:
    """Cluster-first (segmentation + crops in risk order) vs full-frame detector, same frames."""
    from jaxlab.lidarfirst import compare, pipeline, run

    clf, det = run.load(workdir), run.load_detector(workdir)
    cfg = clf.config
    s = cfg.model.crop_size
    classify = jax.jit(lambda x: jax.nn.softmax(clf.model.apply({"params": clf.state.params}, x)))
    detect = compare.make_detect(det.model, det.state.params, cfg)
    frames = [pipeline.from_frame(str(i), simulator.simulate_frame(pipeline.stream_seed(cfg.seed, 99, i), cfg.scene))
              for i in range(num_frames + 1)]
    t0 = time.perf_counter()
    jax.block_until_ready(classify(jnp.zeros((1, s, s, 3))))
    pipeline.process_frame(frames[0], classify, cfg)
    compile_cf = time.perf_counter() - t0
    t0 = time.perf_counter()
    compare.fullframe_frame(frames[0], detect)
    compile_ff = time.perf_counter() - t0
    cf = [pipeline.process_frame(f, classify, cfg)["times"]["total_s"] for f in frames[1:]]
    ff = [compare.fullframe_frame(f, detect)["times"]["total_s"] for f in frames[1:]]
    sc = cfg.scene
    print(f"\nwhole pipelines, {num_frames} frames of {workdir} ({sc.image_width}x{sc.image_height} image)")
    print("| pipeline | median s/frame | first frame (compile) s |")
    print("|---|---|---|")
    print(f"| cluster-first (LiDAR segmentation + crops in risk order) | {np.median(cf):.4f} | {compile_cf:.2f} |")
    print(f"| full-frame CenterNet-style detector | {np.median(ff):.4f} | {compile_ff:.2f} |")
    print(f"speed ratio full-frame time / cluster-first time: {np.median(ff) / np.median(cf):.2f}x "
          "(the paper claims 1.25x)")


if __name__ == "__main__":
    main()
