import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage
import scipy.sparse
import scipy.sparse.csgraph

from jaxlab.lidarfirst import configs, segmentation, simulator


def _same_partition(a, b):
    """Labellings `a`, `b` (-1 / 0 = none) induce the same partition of the same pixels."""
    assert ((a >= 0) == (b >= 0)).all()
    pairs = {(int(x), int(y)) for x, y in zip(a[a >= 0], b[b >= 0])}
    return len(pairs) == len({p[0] for p in pairs}) == len({p[1] for p in pairs})


def test_label_propagation_equals_scipy_ndimage_label():
    prop = jax.jit(segmentation.propagate_labels, static_argnums=3)
    rng = np.random.default_rng(0)
    for density in (0.3, 0.55, 0.7):
        grid = rng.random((24, 40)) < density
        ones_d, ones_r = np.ones((23, 40), bool), np.ones((24, 40), bool)
        lab, _ = prop(jnp.asarray(grid), jnp.asarray(ones_d), jnp.asarray(ones_r), False)
        ref, n = scipy.ndimage.label(grid)  # 4-connectivity
        lab = np.asarray(lab)
        assert _same_partition(lab, np.where(grid, ref, -1))
        assert len(np.unique(lab[lab >= 0])) == n
        # each label is the smallest flat index of its component
        for k in np.unique(lab[lab >= 0]):
            assert k == np.flatnonzero(lab.ravel() == k).min()


def test_label_propagation_equals_csgraph_on_random_edges_with_wrap():
    rng = np.random.default_rng(1)
    h, w = 16, 30
    active = rng.random((h, w)) < 0.8
    down, right = rng.random((h - 1, w)) < 0.6, rng.random((h, w)) < 0.6
    lab, iters = jax.jit(segmentation.propagate_labels, static_argnums=3)(active, down, right, True)
    idx = np.arange(h * w).reshape(h, w)
    d = down & active[:-1] & active[1:]
    r = right & active & np.roll(active, -1, 1)
    rows = np.concatenate([idx[:-1][d], idx[r]])
    cols = np.concatenate([idx[1:][d], np.roll(idx, -1, 1)[r]])
    g = scipy.sparse.coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(h * w, h * w))
    _, comp = scipy.sparse.csgraph.connected_components(g, directed=False)
    assert _same_partition(np.asarray(lab).ravel(), np.where(active.ravel(), comp, -1))
    assert int(iters) > 1


def test_label_propagation_on_a_serpentine_takes_few_rounds():
    # One component whose path length (~ h * w / 2) is far above its extent: a serpentine of
    # full rows joined alternately at the right and the left end.
    h, w = 40, 64
    grid = np.zeros((h, w), bool)
    grid[0::2] = True
    for r in range(1, h, 2):
        grid[r, w - 1 if r % 4 == 1 else 0] = True
    ones_d, ones_r = np.ones((h - 1, w), bool), np.ones((h, w), bool)
    lab, rounds = jax.jit(segmentation.propagate_labels, static_argnums=3)(
        jnp.asarray(grid), jnp.asarray(ones_d), jnp.asarray(ones_r), False)
    ref, n = scipy.ndimage.label(grid)
    lab = np.asarray(lab)
    assert n == 1 and _same_partition(lab, np.where(grid, ref, -1))
    assert (lab[grid] == 0).all()
    # without hooking, pointer jumping alone needs 68 rounds here (and a plain stencil about
    # the path length, ~1300); hooking merges whole rows at once
    assert int(rounds) < 20, int(rounds)


