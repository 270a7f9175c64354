"""Procedural intersection scenes and the datasets VectorNet trains on.

`procedural_scene(rng, index, turn_fraction)` builds one four-arm intersection (arms at
right angles +- 12 degrees, the whole scene rotated and shifted at random): each arm has
three inbound lanes (inner: left turn only, middle: straight only, outer: right turn only),
one outbound lane, and connector lanes through the intersection (straight lines, or
quadratic Bezier arcs for turns) with predecessor/successor and neighbour ids. Agents
follow lane routes at a speed in [4, 12] m/s with an acceleration in [-1.5, 1] m/s^2
(stopping where the speed reaches 0), a slowly drifting lateral offset and position noise;
other agents enter and leave the sensor range (sparse tracks). With probability
`lane_change`, an agent on an inbound lane with a left or right neighbour moves over to the
neighbour (one of the two at random where it has both) along a minimum-jerk (quintic) lateral
blend of 2-4 s that lies within the inbound lanes, at >= 1 m/s, and inside the scene's time span,
then follows the neighbour's route (so its manoeuvre changes: e.g. from the straight lane
into the left-turn lane). The lane a target ends on fixes its manoeuvre, so only a model that
sees the map can tell a turn from its history.

`split_arrays(config, split)` returns the vectorised layout of a split (procedural, or read
from `config.data_dir` in Argoverse 1 or 2 format).
"""

from __future__ import annotations

import functools
import pathlib
import uuid

import numpy as np

from jaxlab.core import config as config_lib
from jaxlab.vectornet import polylines
from jaxlab.vectornet.polylines import Lane, Scene, Track

__all__ = ["procedural_scene", "procedural_scenes", "split_arrays", "vectorize_scenes", "SCENE_STREAM",
           "SPLITS", "NUM_STEPS", "read_scenario"]

SCENE_STREAM = 21
SPLITS = {"train": 0, "val": 1, "test": 2}
NUM_STEPS = 50  # Argoverse 1 sequences: 20 observed + 30 future at 10 Hz
LANE_WIDTH = 3.5
ARM_START, ARM_END = 12.0, 60.0
TURN_OF_LANE = ("LEFT", "NONE", "RIGHT")


def _rot(v, deg):
    a = np.deg2rad(deg)
    return np.array([np.cos(a) * v[0] - np.sin(a) * v[1], np.sin(a) * v[0] + np.cos(a) * v[1]])


def _line(p, q, n):
    t = np.linspace(0, 1, n)[:, None]
    return p[None] * (1 - t) + q[None] * t


def _bezier(p0, d0, p2, d2, n):
    """Quadratic Bezier from p0 (heading d0) to p2 (heading d2); control point where the two
    tangent lines meet."""
    a = np.stack([d0, -d2], axis=1)
    t = np.linalg.solve(a, p2 - p0)
    c = p0 + t[0] * d0
    s = np.linspace(0, 1, n)[:, None]
    return (1 - s) ** 2 * p0 + 2 * (1 - s) * s * c + s ** 2 * p2


