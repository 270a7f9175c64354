"""Argoverse 1 and 2 forecasting files: readers that validate, and writers of the same layout.

Argoverse 1 (argoverse-api), under a root folder:

    <split>/data/<sequence id>.csv      TIMESTAMP,TRACK_ID,OBJECT_TYPE,X,Y,CITY_NAME; one row per
                                        (track, timestamp), sorted by TIMESTAMP (seconds);
                                        OBJECT_TYPE in {AV, AGENT, OTHERS}; CITY_NAME in {PIT, MIA}
    map_files/pruned_argoverse_{PIT_10314|MIA_10316}_vector_map.xml
                                        <node id x y/> then <way lane_id> with <tag k v> for
                                        has_traffic_control, turn_direction, is_intersection,
                                        l_neighbor_id, r_neighbor_id, predecessor, successor and
                                        ordered <nd ref> centreline nodes

Argoverse 2 (av2 0.3.6), under a root folder:

    <split>/<scenario id>/scenario_<scenario id>.parquet     one row per track-timestep
    <split>/<scenario id>/log_map_archive_<scenario id>.json lane_segments with left/right
                                        boundaries (no centreline: it is derived as av2's
                                        `get_lane_segment_centerline` does, both boundaries
                                        resampled to 10 points by arc length and averaged)

Both become `polylines.Scene`s whose step `num_obs - 1` is the last observed one (AV1: the
20th timestamp; AV2: the focal track's last `observed` timestep), so the same vectorisation
serves both. A malformed file raises `ArgoverseFormatError` naming the file and the
line/row/element and field.
"""

from __future__ import annotations

import csv
import json
import math
import pathlib
import xml.etree.ElementTree as ET

import numpy as np

from jaxlab.core.errors import DataFormatError
from jaxlab.vectornet.polylines import Lane, Scene, Track

__all__ = ["ArgoverseFormatError", "AV1_COLUMNS", "AV2_COLUMNS", "AV1_MAP_FILES", "read_av1_csv", "read_av1_map",
           "write_av1_csv", "write_av1_map", "read_av2_scenario", "read_av2_map", "write_av2_scenario",
           "write_av2_map", "interp_arc", "lane_centerline", "write_dataset", "load_split"]

AV1_COLUMNS = ("TIMESTAMP", "TRACK_ID", "OBJECT_TYPE", "X", "Y", "CITY_NAME")
AV1_TYPES = ("AV", "AGENT", "OTHERS")
AV1_CITIES = ("PIT", "MIA")
AV1_MAP_FILES = {"PIT": "pruned_argoverse_PIT_10314_vector_map.xml", "MIA": "pruned_argoverse_MIA_10316_vector_map.xml"}
AV1_TURNS = ("RIGHT", "LEFT", "NONE")
AV2_COLUMNS = {  # column -> arrow type name
    "observed": "bool", "track_id": "string", "object_type": "string", "object_category": "int64",
    "timestep": "int64", "position_x": "double", "position_y": "double", "heading": "double",
    "velocity_x": "double", "velocity_y": "double", "scenario_id": "string", "start_timestamp": "int64",
    "end_timestamp": "int64", "num_timestamps": "int64", "focal_track_id": "string", "city": "string"}
AV2_TYPES = ("vehicle", "pedestrian", "motorcyclist", "cyclist", "bus", "static", "background", "construction",
             "riderless_bicycle", "unknown")
AV2_OBSERVED, AV2_STEPS = 50, 110
AV1_T0 = 315_969_904.0  # seconds; AV1 timestamps are GPS-epoch seconds of this magnitude
AV2_T0 = 315_969_904_000_000_000  # nanoseconds
LANE_HALF_WIDTH = 1.75


class ArgoverseFormatError(DataFormatError):
    """An Argoverse file does not hold what its format promises (names file and field)."""


# ----------------------------------------------------------------------------- Argoverse 1


def write_av1_csv(scene: Scene, path: pathlib.Path, t0: float = AV1_T0) -> None:
    """One sequence CSV: rows sorted by timestamp, then by track (AGENT typed by the target)."""
    rows = []
    for tr in scene.tracks:
        typ = "AGENT" if tr.track_id == scene.target_id else tr.object_type
        for s, (x, y) in zip(tr.steps, tr.xy):
            rows.append((int(s), f"{t0 + 0.1 * int(s):.7f}", tr.track_id, typ, f"{x:.6f}", f"{y:.6f}", scene.city))
    rows.sort(key=lambda r: r[0])
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(AV1_COLUMNS)
        w.writerows(r[1:] for r in rows)


