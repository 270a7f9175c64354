"""The CIFAR python-batch reader validates values: labels are integers in
[0, num_classes) (never floats truncated to ints), data is uint8 [N, 3072] with one label
a row, and every error is a `DataFormatError` naming the file and the field. Batches are
written exactly as CIFAR ships them (pickled dicts with bytes keys, protocol 2); hypothesis
corrupts values and flips bytes."""

import pathlib
import pickle
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jaxlab.core.errors import DataFormatError, JaxlabError
from jaxlab.mhui import data as D

FUZZ = settings(deadline=None, max_examples=60, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


def write_cifar10_batch(path, n, seed=0, override=None):
    """A CIFAR-10 batch (`data_batch_i` / `test_batch`), entries replaced by `override`."""
    rng = np.random.default_rng(seed)
    d = {
        b"batch_label": b"training batch 1 of 5",
        b"labels": [int(v) for v in rng.integers(0, 10, size=n)],
        b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
        b"filenames": [b"img_%d.png" % i for i in range(n)],
    }
    d.update(override or {})
    with open(path, "wb") as f:
        pickle.dump(d, f, protocol=2)
    return d


def write_cifar100_batch(path, n, seed=0, override=None):
    """A CIFAR-100 `train` / `test` file: fine (100) and coarse (20) labels."""
    rng = np.random.default_rng(seed)
    d = {
        b"filenames": [b"img_%d.png" % i for i in range(n)],
        b"batch_label": b"training batch 1 of 1",
        b"fine_labels": [int(v) for v in rng.integers(0, 100, size=n)],
        b"coarse_labels": [int(v) for v in rng.integers(0, 20, size=n)],
        b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
    }
    d.update(override or {})
    with open(path, "wb") as f:
        pickle.dump(d, f, protocol=2)
    return d


def _raises(fn, *names):
    with pytest.raises(DataFormatError) as e:
        fn()
    assert isinstance(e.value, JaxlabError) and isinstance(e.value, ValueError)
    msg = str(e.value)
    for s in names:
        assert s in msg, (s, msg)
    return msg


def test_float_labels_are_not_truncated(tmp_path):
    p = tmp_path / "data_batch_1"
    write_cifar10_batch(p, 4, override={b"labels": [0.5, 1.7, 2.2, 3.9]})
    _raises(lambda: D.load_cifar10_batch(p), str(p), 'field b"labels"', "integers in [0, 10)", "0.5", "index 0")
    # whole floats are floats too: the file is not what the format promises
    write_cifar10_batch(p, 2, override={b"labels": [1, 2.0]})
    _raises(lambda: D.load_cifar10_batch(p), str(p), 'field b"labels"', "2.0 (float) at index 1")
    write_cifar10_batch(p, 3, override={b"labels": np.array([1.0, 2.0, 3.0])})
    _raises(lambda: D.load_cifar10_batch(p), str(p), 'field b"labels"', "1.0")


@pytest.mark.parametrize("labels,expect", [
    (["1", "2"], "'1' (str) at index 0"), ([1, None], "None (NoneType) at index 1"), ([True, 0], "True (bool)"),
    ([b"3", 1], "b'3' (bytes)"), ([[1], [2]], "[1] (list)"), ([3, -1], "-1 at index 1"), ([10, 1], "10 at index 0"),
    (np.array([[1, 2]]), "shape [1, 2]"), (7, "got int"), ("0123", "got str"),
])
def test_bad_labels_name_file_and_field(tmp_path, labels, expect):
    p = tmp_path / "test_batch"
    write_cifar10_batch(p, 2, override={b"labels": labels})
    _raises(lambda: D.load_cifar10_batch(p), str(p), 'field b"labels"', expect)


@pytest.mark.parametrize("data,expect", [
    ([[0] * 3072, [0] * 100], "got list"),  # ragged
    (np.zeros((2, 3072), np.int64), "got int64 [2, 3072]"),
    (np.zeros((2, 3072), np.float32), "got float32 [2, 3072]"),
    (np.zeros((2, 32, 32, 3), np.uint8), "got uint8 [2, 32, 32, 3]"),
    (np.zeros(6144, np.uint8), "got uint8 [6144]"),
    (b"\0" * 6144, "got bytes"),
    (None, "got NoneType"),
])
def test_bad_data_names_file_and_field(tmp_path, data, expect):
    p = tmp_path / "data_batch_2"
    write_cifar10_batch(p, 2, override={b"data": data})
    _raises(lambda: D.load_cifar10_batch(p), str(p), 'field b"data"', "uint8 [N, 3072]", expect)


def test_row_count_must_match_labels(tmp_path):
    p = tmp_path / "data_batch_3"
    write_cifar10_batch(p, 3, override={b"labels": [1, 2]})
    _raises(lambda: D.load_cifar10_batch(p), str(p), 'field b"labels"', "expected 3 labels", "got 2")


def test_str_keys_are_named_as_str(tmp_path):
    p = tmp_path / "b"
    with open(p, "wb") as f:
        pickle.dump({"data": np.zeros((1, 3072), np.uint8), "labels": [1.5]}, f)
    _raises(lambda: D.load_cifar10_batch(p), str(p), 'field "labels"', "1.5")


def test_cifar100_fine_and_coarse_labels(tmp_path):
    p = tmp_path / "train"
    d = write_cifar100_batch(p, 5, seed=3)
    x, y = D.load_cifar_batch(p, "fine_labels", 100)
    np.testing.assert_array_equal(y, d[b"fine_labels"])
    assert y.dtype == np.int32 and x.shape == (5, 32, 32, 3)
    np.testing.assert_array_equal(x[2, 4, 7], d[b"data"][2, [4 * 32 + 7, 1024 + 4 * 32 + 7, 2048 + 4 * 32 + 7]])
    _, yc = D.load_cifar_batch(p, "coarse_labels", 20)
    np.testing.assert_array_equal(yc, d[b"coarse_labels"])
    write_cifar100_batch(p, 2, override={b"fine_labels": [3, 100]})
    _raises(lambda: D.load_cifar_batch(p, "fine_labels", 100), str(p), 'field b"fine_labels"', "[0, 100)", "100 at")
    # a CIFAR-100 file read as CIFAR-10 names the entry it lacks
    _raises(lambda: D.load_cifar10_batch(p), str(p), "no 'labels' entry", 'b"fine_labels"')


def test_valid_label_types(tmp_path):
    # numpy integers in the list, or an integer array, are integers
    p = tmp_path / "data_batch_1"
    labels = [np.int64(3), np.uint8(9), 0]
    write_cifar10_batch(p, 3, override={b"labels": labels})
    np.testing.assert_array_equal(D.load_cifar10_batch(p)[1], [3, 9, 0])
    write_cifar10_batch(p, 3, override={b"labels": np.array([4, 0, 9], np.int16)})
    np.testing.assert_array_equal(D.load_cifar10_batch(p)[1], [4, 0, 9])


def test_unpickling_errors_name_the_file(tmp_path):
    p = tmp_path / "data_batch_4"
    write_cifar10_batch(p, 2)
    raw = p.read_bytes()
    p.write_bytes(raw[: len(raw) // 2])
    _raises(lambda: D.load_cifar10_batch(p), str(p), "cannot unpickle")
    p.write_bytes(b"\x80\x02cno_such_module\nThing\nq\x00.")
    _raises(lambda: D.load_cifar10_batch(p), str(p), "cannot unpickle")


def test_load_cifar10_names_the_bad_batch(tmp_path):
    for i in range(1, 6):
        write_cifar10_batch(tmp_path / f"data_batch_{i}", 2, seed=i)
    write_cifar10_batch(tmp_path / "data_batch_4", 2, override={b"labels": [0, 2.5]})
    _raises(lambda: D.load_cifar10(tmp_path, "train"), str(tmp_path / "data_batch_4"), 'field b"labels"')


# ----------------------------------------------------------------------------- fuzzing

bad_label = st.one_of(
    st.floats(allow_nan=True), st.text(max_size=3), st.binary(max_size=3), st.none(), st.booleans(),
    st.integers(max_value=-1), st.integers(min_value=10), st.lists(st.integers(0, 9), max_size=2),
)


@FUZZ
@given(data=st.data(), n=st.integers(1, 5), seed=st.integers(0, 3))
def test_fuzz_value_corruptions(data, n, seed):
    with tempfile.TemporaryDirectory() as tmp:
        p = pathlib.Path(tmp) / "data_batch_1"
        d = write_cifar10_batch(p, n, seed)
        kind = data.draw(st.sampled_from(["label", "labels_len", "dtype", "width", "rows", "ragged", "missing"]))
        if kind == "label":
            labels = list(d[b"labels"])
            labels[data.draw(st.integers(0, n - 1))] = data.draw(bad_label)
            write_cifar10_batch(p, n, seed, override={b"labels": labels})
            field = 'b"labels"'
        elif kind == "labels_len":
            k = data.draw(st.integers(0, n + 3).filter(lambda k: k != n))
            write_cifar10_batch(p, n, seed, override={b"labels": [1] * k})
            field = 'b"labels"'
        elif kind == "dtype":
            dt = data.draw(st.sampled_from([np.int8, np.int16, np.int64, np.uint16, np.float16, np.float64, bool]))
            write_cifar10_batch(p, n, seed, override={b"data": d[b"data"].astype(dt)})
            field = 'b"data"'
        elif kind == "width":
            w = data.draw(st.integers(0, 4000).filter(lambda w: w != 3072))
            write_cifar10_batch(p, n, seed, override={b"data": np.zeros((n, w), np.uint8)})
            field = 'b"data"'
        elif kind == "rows":
            r = data.draw(st.integers(0, n + 3).filter(lambda r: r != n))
            write_cifar10_batch(p, n, seed, override={b"data": np.zeros((r, 3072), np.uint8)})
            field = 'b"labels"'  # the labels no longer match the rows
        elif kind == "ragged":
            rows = [list(range(3072))[: data.draw(st.integers(0, 3073))] for _ in range(n)]
            write_cifar10_batch(p, n, seed, override={b"data": rows})
            field = 'b"data"'
        else:
            key = data.draw(st.sampled_from([b"data", b"labels"]))
            d.pop(key)
            with open(p, "wb") as f:
                pickle.dump(d, f, protocol=2)
            field = f"no '{key.decode()}' entry"
        _raises(lambda: D.load_cifar10_batch(p), str(p), field)


@FUZZ
@given(data=st.data())
def test_fuzz_byte_flips(data):
    with tempfile.TemporaryDirectory() as tmp:
        p = pathlib.Path(tmp) / "test_batch"
        write_cifar10_batch(p, 3, seed=1)
        raw = bytearray(p.read_bytes())
        # flips land in the pickle's structure (first and last bytes), not only in pixels
        head = list(range(0, 120)) + list(range(len(raw) - 200, len(raw)))
        for _ in range(data.draw(st.integers(1, 3))):
            raw[data.draw(st.sampled_from(head))] ^= data.draw(st.integers(1, 255))
        if data.draw(st.booleans()):
            raw = raw[: data.draw(st.integers(0, len(raw)))]
        p.write_bytes(bytes(raw))
        try:
            x, y = D.load_cifar10_batch(p)
        except DataFormatError as e:
            assert str(p) in str(e)
        else:
            assert x.dtype == np.uint8 and x.shape[1:] == (32, 32, 3)
            assert y.dtype == np.int32 and y.shape == (x.shape[0],) and (y.size == 0 or 0 <= y.min() <= y.max() < 10)