def intersection_lanes(rng: np.random.Generator, id0: int) -> tuple[list[Lane], dict]:
    """Lanes of one intersection centred at 0 and `routes[(arm, lane)] = [lane ids]`."""
    angles = [90.0 * a + rng.uniform(-12, 12) for a in range(4)]
    u = [np.array([np.cos(np.deg2rad(t)), np.sin(np.deg2rad(t))]) for t in angles]
    n = [_rot(v, 90) for v in u]
    lanes: dict[str, Lane] = {}
    nid = iter(range(id0, id0 + 1000))
    inbound, outbound = {}, {}
    control = [bool(rng.random() < 0.5) for _ in range(4)]
    for a in range(4):
        for k in range(3):
            off = (LANE_WIDTH / 2 + k * LANE_WIDTH) * n[a]
            lid = str(next(nid))
            lanes[lid] = Lane(lid, _line(ARM_END * u[a] + off, ARM_START * u[a] + off, 13),
                              traffic_control=control[a])
            inbound[a, k] = lid
        lid = str(next(nid))
        off = -LANE_WIDTH / 2 * n[a]
        lanes[lid] = Lane(lid, _line(ARM_START * u[a] + off, ARM_END * u[a] + off, 13))
        outbound[a] = lid
    for a in range(4):
        for k in range(3):
            left, right = (inbound.get((a, k - 1)), inbound.get((a, k + 1)))
            # travelling inwards, the inner lane (k - 1) is on the left
            lanes[inbound[a, k]].left_neighbor, lanes[inbound[a, k]].right_neighbor = left, right
    routes = {}
    for a in range(4):
        for k, (turn, b) in enumerate((("LEFT", (a + 3) % 4), ("NONE", (a + 2) % 4), ("RIGHT", (a + 1) % 4))):
            src, dst = lanes[inbound[a, k]], lanes[outbound[b]]
            p0, p2 = src.xy[-1], dst.xy[0]
            xy = _line(p0, p2, 10) if turn == "NONE" else _bezier(p0, -u[a], p2, u[b], 12)
            lid = str(next(nid))
            lanes[lid] = Lane(lid, xy, is_intersection=True, turn=turn, traffic_control=src.traffic_control,
                              predecessors=(src.lane_id,), successors=(dst.lane_id,))
            src.successors += (lid,)
            dst.predecessors += (lid,)
            routes[a, k] = [src.lane_id, lid, dst.lane_id]
    return list(lanes.values()), routes


def _route_xy(lanes: dict, ids: list[str]) -> np.ndarray:
    pts = [lanes[ids[0]].xy] + [lanes[i].xy[1:] for i in ids[1:]]
    return np.concatenate(pts)


def _drive(rng, route_xy: np.ndarray, s_at: float, at_step: int, num_steps: int, speed_range=(4.0, 12.0),
           lane_change: float = 0.0, change: tuple[np.ndarray, float] | None = None,
           noise: float = 1.0) -> tuple[np.ndarray, bool]:
    """Positions of an agent along `route_xy` at arc length `s_at` at step `at_step`.

    Args:
      rng: the scene's generator.
      route_xy: the route's points `[n, 2]` in driving order.
      s_at, at_step: the agent's arc length at step `at_step`.
      num_steps: steps to generate at 10 Hz.
      speed_range: bounds of the uniform initial speed (m/s).
      lane_change: probability of moving over to the neighbour route of `change`. Only when
        it is > 0 (and `change` is given) are the extra random numbers drawn, so a scene
        generated with 0 is the scene generated before lane changes existed.
      change: `(neighbour route [m, 2], shared)`: the route of the neighbour lane, parallel to
        `route_xy` with the same arc length over the first `shared` metres (the inbound lanes).
      noise: scale of the lateral drift and of the position noise (1: the procedural scenes;
        0: the noise-free path, same random stream).

    Returns:
      `(xy [num_steps, 2], changed)`: positions and whether the agent changed lane.
    """
    seg = np.linalg.norm(np.diff(route_xy, axis=0), axis=1)
    s_nodes = np.concatenate([[0.0], np.cumsum(seg)])
    v0, acc = rng.uniform(*speed_range), rng.uniform(-1.5, 1.0)
    t = (np.arange(num_steps) - at_step) * 0.1
    v = np.maximum(v0 + acc * t, 0.0) if acc < 0 else v0 + acc * t
    # arc length: integral of the (clipped) speed, anchored at step at_step
    ds = np.concatenate([[0.0], 0.5 * (v[1:] + v[:-1]) * 0.1])
    s_raw = np.cumsum(ds)
    s_raw = s_raw - s_raw[at_step] + s_at
    s = np.clip(s_raw, 0.0, s_nodes[-1])
    x, y = np.interp(s, s_nodes, route_xy[:, 0]), np.interp(s, s_nodes, route_xy[:, 1])
    changed = False
    if lane_change > 0 and change is not None:
        go, duration, where = rng.random() < lane_change, rng.uniform(2.0, 4.0), rng.random()
        other, shared = change
        n = int(round(duration / 0.1))
        # start steps whose whole blend lies on the shared (parallel) stretch, moving, in the scene
        ok = (s_raw >= 0.0) & (s_raw <= shared) & (v >= 1.0)
        starts = [i for i in range(num_steps - n) if ok[i:i + n + 1].all()]
        if go and starts:
            w = _min_jerk((np.arange(num_steps) - starts[int(where * len(starts))]) / n)
            o_seg = np.linalg.norm(np.diff(other, axis=0), axis=1)
            o_nodes = np.concatenate([[0.0], np.cumsum(o_seg)])
            so = np.clip(s_raw, 0.0, o_nodes[-1])
            x = (1 - w) * x + w * np.interp(so, o_nodes, other[:, 0])
            y = (1 - w) * y + w * np.interp(so, o_nodes, other[:, 1])
            changed = True
    tang = np.stack([np.gradient(x), np.gradient(y)], 1)
    tang /= np.maximum(np.linalg.norm(tang, axis=1, keepdims=True), 1e-9)
    normal = np.stack([-tang[:, 1], tang[:, 0]], 1)
    lateral = np.clip(np.cumsum(rng.normal(0, 0.03 * noise, num_steps)), -0.4, 0.4)
    xy = np.stack([x, y], 1) + lateral[:, None] * normal + rng.normal(0, 0.03 * noise, (num_steps, 2))
    return xy, changed


