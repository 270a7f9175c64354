"""lidarfirst clustering: the JAX range-image labeller vs scikit-learn DBSCAN on the same clouds.

Both cluster the non-ground points of simulated frames (ground from the JAX angle method, given to
both); DBSCAN works on the 3-D points (eps, min_samples), the JAX labeller on the range image
(beta > 10 deg, one compile per image size). Prints medians, their ratio, compile time apart,
the device and the load average before and after, and the cluster purity of each.

    python scripts/bench_lidarfirst.py --beams 32 --columns 512 --frames 5
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
    t_jax, t_db, pur_jax, pur_db, npts = [], [], [], [], []
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
        lab = DBSCAN(eps=args.eps, min_samples=args.min_samples).fit_predict(pts)
        t_db.append(time.perf_counter() - t0)
        pur_jax.append(purity(cl[fg], f.instance_image[fg]))
        pur_db.append(purity(lab, f.instance_image[fg]))
    after = loadavg()
    mj, md = float(np.median(t_jax)), float(np.median(t_db))
    print(f"\n{args.beams} beams x {args.columns} columns, {args.frames} frames, median "
          f"{int(np.median(npts))} non-ground points per frame\n")
    print("| clustering | median s/frame | purity | compile s |")
    print("|---|---|---|---|")
    print(f"| jaxlab labeller (incl. ground removal) | {mj:.4f} | {np.mean(pur_jax):.3f} | {compile_s:.2f} |")
    print(f"| scikit-learn DBSCAN eps={args.eps} min_samples={args.min_samples} (non-ground points) | {md:.4f} | "
          f"{np.nanmean(pur_db):.3f} | - |")
    print(f"\nratio DBSCAN / jaxlab: {md / mj:.2f}x; load average after: {after:.2f}")
    if after > cores / 2:
        print(f"WARNING: load average {after:.2f} > half the cores: timings are from a loaded machine")


if __name__ == "__main__":
    main()
