"""CIFAR-10 python-batch loader on small files written in exactly that format."""

import pickle

import numpy as np
import pytest

from jaxlab.mhui import data as D


def _write_batch(path, n, seed, labels=None, data=None, key_type=bytes):
    rng = np.random.default_rng(seed)
    d = {
        b"batch_label": b"training batch 1 of 5",
        b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8) if data is None else data,
        b"labels": list(rng.integers(0, 10, size=n)) if labels is None else labels,
        b"filenames": [b"img%d.png" % i for i in range(n)],
    }
    if key_type is str:
        d = {k.decode(): v for k, v in d.items()}
    with open(path, "wb") as f:
        pickle.dump(d, f)
    return d


def test_batch_layout_is_rgb_planes(tmp_path):
    d = _write_batch(tmp_path / "data_batch_1", 3, 0)
    x, y = D.load_cifar10_batch(tmp_path / "data_batch_1")
    assert x.shape == (3, 32, 32, 3) and x.dtype == np.uint8 and y.dtype == np.int32
    raw = d[b"data"]
    # pixel (r, c) of channel ch is raw[ch * 1024 + r * 32 + c]
    for i, r, c, ch in [(0, 0, 0, 0), (1, 5, 7, 1), (2, 31, 30, 2)]:
        assert x[i, r, c, ch] == raw[i, ch * 1024 + r * 32 + c]
    np.testing.assert_array_equal(y, d[b"labels"])


def test_load_train_and_test_splits(tmp_path):
    written = [_write_batch(tmp_path / f"data_batch_{i}", 4, i) for i in range(1, 6)]
    _write_batch(tmp_path / "test_batch", 5, 9, key_type=str)  # str keys are accepted too
    x, y = D.load_cifar10(tmp_path, "train")
    assert x.shape == (20, 32, 32, 3) and x.dtype == np.float32 and 0.0 <= x.min() and x.max() <= 1.0
    np.testing.assert_array_equal(y, np.concatenate([w[b"labels"] for w in written]))  # batch order kept
    xt, yt = D.load_cifar10(tmp_path, "test")
    assert xt.shape == (5, 32, 32, 3) and yt.shape == (5,)
    np.testing.assert_allclose(xt[0, 0, 0, 0] * 255, D.load_cifar10_batch(tmp_path / "test_batch")[0][0, 0, 0, 0])


def test_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="data.cifar_dir"):
        D.load_cifar10(tmp_path / "nope", "train")
    _write_batch(tmp_path / "data_batch_1", 2, 0)
    with pytest.raises(FileNotFoundError, match="data_batch_2"):
        D.load_cifar10(tmp_path, "train")
    with pytest.raises(ValueError, match="split"):
        D.load_cifar10(tmp_path, "val")
    (tmp_path / "junk").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="junk.*cannot unpickle"):
        D.load_cifar10_batch(tmp_path / "junk")
    with open(tmp_path / "list", "wb") as f:
        pickle.dump([1, 2], f)
    with pytest.raises(ValueError, match="pickled dict"):
        D.load_cifar10_batch(tmp_path / "list")
    _write_batch(tmp_path / "bad_shape", 2, 0, data=np.zeros((2, 100), np.uint8))
    with pytest.raises(ValueError, match=r'bad_shape: field b"data": expected a uint8 \[N, 3072\]'):
        D.load_cifar10_batch(tmp_path / "bad_shape")
    _write_batch(tmp_path / "bad_labels", 2, 0, labels=[1])
    with pytest.raises(ValueError, match='bad_labels: field b"labels": expected 2 labels'):
        D.load_cifar10_batch(tmp_path / "bad_labels")
    _write_batch(tmp_path / "bad_range", 2, 0, labels=[1, 12])
    with pytest.raises(ValueError, match=r'bad_range: field b"labels": expected integers in \[0, 10\), got 12'):
        D.load_cifar10_batch(tmp_path / "bad_range")
    with open(tmp_path / "nodata", "wb") as f:
        pickle.dump({b"labels": [1]}, f)
    with pytest.raises(ValueError, match="nodata: CIFAR batch has no 'data' entry"):
        D.load_cifar10_batch(tmp_path / "nodata")


def test_synthetic32_is_the_procedural_dataset_with_disjoint_splits():
    from jaxlab.data.synthetic import make_images
    from jaxlab.mhui.configs import DataConfig
    from jaxlab.mhui.data import load_dataset

    d = load_dataset(DataConfig(dataset="synthetic32", synthetic_train_size=6, synthetic_test_size=3))
    assert d["x_train"].shape == (6, 32, 32, 3) and d["x_test"].shape == (3, 32, 32, 3)
    assert d["x_train"].min() >= 0 and d["x_train"].max() <= 1 and d["num_classes"] == 10
    # the test images are the examples after the training ones, not the same ones
    x, y = make_images(9, resolution=32, seed=0)
    np.testing.assert_array_equal(d["x_test"], x[6:])
    np.testing.assert_array_equal(d["y_train"], y[:6])
