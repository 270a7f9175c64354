import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from jaxlab.core.errors import DataFormatError
from jaxlab.video2stylegan import configs, data, faces, metrics


def test_projection_matches_a_hand_worked_camera():
    uv = np.asarray(faces.project(jnp.array([[0.1, 0.2, 4.0], [-0.4, -0.2, 2.0]]), 48.0, 32))
    # u = f x / z + R/2, v = R/2 - f y / z
    np.testing.assert_allclose(uv, [[17.2, 13.6], [6.4, 20.8]], rtol=1e-6)
    ex, ey, ez = np.eye(3)
    np.testing.assert_allclose(faces.rotation(jnp.array([90.0, 0, 0])) @ ex, [0, 0, -1], atol=1e-6)  # yaw
    np.testing.assert_allclose(faces.rotation(jnp.array([0, 90.0, 0])) @ ey, [0, 0, 1], atol=1e-6)  # pitch
    np.testing.assert_allclose(faces.rotation(jnp.array([0, 0, 90.0])) @ ex, [0, 1, 0], atol=1e-6)  # roll
    r = np.asarray(faces.rotation(jnp.array([20.0, -10.0, 5.0])))
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-6)


def test_icosphere_counts_and_orientation():
    v, f = faces.icosphere(2)
    assert v.shape == (162, 3) and f.shape == (320, 3)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-6)
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    assert np.all(np.sum(np.cross(b - a, c - a) * (a + b + c), axis=1) > 0)  # counter-clockwise from outside


