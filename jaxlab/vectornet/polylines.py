"""Scenes as polylines, and vectorisation into one padded array layout (paper §2.1 / §3.1).

A `Scene` holds lanes (centrelines with attributes) and tracks (positions at integer 10 Hz
steps) in world metres, and the id of the target. `vectorize` turns it into

    vectors   [P, V, F]  float32   one row per vector v_i = [d_s, d_e, attributes]
    vec_mask  [P, V]     bool      real vectors
    kind      [P]        int32     TARGET, AGENT, LANE, or PAD
    future    [T, 2]     float32   the target's future in the target frame
    future_mask [T]      bool      steps with a ground-truth position

with coordinates centred on the target's last observed position and rotated so that its
heading points along +x. The paper's integer polyline id `j` is the row index `p` of the
layout (vectors of a polyline share a row), so it is not fed as a feature. Fixed budgets
(P = `max_polylines`, V = `max_vectors`) give every batch the same shape: one compile.
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = [
    "Lane", "Track", "Scene", "FEATURES", "NUM_FEATURES", "TARGET", "AGENT", "LANE", "PAD",
    "resample", "split", "target_frame", "to_frame", "vectorize", "stack", "slot_budget",
]

TARGET, AGENT, LANE, PAD = 0, 1, 2, -1
FEATURES = ("xs", "ys", "xe", "ye", "time", "is_target", "is_agent", "is_lane",
            "is_intersection", "turn_left", "turn_right", "traffic_control")
NUM_FEATURES = len(FEATURES)
TURNS = ("NONE", "LEFT", "RIGHT")


@dataclasses.dataclass
class Lane:
    """A lane centreline `xy [n, 2]` (metres, in driving order) and its attributes."""

    lane_id: str
    xy: np.ndarray
    is_intersection: bool = False
    turn: str = "NONE"
    traffic_control: bool = False
    predecessors: tuple[str, ...] = ()
    successors: tuple[str, ...] = ()
    left_neighbor: str | None = None
    right_neighbor: str | None = None


@dataclasses.dataclass
class Track:
    """A track observed at integer steps `steps [T]` (10 Hz) with positions `xy [T, 2]`."""

    track_id: str
    object_type: str
    steps: np.ndarray
    xy: np.ndarray


@dataclasses.dataclass
class Scene:
    """One forecasting sequence: lanes, tracks and the target's track id."""

    scene_id: str
    lanes: list[Lane]
    tracks: list[Track]
    target_id: str
    city: str = "PIT"

    def track(self, track_id: str) -> Track:
        for t in self.tracks:
            if t.track_id == track_id:
                return t
        raise KeyError(track_id)


