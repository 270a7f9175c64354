"""Argoverse 2's own API (`av2`, the optional extra `.[av2]`) as an oracle for our AV2 files and metrics.

Skipped where av2 is not installed (CI). Our writer's scenario parquet and map JSON must load
with av2's `load_argoverse_scenario_parquet` and `ArgoverseStaticMap.from_json` and hold what
the procedural scene and our reader hold; a file written by av2's own serializer must load with
our reader; `metrics.numpy_metrics` must equal av2's `compute_ade`/`compute_fde`/
`compute_is_missed_prediction` where the definitions agree.
"""

import numpy as np
import pytest

pytest.importorskip("av2")

from av2.datasets.motion_forecasting import scenario_serialization
from av2.datasets.motion_forecasting.data_schema import ObjectType, TrackCategory
from av2.datasets.motion_forecasting.eval import metrics as av2_metrics
from av2.map.map_api import ArgoverseStaticMap

from jaxlab.vectornet import argoverse as av
from jaxlab.vectornet import data
from jaxlab.vectornet.metrics import numpy_metrics

NUM_OBS, NUM_STEPS = av.AV2_OBSERVED, av.AV2_STEPS


@pytest.fixture(scope="module")
def av2_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("av2_oracle")
    scenes = data.procedural_scenes(0, "train", 3, 0.6, NUM_OBS, NUM_STEPS)
    av.write_dataset({"train": scenes}, root, "av2")
    return [(sc, root / "train" / sc.scene_id) for sc in scenes]


def _track_id(t):
    return "AV" if t.object_type == "AV" else t.track_id


def _point_to_polyline(points, line):
    """Distance of each of `points [n, 2]` to the polyline `line [m, 2]`."""
    a, b = line[:-1], line[1:]
    ab = b - a
    u = np.clip(np.einsum("pmd,md->pm", points[:, None] - a, ab) / np.sum(ab * ab, axis=1), 0.0, 1.0)
    return np.min(np.linalg.norm(a + u[..., None] * ab - points[:, None], axis=-1), axis=1)


def test_av2_reads_our_scenario_parquet(av2_files):
    for sc, d in av2_files:
        path = d / f"scenario_{sc.scene_id}.parquet"
        s = scenario_serialization.load_argoverse_scenario_parquet(path)
        assert s.scenario_id == sc.scene_id and s.focal_track_id == sc.target_id
        assert s.city_name == "pittsburgh" and s.map_id is None and s.slice_id is None
        # av2 rebuilds the timestamps as linspace(start, end, num_timestamps): 110 steps at 10 Hz
        assert len(s.timestamps_ns) == NUM_STEPS
        np.testing.assert_allclose(s.timestamps_ns[0], av.AV2_T0, rtol=0, atol=128)
        np.testing.assert_allclose(np.diff(s.timestamps_ns), 100_000_000, rtol=0, atol=128)

        ref = {_track_id(t): t for t in sc.tracks}
        got = {t.track_id: t for t in s.tracks}
        assert set(got) == set(ref) and "AV" in got
        ours, focal = av.read_av2_scenario(path, num_obs=NUM_OBS)  # focal's last observed step stays 49
        ours = {t.track_id: t for t in ours}
        assert focal == s.focal_track_id and set(ours) == set(got)
        for tid, t in got.items():
            r = ref[tid]
            assert t.object_type is ObjectType.VEHICLE and ours[tid].object_type == t.object_type.value
            # our writer's categories: the focal track FOCAL, the ego ("AV") UNSCORED, the others SCORED
            want = (TrackCategory.FOCAL_TRACK if tid == sc.target_id else
                    TrackCategory.UNSCORED_TRACK if tid == "AV" else TrackCategory.SCORED_TRACK)
            assert t.category is want
            steps = np.array([o.timestep for o in t.object_states])
            xy = np.array([o.position for o in t.object_states])
            np.testing.assert_array_equal(steps, r.steps)
            np.testing.assert_array_equal(steps, ours[tid].steps)
            assert [o.observed for o in t.object_states] == (steps < NUM_OBS).tolist()
            np.testing.assert_allclose(xy, r.xy, rtol=0, atol=1e-9)
            np.testing.assert_allclose(xy, ours[tid].xy, rtol=0, atol=1e-9)
            # velocity in m/s by central differences at 10 Hz; heading (radians, map frame) along it
            vel = np.array([o.velocity for o in t.object_states])
            np.testing.assert_allclose(vel, np.gradient(r.xy, axis=0) / 0.1, rtol=0, atol=1e-9)
            heading = np.array([o.heading for o in t.object_states])
            np.testing.assert_allclose(heading, np.arctan2(vel[:, 1], vel[:, 0]), rtol=0, atol=1e-12)


