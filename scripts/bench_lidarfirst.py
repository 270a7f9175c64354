"""lidarfirst clustering: the JAX range-image labeller vs scikit-learn DBSCAN on the same clouds.

Both cluster the non-ground points of simulated frames (ground from the JAX angle method, given to
both); DBSCAN works on the 3-D points (eps, min_samples), the JAX labeller on the range image
(beta > 10 deg, one compile per image size); the two take turns frame by frame. Prints
medians, their ratio, compile time apart, the device and the load average before and after,
and the cluster purity of each, with a 1-thread and an all-threads column per peer
(`--threads both|1|all`, see `jaxlab.core.benchmark`; DBSCAN's `n_jobs` follows the setting).
When open3d is installed, its `PointCloud.cluster_dbscan` (OpenMP; one thread under `--threads 1`)
is timed on the same points as a third column.

    python scripts/bench_lidarfirst.py --beams 32 --columns 512 --frames 5
    python scripts/bench_lidarfirst.py --beams 64 --columns 2048 --objects 40 30 15 --max-distance 60

(64 x 2048 beams x columns is about 110k points per frame.)

With `--workdir RUN` (a run where `train-classifier` and `train-detector` are done) it also times the
whole cluster-first pipeline against the full-frame detector on the same simulated frames of that
run's config (medians per frame, their ratio; compile apart). `--pipeline-config VARIANT` times
the same with both networks at their initial parameters instead of a run's: the weights do not
change the work (every crop of a frame is classified whatever its score), so the times are
those of trained networks of that config.

    python scripts/bench_lidarfirst.py --frames 5 --workdir runs/lf-default
    python scripts/bench_lidarfirst.py --frames 5 --pipeline-config paper
"""

from __future__ import annotations

import argparse
import time

from jaxlab.core import benchmark

SETTING = benchmark.configure_threads()  # before jax and scikit-learn start their thread pools

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.cluster import DBSCAN  # noqa: E402

from jaxlab.lidarfirst import configs, segmentation, simulator  # noqa: E402

try:  # optional peer
    import open3d
except ImportError:  # pragma: no cover - depends on the environment
    open3d = None


def purity(labels: np.ndarray, inst: np.ndarray) -> float:
    m = labels >= 0
    if not m.any():
        return float("nan")
    return sum(np.bincount(inst[labels == k] + 1).max() for k in np.unique(labels[m])) / m.sum()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--beams", type=int, default=32)
    ap.add_argument("--columns", type=int, default=512)
    ap.add_argument("--frames", type=int, default=5)
    ap.add_argument("--objects", type=int, nargs=3, metavar=("CARS", "PEDESTRIANS", "CYCLISTS"), default=None,
                    help="objects per frame (default: the default config's 5 3 2)")
    ap.add_argument("--max-distance", type=float, default=None, help="objects up to this distance (m)")
    ap.add_argument("--eps", type=float, default=0.5)
    ap.add_argument("--min-samples", type=int, default=5)
    ap.add_argument("--workdir", default="", help="a run with train-classifier and train-detector done")
    ap.add_argument("--pipeline-config", default="", choices=("", "smoke", "default", "paper"),
                    help="time the pipelines of this config with untrained networks (see above)")
    ap.add_argument("--crop-batch", type=int, default=8,
                    help="also time cluster-first with crops classified this many at a time (0: not)")
    benchmark.add_threads_argument(ap)
    args = ap.parse_args()
    print(benchmark.device_line())
    n_jobs = benchmark.peer_threads(SETTING)
    cfg = configs.get_config("default")
    cfg.scene.num_beams, cfg.scene.num_columns = args.beams, args.columns
    if args.objects:
        cfg.scene.num_cars, cfg.scene.num_pedestrians, cfg.scene.num_cyclists = args.objects
    if args.max_distance:
        cfg.scene.max_distance = args.max_distance
    p = cfg.pipeline
    theta = jnp.asarray(simulator.inclinations(cfg.scene), jnp.float32)
    phi = jnp.asarray(simulator.azimuths(cfg.scene.num_columns), jnp.float32)
    kw = dict(num_columns=cfg.scene.num_columns, ground_angle=float(np.deg2rad(p.ground_angle_deg)),
              smooth_window=p.smooth_window, dilation=False, cluster_angle=float(np.deg2rad(p.cluster_angle_deg)),
              min_size=p.min_cluster, max_size=p.max_cluster, max_clusters=p.max_clusters, wrap=True,
              repair=p.repair_depth)
    frames = [simulator.simulate_frame(100 + i, cfg.scene) for i in range(args.frames)]
    t0 = time.perf_counter()
    jax.block_until_ready(segmentation.segment(jnp.asarray(frames[0].range_image, jnp.float32), theta, phi, **kw))
    compile_s = time.perf_counter() - t0
    t_jax, t_db, pur_jax, pur_db, npts, nall, t_o3d, pur_o3d = [], [], [], [], [], [], [], []
    for f in frames:  # the peers take turns, frame by frame
        rng = jnp.asarray(f.range_image, jnp.float32)
        t0 = time.perf_counter()
        out = jax.block_until_ready(segmentation.segment(rng, theta, phi, **kw))
        t_jax.append(time.perf_counter() - t0)
        ground, cl = np.asarray(out["ground"]), np.asarray(out["cluster"])
        fg = (f.range_image > 0) & ~ground
        pts = np.asarray(segmentation.range_image_to_points(rng, theta, phi))[fg]
        npts.append(len(pts))
        nall.append(int((f.range_image > 0).sum()))
        t0 = time.perf_counter()
        lab = DBSCAN(eps=args.eps, min_samples=args.min_samples, n_jobs=n_jobs).fit_predict(pts)
        t_db.append(time.perf_counter() - t0)
        pur_jax.append(purity(cl[fg], f.instance_image[fg]))
        pur_db.append(purity(lab, f.instance_image[fg]))
        if open3d is not None:
            t0 = time.perf_counter()
            cloud = open3d.geometry.PointCloud(open3d.utility.Vector3dVector(pts.astype(np.float64)))
            lab3 = np.asarray(cloud.cluster_dbscan(eps=args.eps, min_points=args.min_samples))
            t_o3d.append(time.perf_counter() - t0)
            pur_o3d.append(purity(lab3, f.instance_image[fg]))
    print(f"{args.beams} beams x {args.columns} columns, {args.frames} frames, median {int(np.median(nall))} points "
          f"and {int(np.median(npts))} non-ground points per frame; DBSCAN n_jobs={n_jobs}")
    res = benchmark.Results()
    peers = {"jaxlab labeller": t_jax, "scikit-learn DBSCAN": t_db}
    pur = f"{np.mean(pur_jax):.3f} / {np.nanmean(pur_db):.3f}"
    if open3d is not None:
        peers["open3d DBSCAN"] = t_o3d
        pur += f" / {np.nanmean(pur_o3d):.3f}"
    res.table("Clustering per frame", list(peers), unit="ms",
              extras=["purity " + " / ".join(peers), "jaxlab compile (s)"]).add(
        f"non-ground points (jaxlab incl. ground removal); DBSCAN eps={args.eps} min_samples={args.min_samples}",
        peers, **{"purity " + " / ".join(peers): pur, "jaxlab compile (s)": f"{compile_s:.2f}"})
    if args.workdir or args.pipeline_config:
        pipelines(args.workdir or args.pipeline_config, args.frames, args.crop_batch, res)
    return res