def read_av1_csv(path: str | pathlib.Path, num_obs: int = 20, num_future: int = 30) -> tuple[list[Track], str, str]:
    """`(tracks, target track id, city)` of one AV1 sequence; steps count 0.1 s from the first
    timestamp. A training/validation file has `num_obs + num_future` distinct timestamps, a test
    file `num_obs`."""
    path = pathlib.Path(path)
    err = lambda where, msg: ArgoverseFormatError(f"{path}: {where}: {msg}")
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise err("line 1", f"empty file; expected the header {','.join(AV1_COLUMNS)}")
        header = [h.strip() for h in header]
        missing = [c for c in AV1_COLUMNS if c not in header]
        if missing:
            raise err("line 1", f"missing column {missing[0]} (header must hold {','.join(AV1_COLUMNS)})")
        col = {c: header.index(c) for c in AV1_COLUMNS}
        raw = []
        for line, row in enumerate(reader, start=2):
            if len(row) != len(header):
                raise err(f"line {line}", f"{len(row)} fields, expected {len(header)}")
            vals = {}
            for c in ("TIMESTAMP", "X", "Y"):
                try:
                    vals[c] = float(row[col[c]])
                except ValueError:
                    raise err(f"line {line}, column {c}", f"expected a number, got {row[col[c]]!r}") from None
                if not math.isfinite(vals[c]):
                    raise err(f"line {line}, column {c}", f"expected a finite number, got {row[col[c]]!r}")
            typ, city = row[col["OBJECT_TYPE"]], row[col["CITY_NAME"]]
            if typ not in AV1_TYPES:
                raise err(f"line {line}, column OBJECT_TYPE", f"expected one of {AV1_TYPES}, got {typ!r}")
            if city not in AV1_CITIES:
                raise err(f"line {line}, column CITY_NAME", f"expected one of {AV1_CITIES}, got {city!r}")
            if raw and vals["TIMESTAMP"] < raw[-1][1]:
                raise err(f"line {line}, column TIMESTAMP", "rows are not sorted by TIMESTAMP "
                          f"({vals['TIMESTAMP']!r} after {raw[-1][1]!r})")
            raw.append((line, vals["TIMESTAMP"], row[col["TRACK_ID"]], typ, vals["X"], vals["Y"], city))
    if not raw:
        raise err("line 2", "no rows after the header")
    cities = {r[6] for r in raw}
    if len(cities) > 1:
        raise err("column CITY_NAME", f"one city per sequence expected, got {sorted(cities)}")
    t0 = raw[0][1]
    tracks: dict[str, dict] = {}
    for line, ts, tid, typ, x, y, _ in raw:
        step = round((ts - t0) / 0.1)
        if abs(ts - t0 - 0.1 * step) > 0.02:
            raise err(f"line {line}, column TIMESTAMP", f"{ts!r} is not on the 10 Hz grid from {t0!r}")
        t = tracks.setdefault(tid, {"type": typ, "steps": [], "xy": [], "lines": []})
        if t["type"] != typ:
            raise err(f"line {line}, column OBJECT_TYPE", f"track {tid} changes type from {t['type']} to {typ}")
        if t["steps"] and step == t["steps"][-1]:
            raise err(f"line {line}, column TIMESTAMP", f"duplicated timestamp {ts!r} for track {tid} "
                      f"(also on line {t['lines'][-1]})")
        t["steps"].append(step)
        t["xy"].append((x, y))
        t["lines"].append(line)
    distinct = len({r[1] for r in raw})
    if distinct not in (num_obs, num_obs + num_future):
        raise err("column TIMESTAMP", f"{distinct} distinct timestamps; expected {num_obs + num_future} "
                  f"(training/validation) or {num_obs} (test)")
    agents = [tid for tid, t in tracks.items() if t["type"] == "AGENT"]
    if len(agents) != 1:
        raise err("column OBJECT_TYPE", f"expected exactly one AGENT track, got {len(agents)}")
    out = [Track(tid, t["type"], np.asarray(t["steps"], np.int64), np.asarray(t["xy"], np.float64))
           for tid, t in tracks.items()]
    return out, agents[0], cities.pop()


