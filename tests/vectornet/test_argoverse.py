import csv
import json

import numpy as np
import pytest

from jaxlab.vectornet import argoverse as av
from jaxlab.vectornet import configs, data


@pytest.fixture(scope="module")
def av1_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("av1")
    scenes = data.procedural_scenes(0, "train", 3, 0.6, 20, 50)
    av.write_dataset({"train": scenes, "val": data.procedural_scenes(0, "val", 1, 0.6, 20, 50)}, root, "av1")
    return root, scenes


@pytest.fixture(scope="module")
def av2_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("av2")
    scenes = data.procedural_scenes(0, "train", 2, 0.6, 50, 110)
    av.write_dataset({"train": scenes}, root, "av2")
    return root, scenes


def test_av1_files_have_the_published_layout(av1_root):
    root, scenes = av1_root
    path = root / "train" / "data" / f"{scenes[0].scene_id}.csv"
    rows = list(csv.reader(open(path)))
    assert rows[0] == ["TIMESTAMP", "TRACK_ID", "OBJECT_TYPE", "X", "Y", "CITY_NAME"]
    ts = [float(r[0]) for r in rows[1:]]
    assert ts == sorted(ts) and len(set(ts)) == 50
    assert sum(r[2] == "AGENT" for r in rows[1:]) == 50 and {r[5] for r in rows[1:]} == {"PIT"}
    xml = (root / "map_files" / "pruned_argoverse_PIT_10314_vector_map.xml").read_text()
    assert xml.index("<node") < xml.index("<way") and 'k="turn_direction" v="LEFT"' in xml


def test_av1_round_trip_counts_ids_timestamps_coordinates(av1_root):
    root, scenes = av1_root
    back = av.load_split(root, "train", "av1", radius=200.0)
    assert [s.scene_id for s in back] == [s.scene_id for s in scenes]
    for sc, got in zip(scenes, back):
        assert got.target_id == sc.target_id
        ref = {t.track_id: t for t in sc.tracks}
        assert set(ref) == {t.track_id for t in got.tracks}
        for t in got.tracks:
            np.testing.assert_array_equal(t.steps, ref[t.track_id].steps)
            np.testing.assert_allclose(t.xy, ref[t.track_id].xy, atol=1e-6)
        lanes = {ln.lane_id: ln for ln in got.lanes}
        assert set(lanes) == {ln.lane_id for ln in sc.lanes}  # other scenes are 1 km away
        for ln in sc.lanes:
            g = lanes[ln.lane_id]
            np.testing.assert_allclose(g.xy, ln.xy, atol=1e-6)
            assert (g.turn, g.is_intersection, g.successors, g.left_neighbor) == (
                ln.turn, ln.is_intersection, ln.successors, ln.left_neighbor)
    c = configs.get_config("smoke")
    np.testing.assert_allclose(data.vectorize_scenes(back, c)["vectors"], data.vectorize_scenes(scenes, c)["vectors"],
                               atol=1e-4)


def test_av2_round_trip_and_centerline_from_boundaries(av2_root):
    root, scenes = av2_root
    import pyarrow.parquet as pq

    sid = scenes[0].scene_id
    table = pq.read_table(root / "train" / sid / f"scenario_{sid}.parquet")
    assert set(av.AV2_COLUMNS) <= set(table.column_names)
    assert str(table.schema.field("start_timestamp").type) == "int64"
    assert table.column("num_timestamps").to_pylist()[0] == 110
    back = av.load_split(root, "train", "av2", num_obs=20)
    for sc, got in zip(scenes, back):
        ref = {("AV" if t.object_type == "AV" else t.track_id): t for t in sc.tracks}
        assert got.target_id == sc.target_id and set(ref) == {t.track_id for t in got.tracks}
        for t in got.tracks:
            r = ref[t.track_id]
            keep = r.steps >= 30  # AV2 step 49 (last observed) becomes step 19
            np.testing.assert_array_equal(t.steps, r.steps[keep] - 30)
            np.testing.assert_allclose(t.xy, r.xy[keep], atol=1e-9)
        lanes = {ln.lane_id: ln for ln in got.lanes}
        for ln in sc.lanes:
            g = lanes[ln.lane_id]
            assert len(g.xy) == 10 and g.is_intersection == ln.is_intersection
            if not ln.is_intersection or ln.turn == "NONE":  # straight: the centreline is exact
                t = np.linspace(0, 1, 10)[:, None]
                np.testing.assert_allclose(g.xy, ln.xy[0] * (1 - t) + ln.xy[-1] * t, atol=1e-6)


def test_interp_arc_and_midpoint_by_hand():
    left = np.array([[0.0, 1.0], [9.0, 1.0]])
    right = np.array([[0.0, -1.0], [3.0, -1.0], [9.0, -1.0]])
    np.testing.assert_allclose(av.lane_centerline(left, right, 4), [[0, 0], [3, 0], [6, 0], [9, 0]])
    bend = np.array([[0.0, 0.0], [2.0, 0.0], [2.0, 2.0]])
    np.testing.assert_allclose(av.interp_arc(3, bend), [[0, 0], [2, 0], [2, 2]])
    np.testing.assert_allclose(av.interp_arc(5, bend)[1], [1, 0])


def _csv(path, rows):
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)


def _good_rows():
    hdr = list(av.AV1_COLUMNS)
    rows = [hdr]
    for s in range(50):
        rows.append([f"{315969904.0 + 0.1 * s:.7f}", "a", "AGENT", f"{s:.1f}", "0.0", "PIT"])
    return rows