def pipelines(source: str, num_frames: int, crop_batch: int, res) -> None:
    """Cluster-first (segmentation + crops in risk order, one at a time and `crop_batch` at a time)
    vs the full-frame detector, on the same frames, taking turns frame by frame. `source`: a run
    directory, or a config variant whose networks keep their initial parameters."""
    import dataclasses

    from jaxlab.lidarfirst import compare, detector, models, pipeline, run

    if source in ("smoke", "default", "paper"):
        cfg = configs.get_config(source)
        clf_model, clf_params = models.make_model(cfg), run.init_state(cfg).params
        det_model, det_params = detector.make_detector(cfg.detector), run.init_detector(cfg).params
    else:
        clf, det = run.load(source), run.load_detector(source)
        cfg = clf.config
        clf_model, clf_params, det_model, det_params = clf.model, clf.state.params, det.model, det.state.params
    s = cfg.model.crop_size
    classify = jax.jit(lambda x: jax.nn.softmax(clf_model.apply({"params": clf_params}, x)))
    detect = compare.make_detect(det_model, det_params, cfg)
    frames = [pipeline.from_frame(str(i), simulator.simulate_frame(pipeline.stream_seed(cfg.seed, 99, i), cfg.scene))
              for i in range(num_frames + 1)]
    variants = {"cluster-first": cfg}
    if crop_batch > 1:
        variants[f"cluster-first, {crop_batch} crops per call"] = dataclasses.replace(
            cfg, pipeline=dataclasses.replace(cfg.pipeline, crop_batch=crop_batch))
    compile_s = {}
    for name, c in variants.items():
        t0 = time.perf_counter()
        jax.block_until_ready(classify(jnp.zeros((c.pipeline.crop_batch, s, s, 3))))
        pipeline.process_frame(frames[0], classify, c)
        compile_s[name] = time.perf_counter() - t0
    t0 = time.perf_counter()
    compare.fullframe_frame(frames[0], detect)
    compile_s["full-frame detector"] = time.perf_counter() - t0
    times = {name: [] for name in compile_s}
    crops = []
    for f in frames[1:]:  # the pipelines take turns, frame by frame
        for name, c in variants.items():
            out = pipeline.process_frame(f, classify, c)
            times[name].append(out["times"]["total_s"])
        crops.append(out["crops"])
        times["full-frame detector"].append(compare.fullframe_frame(f, detect)["times"]["total_s"])
    sc = cfg.scene
    cols = list(times)
    res.table(f"Whole pipelines per frame, {num_frames} frames ({sc.image_width}x{sc.image_height} image, "
              f"{sc.num_beams} beams x {sc.num_columns} columns, median {np.median(crops):.0f} crops per frame)",
              cols, unit="ms", extras=["compile (s), " + " / ".join(cols)]).add(
        "cluster-first (LiDAR segmentation + crops in risk order) vs full-frame CenterNet-style detector",
        times, **{"compile (s), " + " / ".join(cols): " / ".join(f"{compile_s[c]:.2f}" for c in cols)})
    res.note("full-frame detector / cluster-first is the speed ratio the paper puts at 1.25x")


if __name__ == "__main__":
    benchmark.run(main)