def _min_jerk(u: np.ndarray) -> np.ndarray:
    """The minimum-jerk blend 10 u^3 - 15 u^4 + 6 u^5 of `u` clipped to [0, 1] (zero velocity
    and acceleration at both ends)."""
    u = np.clip(u, 0.0, 1.0)
    return u ** 3 * (10 - 15 * u + 6 * u ** 2)


def _neighbour_route(rng, by_id: dict, routes: dict, a: int, k: int) -> tuple[np.ndarray, float] | None:
    """`_drive`'s `change` for an agent on route `(a, k)`: the route of its inbound lane's left or
    right neighbour (one at random when it has both), or None without a neighbour."""
    src = by_id[routes[a, k][0]]
    options = [nb for nb in (src.left_neighbor, src.right_neighbor) if nb is not None]
    if not options:
        return None
    nb = options[int(rng.integers(len(options)))]
    kk = next(j for (b, j), ids in routes.items() if b == a and ids[0] == nb)
    shared = float(np.linalg.norm(np.diff(src.xy, axis=0), axis=1).sum())
    return _route_xy(by_id, routes[a, kk]), shared


def _track_id(rng) -> str:
    return str(uuid.UUID(int=int(rng.integers(0, 2 ** 62)) << 64 | int(rng.integers(0, 2 ** 62)), version=4))