@pytest.mark.parametrize("edit, expect", [
    (lambda r: [[c for i, c in enumerate(x) if i != 3] for x in r], "missing column X"),
    (lambda r: r[:5] + [r[5][:3] + ["abc"] + r[5][4:]] + r[6:], "line 6, column X: expected a number"),
    (lambda r: r[:5] + [r[5][:2] + ["CAR"] + r[5][3:]] + r[6:], "line 6, column OBJECT_TYPE"),
    (lambda r: r[:5] + [r[4]] + r[5:], "line 6, column TIMESTAMP: duplicated timestamp"),
    (lambda r: r[:4] + [r[5], r[4]] + r[6:], "line 6, column TIMESTAMP: rows are not sorted"),
    (lambda r: r[:30], "29 distinct timestamps"),
    (lambda r: [r[0]] + [x[:2] + ["OTHERS"] + x[3:] for x in r[1:]], "exactly one AGENT"),
])
def test_av1_csv_errors_name_line_and_column(tmp_path, edit, expect):
    path = tmp_path / "1.csv"
    _csv(path, _good_rows())
    assert len(av.read_av1_csv(path)[0][0].steps) == 50
    _csv(path, edit(_good_rows()))
    with pytest.raises(av.ArgoverseFormatError, match=expect) as e:
        av.read_av1_csv(path)
    assert str(path) in str(e.value)


def test_av1_map_errors(tmp_path):
    path = tmp_path / "m.xml"
    good = ('<?xml version="1.0"?><ArgoverseVectorMap><node id="1" x="0" y="0"/><node id="2" x="1" y="0"/>'
            '<way lane_id="7"><tag k="has_traffic_control" v="False"/><tag k="turn_direction" v="NONE"/>'
            '<tag k="is_intersection" v="False"/><tag k="l_neighbor_id" v="None"/><tag k="r_neighbor_id" v="None"/>'
            '<nd ref="1"/><nd ref="2"/><tag k="successor" v="8"/></way></ArgoverseVectorMap>')
    path.write_text(good)
    (lane,) = av.read_av1_map(path)
    assert lane.lane_id == "7" and lane.successors == ("8",) and lane.left_neighbor is None
    for bad, expect in [(good.replace('ref="2"', 'ref="3"'), "lane_id='7'.*nd ref='3'.*not defined"),
                        (good.replace('v="False"/><tag k="turn', 'v="no"/><tag k="turn'), "has_traffic_control"),
                        (good.replace('v="NONE"', 'v="UP"'), "turn_direction"),
                        (good.replace('x="1"', 'x="east"'), "node id='2'"),
                        (good[:-10], "not well-formed")]:
        path.write_text(bad)
        with pytest.raises(av.ArgoverseFormatError, match=expect):
            av.read_av1_map(path)


def _rewrite(path, fn):
    import pyarrow.parquet as pq

    table = fn(pq.read_table(path))
    pq.write_table(table, path)


def test_av2_errors_name_column_and_row(av2_root, tmp_path):
    import shutil

    import pyarrow as pa

    root, scenes = av2_root
    sid = scenes[0].scene_id
    src = root / "train" / sid / f"scenario_{sid}.parquet"

    def case(fn, expect):
        path = tmp_path / f"scenario_{sid}.parquet"
        shutil.copy(src, path)
        _rewrite(path, fn)
        with pytest.raises(av.ArgoverseFormatError, match=expect) as e:
            av.read_av2_scenario(path)
        assert str(path) in str(e.value)

    case(lambda t: t.drop_columns(["heading"]), "missing column 'heading'")
    case(lambda t: t.set_column(t.column_names.index("timestep"), "timestep",
                                pa.array([float(x) for x in t.column("timestep").to_pylist()])),
         "column 'timestep': expected int64, got double")
    dup = lambda t: pa.concat_tables([t.slice(0, 1), t.slice(0, 1), t.slice(1)])
    case(dup, "row 1, column 'timestep': duplicated timestep")
    swap = lambda t: pa.concat_tables([t.slice(1, 1), t.slice(0, 1), t.slice(2)])
    case(swap, "row 1, column 'timestep': unsorted timestep")
    case(lambda t: t.set_column(t.column_names.index("object_type"), "object_type",
                                pa.array(["car"] * t.num_rows)), "row 0, column 'object_type'")
    case(lambda t: t.set_column(t.column_names.index("focal_track_id"), "focal_track_id",
                                pa.array(["nobody"] * t.num_rows)), "focal_track_id.*'nobody' has no rows")


def test_av2_map_errors(av2_root, tmp_path):
    root, scenes = av2_root
    sid = scenes[0].scene_id
    doc = json.loads((root / "train" / sid / f"log_map_archive_{sid}.json").read_text())
    key = next(iter(doc["lane_segments"]))
    assert doc["lane_segments"][key]["id"] == int(key) and "centerline" not in doc["lane_segments"][key]
    del doc["lane_segments"][key]["left_lane_boundary"]
    path = tmp_path / "m.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(av.ArgoverseFormatError, match=f"lane_segments\\['{key}'\\], field left_lane_boundary"):
        av.read_av2_map(path)
    path.write_text("{")
    with pytest.raises(av.ArgoverseFormatError, match="not valid JSON"):
        av.read_av2_map(path)