def write_av1_map(lanes: list[Lane], path: pathlib.Path) -> None:
    """An AV1 vector map XML: every node first, then one way per lane."""
    root = ET.Element("ArgoverseVectorMap")
    node_id = 0
    ways = []
    for ln in lanes:
        refs = []
        for x, y in ln.xy:
            ET.SubElement(root, "node", id=str(node_id), x=f"{x:.6f}", y=f"{y:.6f}")
            refs.append(node_id)
            node_id += 1
        ways.append((ln, refs))
    for ln, refs in ways:
        way = ET.SubElement(root, "way", lane_id=ln.lane_id)
        for k, v in (("has_traffic_control", str(bool(ln.traffic_control))), ("turn_direction", ln.turn),
                     ("is_intersection", str(bool(ln.is_intersection))),
                     ("l_neighbor_id", ln.left_neighbor or "None"), ("r_neighbor_id", ln.right_neighbor or "None")):
            ET.SubElement(way, "tag", k=k, v=v)
        for r in refs:
            ET.SubElement(way, "nd", ref=str(r))
        for p in ln.predecessors:
            ET.SubElement(way, "tag", k="predecessor", v=p)
        for s in ln.successors:
            ET.SubElement(way, "tag", k="successor", v=s)
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.indent(root)
    ET.ElementTree(root).write(path, encoding="UTF-8", xml_declaration=True)


def _bool(v: str, err) -> bool:
    if v not in ("True", "False"):
        raise err(f'expected "True" or "False", got {v!r}')
    return v == "True"


def read_av1_map(path: str | pathlib.Path) -> list[Lane]:
    """Lanes of an AV1 vector map XML (centrelines from the ordered `<nd ref>` nodes)."""
    path = pathlib.Path(path)
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise ArgoverseFormatError(f"{path}: not well-formed XML ({e})") from None
    nodes: dict[str, tuple[float, float]] = {}
    lanes = []
    for i, el in enumerate(root):
        if el.tag == "node":
            nid = el.get("id")
            try:
                nodes[nid] = (float(el.get("x")), float(el.get("y")))
            except (TypeError, ValueError):
                raise ArgoverseFormatError(f"{path}: <node id={nid!r}> (element {i}): attributes x and y must be "
                                           f"numbers, got x={el.get('x')!r} y={el.get('y')!r}") from None
        elif el.tag == "way":
            lid = el.get("lane_id")
            where = f"{path}: <way lane_id={lid!r}>"
            if lid is None:
                raise ArgoverseFormatError(f"{path}: <way> (element {i}) has no lane_id attribute")
            tags: dict[str, list[str]] = {}
            refs = []
            for child in el:
                if child.tag == "tag":
                    tags.setdefault(child.get("k"), []).append(child.get("v"))
                elif child.tag == "nd":
                    ref = child.get("ref")
                    if ref not in nodes:
                        raise ArgoverseFormatError(f"{where}: <nd ref={ref!r}> names a node that is not defined "
                                                   "before it")
                    refs.append(nodes[ref])
            if len(refs) < 2:
                raise ArgoverseFormatError(f"{where}: a centreline needs >= 2 <nd> nodes, got {len(refs)}")

            def tag(k, default=None):
                if k not in tags:
                    if default is None:
                        raise ArgoverseFormatError(f"{where}: missing <tag k={k!r}>")
                    return default
                return tags[k][0]

            def b(k):
                return _bool(tag(k), lambda m: ArgoverseFormatError(f"{where}, tag {k}: {m}"))

            turn = tag("turn_direction")
            if turn not in AV1_TURNS:
                raise ArgoverseFormatError(f"{where}, tag turn_direction: expected one of {AV1_TURNS}, got {turn!r}")
            nb = lambda k: None if tag(k, "None") == "None" else tag(k)
            lanes.append(Lane(lid, np.asarray(refs, np.float64), is_intersection=b("is_intersection"), turn=turn,
                              traffic_control=b("has_traffic_control"), predecessors=tuple(tags.get("predecessor", ())),
                              successors=tuple(tags.get("successor", ())), left_neighbor=nb("l_neighbor_id"),
                              right_neighbor=nb("r_neighbor_id")))
    return lanes


# ----------------------------------------------------------------------------- Argoverse 2


def interp_arc(n: int, points: np.ndarray) -> np.ndarray:
    """`n` points at equal arc length along `points [m, 2|3]`, both ends included (av2's `interp_arc`)."""
    points = np.asarray(points, np.float64)
    s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))])
    t = np.linspace(0.0, s[-1], n)
    return np.stack([np.interp(t, s, points[:, d]) for d in range(points.shape[1])], axis=1)


