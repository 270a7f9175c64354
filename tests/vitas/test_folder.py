"""The ImageNet-style class-folder reader: images written by the test in exactly that layout
(`{train,val}/<class>/<image>.{JPEG,png}`), read through the TFDS builder; clear errors."""

import dataclasses
import pathlib

import numpy as np
import pytest
from PIL import Image

import jaxlab.vitas as vitas
from jaxlab.core.config import ConfigError
from jaxlab.core.errors import DataFormatError
from jaxlab.vitas import data as data_lib
from jaxlab.vitas import folder, training
from jaxlab.vitas.space import Space

RED, BLUE = (255, 0, 0), (0, 0, 255)


def _halves(left, right, h=16, w=32):
    img = np.zeros((h, w, 3), np.uint8)
    img[:, : w // 2], img[:, w // 2:] = left, right
    return img


def _write(root, n=3, classes=(("n01", RED, BLUE), ("n02", BLUE, RED))):
    """Class c: `n` wide images, left half colour a, right half b; PNG and JPEG mixed."""
    for split in ("train", "val"):
        for name, a, b in classes:
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                ext = "png" if i % 2 == 0 else "JPEG"
                Image.fromarray(_halves(a, b)).save(root / split / name / f"img{i}.{ext}", quality=95)
    return root


def test_builder_reads_the_layout(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXLAB_DATA_DIR", str(tmp_path / "cache"))
    root = _write(tmp_path / "imgs")
    b = folder.build(root, 8)
    assert b.builder_config.classes == ("n01", "n02")
    x, y = folder.load_split(b, "train")
    assert x.shape == (6, 8, 8, 3) and x.dtype == np.float32 and sorted(y.tolist()) == [0, 0, 0, 1, 1, 1]
    # 16x32 -> shorter side 8 (8x16) -> centre crop keeps resized columns 4..11: left half colour a,
    # right half colour b. Far from the edge the colours survive resizing and JPEG.
    for img, label in zip(x, y):
        a, c = (RED, BLUE) if label == 0 else (BLUE, RED)
        np.testing.assert_allclose(img[:, :2].mean((0, 1)), np.array(a) / 255, atol=0.08)
        np.testing.assert_allclose(img[:, -2:].mean((0, 1)), np.array(c) / 255, atol=0.08)
    assert folder.load_split(b, "val")[0].shape == (6, 8, 8, 3)
    assert folder.build(root, 8).is_prepared()  # cached: the second build prepares nothing

    cfg = vitas.get_config("smoke")
    cfg = dataclasses.replace(cfg, space=dataclasses.replace(cfg.space, image_size=8, num_classes=2,
                                                            patch_sizes=(2, 4)),
                              data=dataclasses.replace(cfg.data, source="folder", folder=str(root), num_val=2))
    cfg.validate()
    s = data_lib.splits(cfg)
    assert len(s["train"][1]) == 4 and len(s["val"][1]) == 2 and len(s["test"][1]) == 6
    # the held-out validation rows and the training rows partition train/ (three images per class)
    counts = np.bincount(np.concatenate([s["train"][1], s["val"][1]]), minlength=2)
    assert counts.tolist() == [3, 3]
    # streamed: the same rows read per batch from the array_record files, labels cached once
    streamed = data_lib.splits(dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, stream="on")))
    for split in ("train", "val", "test"):
        xs, ys = streamed[split]
        np.testing.assert_array_equal(ys, s[split][1])
        assert xs.shape == s[split][0].shape and len(xs) == len(ys)
        np.testing.assert_array_equal(xs[np.arange(len(ys))[::-1]], s[split][0][::-1])
        np.testing.assert_array_equal(xs[1:3], s[split][0][1:3])
        np.testing.assert_array_equal(xs[1], s[split][0][1])
    assert isinstance(streamed["train"][0], folder.SplitImages) and isinstance(streamed["val"][0], np.ndarray)
    space = Space(cfg.space)  # a supernet batch draws the same images from either
    held = training.make_supernet_batches(cfg, space, 0.2, s["train"])(3)
    np.testing.assert_array_equal(training.make_supernet_batches(cfg, space, 0.2, streamed["train"])(3)["x"], held["x"])
    assert sorted(p.name for p in pathlib.Path(b.data_dir).glob("labels_*.npy")) == ["labels_train.npy",
                                                                                     "labels_val.npy"]
    with pytest.raises(ConfigError, match="num_classes"):
        data_lib.splits(dataclasses.replace(cfg, space=dataclasses.replace(cfg.space, num_classes=3)))


def _bad(kind, root):
    _write(root, n=2)
    if kind == "no_val":
        for p in sorted((root / "val").rglob("*"), reverse=True):
            p.rmdir() if p.is_dir() else p.unlink()
        (root / "val").rmdir()
        return "val"
    if kind == "no_classes":
        for p in sorted((root / "train").rglob("*"), reverse=True):
            p.rmdir() if p.is_dir() else p.unlink()
        return "no class folders"
    if kind == "empty_class":
        (root / "train" / "n03").mkdir()
        return "n03"
    if kind == "bad_suffix":
        (root / "train" / "n01" / "notes.txt").write_text("x")
        return "notes.txt"
    if kind == "unknown_val_class":
        (root / "val" / "n09").mkdir()
        Image.fromarray(_halves(RED, RED)).save(root / "val" / "n09" / "a.png")
        return "n09"
    if kind == "unreadable":
        (root / "train" / "n02" / "broken.JPEG").write_bytes(b"not a jpeg at all")
        return "broken.JPEG"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["no_val", "no_classes", "empty_class", "bad_suffix", "unknown_val_class",
                                  "unreadable"])
def test_bad_folders_name_the_problem(tmp_path, kind):
    root = tmp_path / "imgs"
    needle = _bad(kind, root)
    with pytest.raises(DataFormatError, match=needle):
        folder.build(root, 8, data_dir=tmp_path / "cache")
    if kind == "unreadable":
        # nothing half-written is left as a prepared dataset: fixing the file and building works
        Image.fromarray(_halves(BLUE, RED)).save(root / "train" / "n02" / "broken.JPEG", format="JPEG")
        assert folder.build(root, 8, data_dir=tmp_path / "cache").is_prepared()


def test_missing_root_is_a_clear_error(tmp_path):
    with pytest.raises(DataFormatError, match="no such folder"):
        folder.scan(tmp_path / "nowhere")
    cfg = vitas.get_config("smoke")
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, source="folder", folder=str(tmp_path / "x")))
    with pytest.raises(DataFormatError):
        vitas.train_supernet(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "supernet").exists()


def test_digits_source_upsamples_sklearn_digits():
    from sklearn.datasets import load_digits

    cfg = vitas.get_config("smoke")
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, source="digits", num_val=100))
    cfg.validate()
    s = data_lib.splits(cfg)
    assert [len(s[k][1]) for k in ("train", "val", "test")] == [1347 - 100, 100, 450]
    originals = {img.astype(np.float32).tobytes() for img in load_digits().images}
    for x in (s["train"][0][:20], s["test"][0][:20]):
        assert x.shape[1:] == (16, 16, 3) and (x[..., 0] == x[..., 2]).all()
        assert (x[:, ::2, ::2] == x[:, 1::2, 1::2]).all()  # each pixel repeated 2x2
        assert all((im[::2, ::2, 0] * 16).tobytes() in originals for im in x)
    with pytest.raises(ConfigError, match="digits"):
        dataclasses.replace(cfg, space=dataclasses.replace(cfg.space, image_size=12, patch_sizes=(2, 4))).validate()