def test_our_reader_reads_a_parquet_written_by_av2(av2_files, tmp_path):
    sc, d = av2_files[0]
    s = scenario_serialization.load_argoverse_scenario_parquet(d / f"scenario_{sc.scene_id}.parquet")
    s.timestamps_ns = np.round(s.timestamps_ns).astype(np.int64)  # as in the released files (int nanoseconds)
    path = tmp_path / f"scenario_{sc.scene_id}.parquet"
    scenario_serialization.serialize_argoverse_scenario_parquet(path, s)
    tracks, focal = av.read_av2_scenario(path, num_obs=NUM_OBS)
    ref = {_track_id(t): t for t in sc.tracks}
    assert focal == sc.target_id and {t.track_id for t in tracks} == set(ref)
    for t in tracks:
        np.testing.assert_array_equal(t.steps, ref[t.track_id].steps)
        np.testing.assert_allclose(t.xy, ref[t.track_id].xy, rtol=0, atol=1e-9)


def test_av2_reads_our_map_json(av2_files):
    for sc, d in av2_files:
        m = ArgoverseStaticMap.from_json(d / f"log_map_archive_{sc.scene_id}.json")
        assert m.log_id == sc.scene_id
        ours = {ln.lane_id: ln for ln in av.read_av2_map(d / f"log_map_archive_{sc.scene_id}.json")}
        assert sorted(m.get_scenario_lane_segment_ids()) == sorted(int(ln.lane_id) for ln in sc.lanes)
        assert set(ours) == {ln.lane_id for ln in sc.lanes}
        for ln in sc.lanes:
            lid = int(ln.lane_id)
            seg = m.vector_lane_segments[lid]
            assert seg.id == lid and seg.lane_type.value == "VEHICLE"
            assert m.lane_is_in_intersection(lid) == ln.is_intersection == ours[ln.lane_id].is_intersection
            assert seg.predecessors == [int(p) for p in ln.predecessors]
            assert m.get_lane_segment_successor_ids(lid) == [int(s) for s in ln.successors]
            for side, nb in (("left", ln.left_neighbor), ("right", ln.right_neighbor)):
                got = getattr(m, f"get_lane_segment_{side}_neighbor_id")(lid)
                assert got == (None if nb is None else int(nb)) and getattr(ours[ln.lane_id], f"{side}_neighbor") == nb
            left, right = seg.left_lane_boundary.xyz, seg.right_lane_boundary.xyz
            # boundaries: 1.75 m either side of each centreline point, the left one on the left of travel
            np.testing.assert_allclose(0.5 * (left + right)[:, :2], ln.xy, rtol=0, atol=1e-9)
            np.testing.assert_allclose(np.linalg.norm(left - right, axis=1), 2 * av.LANE_HALF_WIDTH, atol=1e-9)
            tangent = np.gradient(ln.xy, axis=0)
            across = (left - right)[:, :2]
            assert np.all(tangent[:, 0] * across[:, 1] - tangent[:, 1] * across[:, 0] > 0)
            assert np.all(left[:, 2] == 0) and np.all(right[:, 2] == 0)
            # av2 derives the centreline (10 points, 3-d); our reader derives the same
            centre = m.get_lane_segment_centerline(lid)
            assert centre.shape == (10, 3)
            np.testing.assert_allclose(ours[ln.lane_id].xy, centre[:, :2], rtol=0, atol=1e-9)
            # and it lies on the procedural centreline: exactly on straight lanes, within 0.25 m on turns
            tol = 0.25 if ln.turn in ("LEFT", "RIGHT") else 1e-6
            assert np.max(_point_to_polyline(centre[:, :2], np.asarray(ln.xy))) < tol
            np.testing.assert_allclose(centre[[0, -1], :2], np.asarray(ln.xy)[[0, -1]], rtol=0, atol=1e-9)


def _av2_per_scene(pred, truth):
    """av2's per-guess `(ade [N, K], fde [N, K], missed [N, K])`; av2 takes one actor's `(K, T, 2)`."""
    out = [(av2_metrics.compute_ade(p, y), av2_metrics.compute_fde(p, y),
            av2_metrics.compute_is_missed_prediction(p, y, 2.0)) for p, y in zip(pred, truth)]
    return tuple(np.stack(a) for a in zip(*out))