def lane_centerline(left: np.ndarray, right: np.ndarray, n: int = 10) -> np.ndarray:
    """av2's `get_lane_segment_centerline`: both boundaries resampled to `n` points, averaged."""
    return 0.5 * (interp_arc(n, left) + interp_arc(n, right))


def _boundaries(xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d = np.gradient(xy, axis=0)
    d /= np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-9)
    normal = np.stack([-d[:, 1], d[:, 0]], 1)
    return xy + LANE_HALF_WIDTH * normal, xy - LANE_HALF_WIDTH * normal


def write_av2_map(lanes: list[Lane], path: pathlib.Path) -> None:
    """`log_map_archive_<id>.json` with lane boundaries 1.75 m either side of each centreline."""
    segs = {}
    ids = {ln.lane_id for ln in lanes}
    for ln in lanes:
        left, right = _boundaries(np.asarray(ln.xy))
        pts = lambda a: [{"x": float(x), "y": float(y), "z": 0.0} for x, y in a]
        ref = lambda v: int(v) if v is not None and v in ids else None
        segs[ln.lane_id] = {
            "id": int(ln.lane_id), "is_intersection": bool(ln.is_intersection), "lane_type": "VEHICLE",
            "left_lane_boundary": pts(left), "right_lane_boundary": pts(right),
            "left_lane_mark_type": "DASHED_WHITE", "right_lane_mark_type": "SOLID_WHITE",
            "left_neighbor_id": ref(ln.left_neighbor), "right_neighbor_id": ref(ln.right_neighbor),
            "predecessors": [int(p) for p in ln.predecessors], "successors": [int(s) for s in ln.successors]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"lane_segments": segs, "pedestrian_crossings": {}, "drivable_areas": {}}))


def read_av2_map(path: str | pathlib.Path) -> list[Lane]:
    """Lanes of a `log_map_archive_<id>.json`; centrelines derived from the boundaries."""
    path = pathlib.Path(path)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ArgoverseFormatError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("lane_segments"), dict):
        raise ArgoverseFormatError(f"{path}: field lane_segments: expected an object keyed by lane id")
    lanes = []
    for key, seg in data["lane_segments"].items():
        where = f"{path}: lane_segments[{key!r}]"
        if not isinstance(seg, dict):
            raise ArgoverseFormatError(f"{where}: expected an object")
        bounds = []
        for side in ("left_lane_boundary", "right_lane_boundary"):
            pts = seg.get(side)
            if not isinstance(pts, list) or len(pts) < 2:
                raise ArgoverseFormatError(f"{where}, field {side}: expected a list of >= 2 {{x, y, z}} points")
            try:
                bounds.append(np.array([[float(p["x"]), float(p["y"])] for p in pts]))
            except (KeyError, TypeError, ValueError):
                raise ArgoverseFormatError(f"{where}, field {side}: every point needs numbers x and y") from None
        if "id" in seg and str(seg["id"]) != str(key):
            raise ArgoverseFormatError(f"{where}, field id: {seg['id']!r} differs from its key")
        nb = lambda k: None if seg.get(k) is None else str(seg[k])
        lanes.append(Lane(str(key), lane_centerline(*bounds), is_intersection=bool(seg.get("is_intersection", False)),
                          predecessors=tuple(str(p) for p in seg.get("predecessors", [])),
                          successors=tuple(str(s) for s in seg.get("successors", [])),
                          left_neighbor=nb("left_neighbor_id"), right_neighbor=nb("right_neighbor_id")))
    return lanes