@pytest.mark.parametrize("k", [1, 5, 40])
def test_largest_equals_top_k_with_ties(k):
    rng = np.random.default_rng(k)
    for frac in (0.01, 0.2):
        v = np.where(rng.random(600) < frac, rng.integers(0, 6, 600), -1).astype(np.int32)  # many ties
        cap = int((v >= 0).sum())
        top, idx = jax.jit(segmentation.largest, static_argnums=(1, 2))(jnp.asarray(v), k, cap)
        ref_top, ref_idx = jax.lax.top_k(jnp.asarray(v), k)
        ok = np.asarray(ref_top) >= 0
        np.testing.assert_array_equal(np.asarray(top)[ok], np.asarray(ref_top)[ok])
        np.testing.assert_array_equal(np.asarray(idx)[ok], np.asarray(ref_idx)[ok])
        assert (np.asarray(top)[~ok] < 0).all()


def _repair_loop(img, step=5, threshold=1.0):
    """depth_clustering's RepairDepth as the plain loop over columns and rows, in place."""
    out = img.copy()
    h, w = out.shape
    for c in range(w):
        for r in range(h):
            if out[r, c] < 0.001:
                total, count = 0.0, 0
                for i in range(1, step):
                    if r - i < 0:
                        continue
                    for j in range(1, step):
                        if r + j > h - 1:
                            continue
                        a, b = out[r - i, c], out[r + j, c]
                        if a > 0.001 and b > 0.001 and abs(a - b) < threshold:
                            total, count = total + a + b, count + 2
                if count:
                    out[r, c] = total / count
    return out


def test_repair_depth_equals_the_loop():
    rng = np.random.default_rng(0)
    img = (10 + rng.random((20, 30)) * 1.5).astype(np.float32)  # ranges within 1.5 m: some pairs too far apart
    img[rng.random(img.shape) < 0.3] = -1.0
    img[5:9, 3] = -1.0  # a gap of 4 rows: its lower rows use the repaired ones above
    img[:, 7] = -1.0  # an empty column stays empty
    got = np.asarray(jax.jit(segmentation.repair_depth)(jnp.asarray(img)))
    ref = _repair_loop(img)
    np.testing.assert_allclose(got, ref, rtol=1e-6)
    assert (got[:, 7] == -1).all() and (got > 0).sum() > (img > 0).sum()


def _segment(frame, cfg, wrap=True):
    sc, p = cfg.scene, cfg.pipeline
    return segmentation.segment(
        jnp.asarray(frame.range_image, jnp.float32), jnp.asarray(frame.inclinations, jnp.float32),
        jnp.asarray(simulator.azimuths(sc.num_columns), jnp.float32), num_columns=sc.num_columns,
        ground_angle=float(np.deg2rad(p.ground_angle_deg)), smooth_window=p.smooth_window,
        dilation=p.ground_dilation, cluster_angle=float(np.deg2rad(p.cluster_angle_deg)),
        min_size=p.min_cluster, max_size=p.max_cluster, max_clusters=p.max_clusters, wrap=wrap)


@pytest.mark.parametrize("seed", [0, 1])
def test_ground_precision_recall_on_flat_ground(seed):
    cfg = configs.get_config("smoke")
    f = simulator.simulate_frame(seed, cfg.scene)
    g = np.asarray(_segment(f, cfg)["ground"])
    truth = f.instance_image == 0
    assert (g & truth).sum() / g.sum() >= 0.98 and (g & truth).sum() / truth.sum() >= 0.98