def test_renderer_landmarks_project_the_mesh_points_exactly():
    rng = np.random.default_rng(0)
    ident, expr = rng.uniform(-1, 1, 6).astype(np.float32), rng.uniform(0, 1, 4).astype(np.float32)
    pose = np.array([12.0, -7.0, 4.0], np.float32)
    out = faces.render(jnp.asarray(ident), jnp.asarray(expr), jnp.asarray(pose), resolution=32, focal=1.5,
                       distance=4.0)
    mesh = faces.make_mesh(2)
    head = np.asarray(faces.deform(jnp.asarray(mesh.vertices), jnp.asarray(ident), jnp.asarray(expr)))
    y, p, r = np.radians(pose)
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    cam = head @ (rz @ ry @ rx).T + [0, 0, 4.0]
    lm = cam[mesh.landmark_index]
    expect = np.stack([48 * lm[:, 0] / lm[:, 2] + 16, 16 - 48 * lm[:, 1] / lm[:, 2]], -1)
    np.testing.assert_allclose(out["landmarks"], expect, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(out["vertices"], cam[: mesh.num_sphere], rtol=1e-5, atol=1e-5)


def test_frontal_face_is_symmetric_and_framed():
    out = faces.render(jnp.zeros(6), jnp.zeros(4), jnp.zeros(3), resolution=32)
    lm = dict(zip(faces.LANDMARK_NAMES, np.asarray(out["landmarks"])))
    np.testing.assert_allclose(lm["nose_tip"][0], 16.0, atol=1e-4)
    np.testing.assert_allclose(lm["eye_r"][0] + lm["eye_l"][0], 32.0, atol=1e-4)
    assert lm["eye_r"][1] < lm["nose_tip"][1] < lm["mouth_r"][1] < lm["chin"][1]  # v grows downwards
    img = np.asarray(out["image"])
    np.testing.assert_allclose(img[0, 0], faces.BACKGROUND, atol=1e-3)
    assert np.abs(img[16, 16] - faces.BACKGROUND).max() > 0.2
    head = np.abs(img - faces.BACKGROUND).max(-1) > 0.05  # the silhouette is mirror-symmetric (the light is not)
    assert np.mean(head[:, :16] == head[:, 16:][:, ::-1]) > 0.93 and 0.2 < head.mean() < 0.8


def test_videos_are_smooth_and_one_identity():
    fc = configs.get_config("smoke").faces
    ident, expr, pose = faces.video_params(np.random.default_rng(0), 40, fc, np.ones(6, np.float32))
    assert np.all(ident == 1) and np.all((expr >= 0) & (expr <= 1))
    assert np.abs(pose).max(0).tolist() <= [fc.max_yaw, fc.max_pitch, fc.max_roll]
    assert np.abs(np.diff(pose, axis=0)).max() < 0.25 * max(fc.max_yaw, 1)  # no jumps between frames


def _write(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def test_frame_folder_round_trip_and_order(tmp_path):
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    for t in (2, 0, 10):  # unpadded indices sort numerically
        _write(tmp_path / "clip" / f"{t}.png", frames[[2, 0, 10].index(t)])
    got = data.read_videos(tmp_path)
    assert list(got) == ["clip"]
    np.testing.assert_array_equal(got["clip"], frames[[1, 0, 2]])
    data.write_video(tmp_path / "w", frames)
    np.testing.assert_array_equal(data.read_video(tmp_path / "w"), frames)


@pytest.mark.parametrize("case, words", [
    ("mixed", ["1.png", "16x16", "8x8", "one size"]),
    ("text", ["1.png", "not a readable image"]),
    ("empty", ["empty video"]),
    ("name", ["abc.png", "integer index"]),
    ("nonsquare", ["0.png", "square"]),
])
def test_frame_folder_errors_name_the_file(tmp_path, case, words):
    v = tmp_path / "v"
    v.mkdir()
    if case == "mixed":
        _write(v / "0.png", np.zeros((8, 8, 3), np.uint8))
        _write(v / "1.png", np.zeros((16, 16, 3), np.uint8))
    elif case == "text":
        _write(v / "0.png", np.zeros((8, 8, 3), np.uint8))
        (v / "1.png").write_text("not a png")
    elif case == "name":
        _write(v / "abc.png", np.zeros((8, 8, 3), np.uint8))
    elif case == "nonsquare":
        _write(v / "0.png", np.zeros((8, 6, 3), np.uint8))
    with pytest.raises(DataFormatError) as e:
        data.read_video(v)
    for w in words:
        assert w in str(e.value)


def test_ssim_matches_scikit_image_and_flicker_is_hand_worked():
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(2)
    a = rng.uniform(-1, 1, (16, 16, 3))
    b = np.clip(a + rng.normal(0, 0.3, a.shape), -1, 1)
    ref = structural_similarity(a, b, channel_axis=-1, data_range=2.0)
    np.testing.assert_allclose(metrics.ssim(a, b), ref, rtol=1e-6)
    x = np.zeros((3, 1, 1, 1))
    x[:, 0, 0, 0] = [0, 1, 2]
    r = np.zeros((3, 1, 1, 1))
    r[:, 0, 0, 0] = [0, 3, 3]
    # diffs of recon (3, 0) minus diffs of input (1, 1) -> (2, -1): mean square 2.5
    assert metrics.flicker(r, x) == pytest.approx(2.5)
    assert metrics.mse(r, x) == pytest.approx((0 + 4 + 1) / 3)


def test_renders_are_chunked_by_pixels_so_64px_fits_in_memory(monkeypatch):
    # a fixed 256 frames per renderer call held > 24 GiB of [pixels, triangles, 3] arrays at 64 px
    calls = []

    def spy(ident, expr, pose, fc):  # the chunking alone: no rendering
        calls.append(len(ident))
        n, r = len(ident), fc.resolution
        return {"image": np.zeros((n, r, r, 3), np.float32), "landmarks": np.zeros((n, 5, 2), np.float32)}

    monkeypatch.setattr(faces, "render_batch", spy)
    monkeypatch.setattr(data, "_TRAIN_CACHE", {})
    fc = configs.FaceConfig(resolution=64, num_identities=2, train_images=130)
    out = data.train_images(0, fc)
    assert out["image"].shape == (130, 64, 64, 3)
    assert calls == [64, 64, 2]  # RENDER_PIXELS frame-pixels per call
    calls.clear()
    data.train_images(0, configs.FaceConfig(resolution=16, num_identities=2, train_images=300))
    assert calls == [256, 44]  # at most `chunk` frames per call at small sizes


def test_train_images_are_rendered_once_per_config_and_read_only(monkeypatch):
    calls = []
    real = faces.render_batch
    monkeypatch.setattr(faces, "render_batch", lambda *a: calls.append(1) or real(*a))
    monkeypatch.setattr(data, "_TRAIN_CACHE", {})
    fc = configs.FaceConfig(resolution=16, num_identities=2, train_images=20)
    a = data.train_images(0, fc)
    b = data.train_images(0, configs.FaceConfig(resolution=16, num_identities=2, train_images=20))
    assert len(calls) == 1 and b["image"] is a["image"]
    with pytest.raises(ValueError):
        a["image"][0, 0, 0, 0] = 0.0
    assert not np.array_equal(data.train_images(1, fc)["image"], a["image"]) and len(calls) == 2
    data.train_images(0, configs.FaceConfig(resolution=16, num_identities=2, train_images=21))
    data.train_images(0, fc)  # the oldest of three was dropped: rendered again
    assert len(calls) == 4