def write_av2_scenario(scene: Scene, path: pathlib.Path, num_obs: int = AV2_OBSERVED) -> None:
    """`scenario_<id>.parquet`: rows per track-timestep; heading and velocity by finite differences."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    num_steps = max(int(t.steps.max()) for t in scene.tracks) + 1
    cols: dict[str, list] = {k: [] for k in AV2_COLUMNS}
    for tr in scene.tracks:
        focal = tr.track_id == scene.target_id
        tid = "AV" if tr.object_type == "AV" else tr.track_id
        vel = np.gradient(tr.xy, axis=0) / 0.1 if len(tr.xy) > 1 else np.zeros_like(tr.xy)
        for s, (x, y), (vx, vy) in zip(tr.steps, tr.xy, vel):
            cols["observed"].append(bool(s < num_obs))
            cols["track_id"].append(tid)
            cols["object_type"].append("vehicle")
            cols["object_category"].append(3 if focal else 2 if tid != "AV" else 1)
            cols["timestep"].append(int(s))
            cols["position_x"].append(float(x))
            cols["position_y"].append(float(y))
            cols["heading"].append(float(np.arctan2(vy, vx)))
            cols["velocity_x"].append(float(vx))
            cols["velocity_y"].append(float(vy))
    n = len(cols["track_id"])
    cols["scenario_id"] = [scene.scene_id] * n
    cols["start_timestamp"] = [AV2_T0] * n
    cols["end_timestamp"] = [AV2_T0 + (num_steps - 1) * 100_000_000] * n
    cols["num_timestamps"] = [num_steps] * n
    cols["focal_track_id"] = [scene.target_id] * n
    cols["city"] = [{"PIT": "pittsburgh", "MIA": "miami"}.get(scene.city, scene.city)] * n
    schema = pa.schema([(k, getattr(pa, "float64" if t == "double" else "bool_" if t == "bool" else t)())
                        for k, t in AV2_COLUMNS.items()])
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(cols, schema=schema), path)


def read_av2_scenario(path: str | pathlib.Path, num_obs: int = 20) -> tuple[list[Track], str]:
    """`(tracks, focal track id)` of a scenario parquet; steps are shifted so that the focal
    track's last observed timestep becomes step `num_obs - 1` (earlier steps are dropped)."""
    import pyarrow.parquet as pq

    path = pathlib.Path(path)
    try:
        table = pq.read_table(path)
    except Exception as e:  # pyarrow raises several types for a broken file
        raise ArgoverseFormatError(f"{path}: not a readable parquet file ({e})") from None
    for name, typ in AV2_COLUMNS.items():
        if name not in table.column_names:
            raise ArgoverseFormatError(f"{path}: missing column {name!r} (expected {typ})")
        got = str(table.schema.field(name).type)
        if got not in (typ, "large_string" if typ == "string" else typ):
            raise ArgoverseFormatError(f"{path}: column {name!r}: expected {typ}, got {got}")
    c = {k: table.column(k).to_pylist() for k in AV2_COLUMNS}
    n = table.num_rows
    if n == 0:
        raise ArgoverseFormatError(f"{path}: no rows")
    for k in ("scenario_id", "focal_track_id", "num_timestamps", "city"):
        if len(set(c[k])) != 1:
            raise ArgoverseFormatError(f"{path}: column {k!r}: one value per scenario expected, got {len(set(c[k]))}")
    sid = c["scenario_id"][0]
    if path.name != f"scenario_{sid}.parquet":
        raise ArgoverseFormatError(f"{path}: column 'scenario_id' is {sid!r}, the file name says otherwise")
    total = c["num_timestamps"][0]
    tracks: dict[str, dict] = {}
    for r in range(n):
        typ, cat, step = c["object_type"][r], c["object_category"][r], c["timestep"][r]
        if typ not in AV2_TYPES:
            raise ArgoverseFormatError(f"{path}: row {r}, column 'object_type': expected one of {AV2_TYPES}, "
                                       f"got {typ!r}")
        if cat not in (0, 1, 2, 3):
            raise ArgoverseFormatError(f"{path}: row {r}, column 'object_category': expected 0-3, got {cat!r}")
        if not 0 <= step < total:
            raise ArgoverseFormatError(f"{path}: row {r}, column 'timestep': {step} outside [0, {total})")
        x, y = c["position_x"][r], c["position_y"][r]
        if x is None or y is None or not (math.isfinite(x) and math.isfinite(y)):
            raise ArgoverseFormatError(f"{path}: row {r}, columns 'position_x/position_y': expected finite numbers")
        t = tracks.setdefault(c["track_id"][r], {"type": typ, "steps": [], "xy": [], "obs": []})
        if t["steps"] and step <= t["steps"][-1]:
            what = "duplicated" if step == t["steps"][-1] else "unsorted"
            raise ArgoverseFormatError(f"{path}: row {r}, column 'timestep': {what} timestep {step} for track "
                                       f"{c['track_id'][r]!r} (after {t['steps'][-1]})")
        t["steps"].append(step)
        t["xy"].append((x, y))
        t["obs"].append(bool(c["observed"][r]))
    focal = c["focal_track_id"][0]
    if focal not in tracks:
        raise ArgoverseFormatError(f"{path}: column 'focal_track_id': track {focal!r} has no rows")
    f = tracks[focal]
    obs_steps = [s for s, o in zip(f["steps"], f["obs"]) if o]
    if not obs_steps:
        raise ArgoverseFormatError(f"{path}: focal track {focal!r} has no observed rows")
    shift = obs_steps[-1] - (num_obs - 1)
    out = []
    for tid, t in tracks.items():
        steps = np.asarray(t["steps"], np.int64) - shift
        keep = steps >= 0
        if keep.any():
            out.append(Track(tid, t["type"], steps[keep], np.asarray(t["xy"], np.float64)[keep]))
    return out, focal