def procedural_scene(rng: np.random.Generator, index: int, turn_fraction: float = 0.6,
                     num_obs: int = 20, num_steps: int = NUM_STEPS, lane_change: float = 0.0) -> Scene:
    """One intersection scene in world coordinates (see module docstring).

    Args:
      rng: the scene's generator.
      index: the scene's index (its id, lane ids and place in the "city").
      turn_fraction: probability that the target starts on a turn-only lane.
      num_obs, num_steps: observed and total steps at 10 Hz.
      lane_change: probability that an agent (the target or another) changes to a neighbour
        lane; 0 draws no extra random numbers (the scenes from before lane changes existed).

    Returns:
      The scene, target first among its tracks.
    """
    lanes, routes = intersection_lanes(rng, id0=1000 * (index + 1))
    by_id = {ln.lane_id: ln for ln in lanes}
    # place the scene somewhere in a "city": rotate and shift every coordinate
    rot, shift = rng.uniform(0, 360), np.array([1000.0 * (index % 100), 1000.0 * (index // 100)])
    c, s_ = np.cos(np.deg2rad(rot)), np.sin(np.deg2rad(rot))
    for ln in lanes:
        ln.xy = ln.xy @ np.array([[c, s_], [-s_, c]]) + shift
    last = num_obs - 1
    a = int(rng.integers(4))
    k = (0 if rng.random() < 0.5 else 2) if rng.random() < turn_fraction else 1
    route = _route_xy(by_id, routes[a, k])
    entry = ARM_END - ARM_START
    s_target = entry - rng.uniform(-4.0, 18.0)
    change = _neighbour_route(rng, by_id, routes, a, k) if lane_change > 0 else None
    target, _ = _drive(rng, route, s_target, last, num_steps, lane_change=lane_change, change=change)
    tracks = [Track(_track_id(rng), "AGENT", np.arange(num_steps), target)]
    for j in range(int(rng.integers(3, 9))):
        b, kk = int(rng.integers(4)), int(rng.integers(3))
        r = _route_xy(by_id, routes[b, kk])
        s_len = np.linalg.norm(np.diff(r, axis=0), axis=1).sum()
        s_at = rng.uniform(0, s_len * 0.8)
        change = _neighbour_route(rng, by_id, routes, b, kk) if lane_change > 0 else None
        xy, _ = _drive(rng, r, s_at, last, num_steps, lane_change=lane_change, change=change)
        lo = int(rng.integers(0, 10)) if rng.random() < 0.3 else 0
        hi = num_steps - (int(rng.integers(0, 20)) if rng.random() < 0.3 else 0)
        steps = np.arange(lo, hi)
        tracks.append(Track(_track_id(rng), "AV" if j == 0 else "OTHERS", steps, xy[lo:hi]))
    return Scene(str(index), lanes, tracks, tracks[0].track_id, city="PIT")


def procedural_scenes(seed: int, split: str, n: int, turn_fraction: float = 0.6, num_obs: int = 20,
                      num_steps: int = NUM_STEPS, offset: int = 0, lane_change: float = 0.0) -> list[Scene]:
    """`n` scenes of `split`; scene i comes from `default_rng([seed, SCENE_STREAM, split, i])`
    (`procedural_scene`'s arguments otherwise)."""
    base = {"train": 0, "val": 1_000_000, "test": 2_000_000}[split]
    return [procedural_scene(np.random.default_rng([seed, SCENE_STREAM, SPLITS[split], i]), base + offset + i,
                             turn_fraction, num_obs, num_steps, lane_change) for i in range(n)]


def vectorize_scenes(scenes: list[Scene], config) -> dict:
    """`polylines.stack` of `polylines.vectorize` over `scenes` with `config.scene`'s budgets;
    also `turn [N]` (the target's manoeuvre where known: 0 none, 1 left, 2 right, -1 unknown)."""
    s = config.scene
    kw = dict(num_obs=s.num_obs, num_future=s.num_future, max_vectors=s.max_vectors,
              max_polylines=s.max_polylines, max_agents=s.max_agents, map_radius=s.map_radius,
              lane_spacing=s.lane_spacing, max_targets=s.max_targets)
    out = polylines.stack([polylines.vectorize(sc, **kw) for sc in scenes])
    out["turn"] = np.array([_turn_of(sc) for sc in scenes], np.int32)
    return out


def _turn_of(scene: Scene) -> int:
    """The target's manoeuvre from the heading change over its whole track (+-30 degrees)."""
    tr = scene.track(scene.target_id)
    if len(tr.xy) < 10:
        return -1
    d0, d1 = tr.xy[5] - tr.xy[0], tr.xy[-1] - tr.xy[-6]
    if min(np.hypot(*d0), np.hypot(*d1)) < 0.2:
        return -1
    ang = np.rad2deg(np.arctan2(d0[0] * d1[1] - d0[1] * d1[0], d0 @ d1))
    return 1 if ang > 30 else 2 if ang < -30 else 0


@functools.lru_cache(maxsize=8)
def _cached(config_json: str, split: str) -> dict:
    from jaxlab.vectornet.configs import VectorNetConfig

    config = config_lib.from_dict(VectorNetConfig, __import__("json").loads(config_json))
    if config.data_dir:
        from jaxlab.vectornet import argoverse

        scenes = argoverse.load_split(pathlib.Path(config.data_dir), split, config.format,
                                      num_obs=config.scene.num_obs, num_future=config.scene.num_future,
                                      radius=config.scene.map_radius)
    else:
        n = {"train": config.num_train, "val": config.num_val, "test": config.num_test}[split]
        scenes = procedural_scenes(config.seed, split, n, config.turn_fraction, config.scene.num_obs,
                                   config.scene.num_obs + config.scene.num_future, lane_change=config.lane_change)
    return vectorize_scenes(scenes, config)


def split_arrays(config, split: str) -> dict:
    """The vectorised layout of `split` ("train", "val", "test"), cached per config."""
    keep = {"seed": config.seed, "data_dir": config.data_dir, "format": config.format,
            "num_train": config.num_train, "num_val": config.num_val, "num_test": config.num_test,
            "turn_fraction": config.turn_fraction, "lane_change": config.lane_change,
            "scene": config_lib.to_dict(config.scene)}
    from jaxlab.vectornet.configs import VectorNetConfig

    base = config_lib.to_dict(VectorNetConfig())
    base.update(keep)
    return _cached(__import__("json").dumps(base, sort_keys=True), split)


def read_scenario(config, path: str | pathlib.Path):
    """The `polylines.Scene` of one scenario file for a run of `config` (see `run.predict`).

    Raises:
      argoverse.ArgoverseFormatError: naming the file, when it is missing, of another kind,
        malformed, or without its map.
    """
    from jaxlab.vectornet import argoverse

    path = pathlib.Path(path)
    s = config.scene
    if not path.is_file():
        raise argoverse.ArgoverseFormatError(f"{path}: no such scenario file")
    if path.suffix == ".parquet":
        tracks, focal = argoverse.read_av2_scenario(path, s.num_obs)
        sid = path.stem.removeprefix("scenario_")
        own = path.parent / f"log_map_archive_{sid}.json"
        found = sorted(path.parent.glob("log_map_archive_*.json"))
        if not own.is_file() and len(found) != 1:
            raise argoverse.ArgoverseFormatError(
                f"{path}: needs its map {own.name} (or a single log_map_archive_*.json) in {path.parent}; "
                f"found {len(found)}")
        return Scene(sid, argoverse.read_av2_map(own if own.is_file() else found[0]), tracks, focal)
    if path.suffix == ".csv":
        tracks, target, city = argoverse.read_av1_csv(path, s.num_obs, s.num_future)
        name = argoverse.AV1_MAP_FILES[city]
        roots = ([pathlib.Path(config.data_dir)] if config.data_dir else []) + list(path.resolve().parents)
        maps = [r / "map_files" / name for r in roots if (r / "map_files" / name).is_file()]
        if not maps:
            where = f"{config.data_dir}/map_files" if config.data_dir else "the run's data_dir (none: procedural)"
            raise argoverse.ArgoverseFormatError(
                f"{path}: city {city} needs the map {name}, found neither under {where} nor in a map_files "
                "folder above the file")
        tr = next(t for t in tracks if t.track_id == target)
        last = tr.xy[tr.steps == s.num_obs - 1]
        if not len(last):
            raise argoverse.ArgoverseFormatError(f"{path}: the AGENT track has no row at the {s.num_obs}th timestamp")
        lanes = argoverse._LaneIndex(argoverse.read_av1_map(maps[0])).near(last[0], s.map_radius)
        return Scene(path.stem, lanes, tracks, target, city)
    raise argoverse.ArgoverseFormatError(
        f"{path}: not a scenario file (expected an AV2 scenario_<id>.parquet or an AV1 <id>.csv)")