def test_cluster_purity_on_separated_objects_and_boxes_contain_them():
    cfg = configs.get_config("smoke")
    # Without smoothing no ground pixel next to an object's foot joins its cluster (with the
    # default window 5 about 1% do: test_cluster_purity_on_random_scenes_is_high).
    cfg.pipeline.smooth_window = 1
    centres = np.array([[12.0, -3.0, -1.05], [9.0, 3.0, -0.95], [18.0, 0.5, -0.95]])
    objs = simulator.Objects(np.array([1, 2, 3]), centres,
                             np.array([[4.5, 1.8, 1.5], [0.6, 0.6, 1.7], [1.8, 0.6, 1.7]]), np.array([0.3, 0.0, 1.2]),
                             np.zeros((3, 2)))
    r, inst, _ = simulator.lidar_scan(np.random.default_rng(0), objs, cfg.scene)
    f = simulator.Frame(None, r, inst, simulator.inclinations(cfg.scene), None, None, None, objs, None)
    out = _segment(f, cfg)
    cl = np.asarray(out["cluster"])
    for k in (1, 2, 3):  # each object is one cluster, and that cluster holds only it
        ids = cl[(inst == k) & (cl >= 0)]
        main = np.bincount(ids).argmax()
        assert (inst[cl == main] == k).all() and len(ids) >= 0.75 * (inst == k).sum()
        pts = simulator.box_corners(objs.center[k - 1:k], objs.size[k - 1:k], objs.yaw[k - 1:k])[0]
        lo, hi = np.asarray(out["box_min"][main]), np.asarray(out["box_max"][main])
        assert (lo >= pts.min(0) - 0.05).all() and (hi <= pts.max(0) + 0.05).all()
    counts = np.asarray(out["count"])[np.asarray(out["valid"])]
    assert len(counts) == 3 and (counts >= cfg.pipeline.min_cluster).all() and (np.diff(counts) <= 0).all()


def test_cluster_purity_on_random_scenes_is_high():
    cfg = configs.get_config("smoke")
    f = simulator.simulate_frame(1, cfg.scene)
    cl, inst = np.asarray(_segment(f, cfg)["cluster"]), f.instance_image
    sizes = [(cl == k).sum() for k in range(cl.max() + 1)]
    majority = [np.bincount(inst[cl == k] + 1).max() for k in range(cl.max() + 1)]
    assert sum(majority) / sum(sizes) >= 0.97


def test_two_touching_cuboids_at_different_depths_are_split():
    cfg = configs.get_config("smoke")
    cfg.scene.num_cars = cfg.scene.num_pedestrians = cfg.scene.num_cyclists = 0
    objs = simulator.Objects(np.array([1, 1]), np.array([[10.0, 0.0, -1.05], [14.0, 1.0, -1.05]]),
                             np.array([[2.0, 1.8, 1.5], [2.0, 4.0, 1.5]]), np.zeros(2), np.zeros((2, 2)))
    r, inst, _ = simulator.lidar_scan(np.random.default_rng(0), objs, cfg.scene)
    f = simulator.Frame(None, r, inst, simulator.inclinations(cfg.scene), None, None, None, objs, None)
    cl = np.asarray(_segment(f, cfg)["cluster"])
    a, b = (np.bincount(cl[(inst == k) & (cl >= 0)]).argmax() for k in (1, 2))
    assert a != b


def test_range_image_from_points_matches_the_analytic_one():
    cfg = configs.get_config("smoke").scene
    f = simulator.simulate_frame(2, cfg)
    pts = jnp.asarray(f.points[:, :3])
    ri = segmentation.points_to_range_image(pts, jnp.ones(len(pts), bool), jnp.asarray(f.inclinations, jnp.float32),
                                            cfg.num_columns)
    np.testing.assert_allclose(np.asarray(ri), f.range_image, atol=1e-4)
    back = np.asarray(segmentation.range_image_to_points(ri, jnp.asarray(f.inclinations, jnp.float32),
                                                         jnp.asarray(simulator.azimuths(cfg.num_columns), jnp.float32)))
    valid = f.range_image > 0
    # the analytic ray of each pixel, scaled by its range, gives the written point
    np.testing.assert_allclose(back[valid], f.points[:, :3], atol=1e-4)


def test_segment_compiles_once_per_image_size():
    cfg = configs.get_config("smoke")
    traces = []
    orig = segmentation.remove_ground

    def counting(*a, **k):
        traces.append(1)
        return orig(*a, **k)

    segmentation.remove_ground = counting
    try:
        segmentation.segment.clear_cache()
        for seed in (5, 6, 7):
            _segment(simulator.simulate_frame(seed, cfg.scene), cfg)
        assert len(traces) == 1
    finally:
        segmentation.remove_ground = orig