def resample(xy: np.ndarray, spacing: float) -> np.ndarray:
    """Points at equal arc length `<= spacing` along the polyline `xy [n, 2]`, ends kept."""
    xy = np.asarray(xy, np.float64)
    seg = np.linalg.norm(np.diff(xy, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    if s[-1] <= 0:
        return xy[:1].copy()
    n = max(1, int(np.ceil(s[-1] / spacing - 1e-4)))  # tolerant: lengths from rounded files
    t = np.linspace(0.0, s[-1], n + 1)
    return np.stack([np.interp(t, s, xy[:, 0]), np.interp(t, s, xy[:, 1])], axis=1)


def split(points: np.ndarray, max_vectors: int) -> list[np.ndarray]:
    """Consecutive pieces of `points [n, ...]` with at most `max_vectors` vectors each
    (`max_vectors + 1` points; neighbouring pieces share their end point)."""
    n = len(points)
    if n < 2:
        return []
    return [points[i:min(i + max_vectors + 1, n)] for i in range(0, n - 1, max_vectors)]


def target_frame(track: Track, last_step: int) -> tuple[np.ndarray, float]:
    """Origin (the position at `last_step`) and heading (radians) of the target.

    The heading is the direction of the displacement over the last (up to) 5 observed
    steps; a target that does not move (< 0.1 m) gets heading 0.
    """
    obs = track.steps <= last_step
    if not np.any(track.steps == last_step):
        raise ValueError(f"target {track.track_id} is not observed at step {last_step}")
    xy = track.xy[obs]
    origin = xy[-1]
    d = xy[-1] - xy[max(0, len(xy) - 6)]
    heading = float(np.arctan2(d[1], d[0])) if np.hypot(*d) >= 0.1 else 0.0
    return origin.astype(np.float64), heading


def to_frame(xy: np.ndarray, origin: np.ndarray, heading: float) -> np.ndarray:
    """`R(-heading) (xy - origin)`: world metres into the target frame (heading along +x)."""
    c, s = np.cos(heading), np.sin(heading)
    d = np.asarray(xy, np.float64) - origin
    return np.stack([c * d[..., 0] + s * d[..., 1], -s * d[..., 0] + c * d[..., 1]], axis=-1)


def from_frame(xy: np.ndarray, origin: np.ndarray, heading: float) -> np.ndarray:
    """Inverse of `to_frame`."""
    c, s = np.cos(heading), np.sin(heading)
    xy = np.asarray(xy, np.float64)
    return np.stack([c * xy[..., 0] - s * xy[..., 1], s * xy[..., 0] + c * xy[..., 1]], axis=-1) + origin


def _rows(points: np.ndarray, attrs: np.ndarray) -> np.ndarray:
    """Vectors `[n-1, F]` from points `[n, 2]` and per-vector attributes `[n-1, F-4]`."""
    return np.concatenate([points[:-1], points[1:], attrs], axis=1)


def vectorize(scene: Scene, *, num_obs: int, num_future: int, max_vectors: int, max_polylines: int,
              max_agents: int, map_radius: float, lane_spacing: float, max_targets: int = 1) -> dict:
    """The padded polyline layout of `scene` (see module docstring); also `origin [2]`, `heading`.

    Step `num_obs - 1` is the last observed one. Agents other than the target are kept if
    observed at two or more steps up to it, nearest first at their last observation; lanes if a
    resampled point lies within `map_radius`, nearest first. The target's last trajectory piece
    is row 0 (the decoder reads it). Rows beyond `max_polylines` are dropped. Up to
    `max_targets - 1` kept agents observed at all `num_obs` history steps and all `num_future`
    future steps, whose last piece survives the row budget, are predicted besides the target
    (nearest first).
    """
    last = num_obs - 1
    target = scene.track(scene.target_id)
    origin, heading = target_frame(target, last)
    polys: list[tuple[float, int, np.ndarray]] = []  # (distance, kind, vectors)

    def track_rows(track: Track, kind: int) -> list[np.ndarray]:
        obs = (track.steps <= last) & (track.steps > last - num_obs)
        if obs.sum() < 2:
            return []
        pts = to_frame(track.xy[obs], origin, heading)
        t = (track.steps[obs][:-1] - last).astype(np.float64) / num_obs
        attrs = np.zeros((len(t), NUM_FEATURES - 4))
        attrs[:, 0] = t
        attrs[:, 1 if kind == TARGET else 2] = 1.0
        rows = _rows(pts, attrs)
        return [rows[i:i + max_vectors] for i in range(0, len(rows), max_vectors)]

    pieces = track_rows(target, TARGET)
    if not pieces:
        raise ValueError(f"scene {scene.scene_id}: target {scene.target_id} has fewer than 2 observed steps")
    polys.append((-1.0, TARGET, pieces[-1]))
    for p in pieces[:-1]:
        polys.append((-0.5, TARGET, p))
    agents = []
    for tr in scene.tracks:
        if tr.track_id == scene.target_id:
            continue
        obs = (tr.steps <= last) & (tr.steps > last - num_obs)
        if obs.sum() < 2:
            continue
        dist = float(np.linalg.norm(to_frame(tr.xy[obs][-1], origin, heading)))
        agents.append((dist, tr))
    agents.sort(key=lambda a: a[0])
    candidates = []  # (row of the last piece, track) of agents with a full history and future
    full = np.arange(last - num_obs + 1, last + num_future + 1)
    for dist, tr in agents[:max_agents]:
        for p in track_rows(tr, AGENT):
            polys.append((dist, AGENT, p))
        if np.isin(full, tr.steps).all():
            candidates.append((len(polys) - 1, tr))
    lane_polys = []
    for lane in scene.lanes:
        pts = to_frame(resample(lane.xy, lane_spacing), origin, heading)
        d = np.linalg.norm(pts, axis=1)
        if len(pts) < 2 or d.min() > map_radius:
            continue
        attrs = np.zeros((len(pts) - 1, NUM_FEATURES - 4))
        attrs[:, 3] = 1.0
        attrs[:, 4] = float(lane.is_intersection)
        attrs[:, 5] = float(lane.turn == "LEFT")
        attrs[:, 6] = float(lane.turn == "RIGHT")
        attrs[:, 7] = float(lane.traffic_control)
        rows = _rows(pts, attrs)
        for i in range(0, len(rows), max_vectors):
            piece = rows[i:i + max_vectors]
            dmin = float(np.min(np.linalg.norm(piece[:, :2], axis=1)))
            lane_polys.append((dmin, LANE, piece))
    lane_polys.sort(key=lambda a: a[0])
    polys.extend(lane_polys)
    polys = polys[:max_polylines]
    vectors = np.zeros((max_polylines, max_vectors, NUM_FEATURES), np.float32)
    vec_mask = np.zeros((max_polylines, max_vectors), bool)
    kind = np.full((max_polylines,), PAD, np.int32)
    for i, (_, k, rows) in enumerate(polys):
        vectors[i, :len(rows)] = rows
        vec_mask[i, :len(rows)] = True
        kind[i] = k
    future = np.zeros((num_future, 2), np.float32)
    future_mask = np.zeros((num_future,), bool)
    fut = (target.steps > last) & (target.steps <= last + num_future)
    idx = target.steps[fut] - last - 1
    future[idx] = to_frame(target.xy[fut], origin, heading)
    future_mask[idx] = True
    targets = np.zeros((max_targets,), np.int32)
    target_valid = np.zeros((max_targets,), bool)
    target_future = np.zeros((max_targets, num_future, 2), np.float32)
    target_future_mask = np.zeros((max_targets, num_future), bool)
    target_origin = np.zeros((max_targets, 2), np.float32)
    target_heading = np.zeros((max_targets,), np.float32)
    target_valid[0], target_future[0], target_future_mask[0] = True, future, future_mask
    chosen = [(r, tr) for r, tr in candidates if r < max_polylines][:max_targets - 1]
    for k, (row, tr) in enumerate(chosen, start=1):
        o, h = target_frame(tr, last)
        fut = (tr.steps > last) & (tr.steps <= last + num_future)
        targets[k], target_valid[k] = row, True
        target_future[k, tr.steps[fut] - last - 1] = to_frame(tr.xy[fut], origin, heading)
        target_future_mask[k, tr.steps[fut] - last - 1] = True
        target_origin[k] = to_frame(o, origin, heading)
        target_heading[k] = np.angle(np.exp(1j * (h - heading)))
    return {"vectors": vectors, "vec_mask": vec_mask, "kind": kind, "future": future,
            "future_mask": future_mask, "origin": origin.astype(np.float64),
            "heading": np.float64(heading), "targets": targets, "target_valid": target_valid,
            "target_future": target_future, "target_future_mask": target_future_mask,
            "target_origin": target_origin, "target_heading": target_heading}


def stack(items: list[dict]) -> dict:
    """Stacks per-scene layouts along a new leading axis."""
    return {k: np.stack([it[k] for it in items]) for k in items[0]}


def slot_budget(vec_mask: np.ndarray, num_classes: int) -> tuple[int, ...]:
    """Per-slot vector budgets with at most `num_classes` distinct values that every scene of
    `vec_mask [N, P, V]` fits once its polylines are sorted by length (the subgraph's
    `slot_vectors`, `models.PolylineSubgraph`).

    A polyline's length is its last valid vector's index + 1. The j-th longest polyline of
    any scene is at most `m[j]`, the largest j-th length over the scenes; the budget splits
    the slots into `num_classes` contiguous runs, each at its first slot's `m`, choosing the
    runs (exactly, by dynamic programming) to minimise the vectors computed, `sum(budget)`.
    """
    vec_mask = np.asarray(vec_mask, bool)
    if vec_mask.ndim != 3:
        raise ValueError(f"vec_mask must be [scenes, polylines, vectors], got shape {vec_mask.shape}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    n, p, v = vec_mask.shape
    lengths = np.max(np.where(vec_mask, np.arange(1, v + 1), 0), axis=-1)
    m = (-np.sort(-lengths, axis=-1)).max(axis=0) if n else np.zeros(p, np.int64)  # non-increasing
    # cost[c][i]: fewest vectors for slots i.. in c runs; a run from i covers slots i..j-1 at m[i]
    inf = np.iinfo(np.int64).max // 4
    cost = np.full((num_classes + 1, p + 1), inf, np.int64)
    cut = np.zeros((num_classes + 1, p + 1), np.int64)
    cost[:, p] = 0
    for c in range(1, num_classes + 1):
        for i in range(p - 1, -1, -1):
            options = [(j - i) * int(m[i]) + cost[c - 1][j] for j in range(i + 1, p + 1)]
            best = int(np.argmin(options))
            cost[c][i], cut[c][i] = options[best], i + 1 + best
    budget, i, c = [], 0, num_classes
    while i < p:
        j = int(cut[c][i])
        budget += [int(m[i])] * (j - i)
        i, c = j, c - 1
    return tuple(budget)