@pytest.mark.parametrize("k", [1, 6])
def test_metrics_equal_av2(k):
    rng = np.random.default_rng(k)
    n, t = 64, 60  # AV2: 60 future steps
    truth = np.cumsum(rng.normal(0.0, 1.0, (n, t, 2)), axis=1)
    scale = rng.uniform(0.02, 0.6, (n, 1, 1, 1))  # per scene: from sure hits to sure misses
    pred = truth[:, None] + np.cumsum(rng.normal(0.0, 1.0, (n, k, t, 2)), axis=2) * scale
    ade, fde, missed = _av2_per_scene(pred, truth)
    assert 0 < missed.all(axis=1).mean() < 1  # both hits and misses
    m = numpy_metrics(pred[:, 0] if k == 1 else pred, truth)
    # av2 returns per-guess values and leaves the choice of guess to the caller: our minFDE is
    # the min over av2's FDEs, our minADE the ADE of that min-FDE guess (Argoverse's rule, not
    # min over av2's ADEs), and a miss is a scene whose every guess av2 calls missed
    best = np.argmin(fde, axis=1)
    np.testing.assert_allclose(m["fde"], fde.min(axis=1), rtol=1e-12)
    np.testing.assert_allclose(m["ade"], ade[np.arange(n), best], rtol=1e-12)
    np.testing.assert_array_equal(m["miss"], missed.all(axis=1))
    assert np.all(m["ade"] >= ade.min(axis=1))
    if k > 1:
        assert np.any(m["ade"] > ade.min(axis=1) + 1e-9)  # the two minADE rules differ
    np.testing.assert_array_equal(numpy_metrics(pred, truth, miss_threshold=3.0)["miss"],
                                  np.stack([av2_metrics.compute_is_missed_prediction(p, y, 3.0)
                                            for p, y in zip(pred, truth)]).all(axis=1))


def test_brier_metrics_equal_av2():
    rng = np.random.default_rng(7)
    n, k, t = 48, 6, 60
    truth = np.cumsum(rng.normal(0.0, 1.0, (n, t, 2)), axis=1)
    pred = truth[:, None] + np.cumsum(rng.normal(0.0, 0.3, (n, k, t, 2)), axis=2)
    probs = rng.dirichlet(np.ones(k), size=n)
    m = numpy_metrics(pred, truth, probs=probs * 0.5)  # normalised inside, as by av2 normalize=True
    for i in range(n):
        fde = av2_metrics.compute_fde(pred[i], truth[i])
        best = np.argmin(fde)
        b_fde = av2_metrics.compute_brier_fde(pred[i], truth[i], probs[i] * 0.5, normalize=True)
        b_ade = av2_metrics.compute_brier_ade(pred[i], truth[i], probs[i] * 0.5, normalize=True)
        np.testing.assert_allclose([m["brier_fde"][i], m["brier_ade"][i]], [b_fde[best], b_ade[best]], rtol=1e-12)


@pytest.mark.parametrize("k", [1, 6])
def test_masked_metrics_equal_av2_on_the_valid_steps(k):
    # av2's metrics take no validity mask: a track that ends early (or has gaps) is scored by
    # av2 on its valid steps only, which is what our mask means (mean over valid steps, FDE at
    # the last valid one)
    rng = np.random.default_rng(10 + k)
    n, t = 32, 60
    truth = np.cumsum(rng.normal(0.0, 1.0, (n, t, 2)), axis=1)
    pred = truth[:, None] + np.cumsum(rng.normal(0.0, 0.2, (n, k, t, 2)), axis=2)
    valid = np.ones((n, t), bool)
    for i in range(n):
        valid[i, rng.integers(5, t + 1):] = False  # ends early
        if i % 3 == 0:
            valid[i, rng.integers(0, 4, size=2)] = False  # and a gap
    m = numpy_metrics(pred[:, 0] if k == 1 else pred, truth, valid)
    for i in range(n):
        p, y = pred[i][:, valid[i]], truth[i][valid[i]]
        ade, fde = av2_metrics.compute_ade(p, y), av2_metrics.compute_fde(p, y)
        best = np.argmin(fde)
        np.testing.assert_allclose([m["ade"][i], m["fde"][i]], [ade[best], fde[best]], rtol=1e-12)
        assert m["miss"][i] == av2_metrics.compute_is_missed_prediction(p, y).all()