# ----------------------------------------------------------------------------- datasets


def write_dataset(splits: dict[str, list[Scene]], root: str | pathlib.Path, fmt: str) -> pathlib.Path:
    """Writes scenes of each split under `root` in the layout of `fmt` ("av1" or "av2")."""
    root = pathlib.Path(root)
    if fmt == "av1":
        by_city: dict[str, list[Lane]] = {}
        for split, scenes in splits.items():
            for sc in scenes:
                write_av1_csv(sc, root / split / "data" / f"{sc.scene_id}.csv")
                by_city.setdefault(sc.city, []).extend(sc.lanes)
        for city, lanes in by_city.items():
            write_av1_map(lanes, root / "map_files" / AV1_MAP_FILES[city])
    elif fmt == "av2":
        for split, scenes in splits.items():
            for sc in scenes:
                d = root / split / sc.scene_id
                write_av2_scenario(sc, d / f"scenario_{sc.scene_id}.parquet")
                write_av2_map(sc.lanes, d / f"log_map_archive_{sc.scene_id}.json")
    else:
        raise ValueError(f"format must be av1 or av2, got {fmt!r}")
    return root


class _LaneIndex:
    """Lanes of a city map with a k-d tree over their points (radius queries)."""

    def __init__(self, lanes: list[Lane]):
        from scipy.spatial import cKDTree

        self.lanes = lanes
        pts = [ln.xy for ln in lanes]
        self.owner = np.concatenate([np.full(len(p), i) for i, p in enumerate(pts)])
        self.tree = cKDTree(np.concatenate(pts))
        self.reach = max(float(np.max(np.linalg.norm(np.diff(p, axis=0), axis=1))) for p in pts)

    def near(self, xy: np.ndarray, radius: float) -> list[Lane]:
        idx = self.tree.query_ball_point(xy, radius + self.reach)
        return [self.lanes[i] for i in sorted(set(self.owner[idx].tolist()))]


def load_split(root: pathlib.Path, split: str, fmt: str, num_obs: int = 20, num_future: int = 30,
               radius: float = 100.0) -> list[Scene]:
    """Scenes of `root/<split>` in format `fmt`; AV1 scenes get the lanes within `radius` m of
    the target's last observed position from the city map in `root/map_files`."""
    root = pathlib.Path(root)
    folder = root / split
    if not folder.is_dir():
        raise ArgoverseFormatError(f"{folder}: no such folder (expected the {fmt} '{split}' split under {root})")
    scenes = []
    if fmt == "av1":
        files = sorted(folder.rglob("*.csv"))
        maps: dict[str, _LaneIndex] = {}
        for path in files:
            tracks, target, city = read_av1_csv(path, num_obs, num_future)
            if city not in maps:
                mp = root / "map_files" / AV1_MAP_FILES[city]
                if not mp.exists():
                    raise ArgoverseFormatError(f"{path}: city {city} needs the map {mp}, which does not exist")
                maps[city] = _LaneIndex(read_av1_map(mp))
            tr = next(t for t in tracks if t.track_id == target)
            last = tr.xy[tr.steps == num_obs - 1]
            if not len(last):
                raise ArgoverseFormatError(f"{path}: the AGENT track has no row at the {num_obs}th timestamp")
            scenes.append(Scene(path.stem, maps[city].near(last[0], radius), tracks, target, city))
    elif fmt == "av2":
        for d in sorted(p for p in folder.iterdir() if p.is_dir()):
            sid = d.name
            tracks, focal = read_av2_scenario(d / f"scenario_{sid}.parquet", num_obs)
            mp = d / f"log_map_archive_{sid}.json"
            if not mp.exists():
                raise ArgoverseFormatError(f"{d}: missing the map {mp.name}")
            scenes.append(Scene(sid, read_av2_map(mp), tracks, focal))
    else:
        raise ValueError(f"format must be av1 or av2, got {fmt!r}")
    if not scenes:
        raise ArgoverseFormatError(f"{folder}: no {fmt} sequences found")
    return scenes
