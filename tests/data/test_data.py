import collections

import numpy as np
import pytest
from sklearn.datasets import load_digits as sk_load_digits

from jaxlab.data import digits, pipeline, synthetic


def test_digits_split_is_stratified_and_complete():
    xtr, ytr = digits.load_digits("train")
    xte, yte = digits.load_digits("test")
    sk = sk_load_digits()
    assert xtr.shape[1:] == (8, 8, 1) and xtr.dtype == np.float32
    assert len(ytr) + len(yte) == len(sk.target) == 1797
    assert 0.0 <= xtr.min() and xtr.max() <= 1.0
    # Same multiset of (image, label) as scikit-learn's arrays.
    ours = collections.Counter((x.tobytes(), int(y)) for x, y in zip(
        np.concatenate([xtr, xte]).reshape(-1, 64) * 16, np.concatenate([ytr, yte])))
    theirs = collections.Counter((x.astype(np.float32).tobytes(), int(y)) for x, y in zip(sk.data, sk.target))
    assert ours == theirs
    # Stratified: every class's test share is within one example of 25%.
    for c in range(10):
        n = np.sum(sk.target == c)
        assert abs(np.sum(yte == c) - 0.25 * n) <= 1
    with pytest.raises(ValueError, match="split"):
        digits.load_digits("validation")


def test_tfds_digits_builder_round_trip(tmp_path):
    from jaxlab.data import builders

    builder = builders.build("jaxlab_digits", data_dir=tmp_path)
    assert any(p.suffix.startswith(".array_record") or "array_record" in p.name
               for p in (tmp_path / "jaxlab_digits").rglob("*"))
    sources = builder.as_data_source()
    xtr, ytr, xte, yte = digits.digits_arrays(0, 0.25)
    for split, (x, y) in {"train": (xtr, ytr), "test": (xte, yte)}.items():
        src = sources[split]
        assert len(src) == len(y)
        records = [src[i] for i in range(len(src))]
        assert all(r["image"].shape == (8, 8, 1) and r["image"].dtype == np.uint8 for r in records)
        got = collections.Counter((r["image"].tobytes(), int(r["label"])) for r in records)
        want = collections.Counter((a.tobytes(), int(b)) for a, b in zip(x, y))
        assert got == want


def test_tfds_synthetic_builder(tmp_path):
    from jaxlab.data import builders

    cfg = builders.SyntheticConfig(name="t16", resolution=16, train_size=24, test_size=8, seed=5)
    src = builders.build("jaxlab_synthetic", data_dir=tmp_path, config=cfg).as_data_source()
    x, y = synthetic.make_images(24, resolution=16, seed=5)
    got = sorted((r["image"].tobytes(), int(r["label"])) for r in (src["train"][i] for i in range(24)))
    want = sorted((np.round(a * 255).astype(np.uint8).tobytes(), int(b)) for a, b in zip(x, y))
    assert got == want


def test_synthetic_is_deterministic_and_sliceable():
    a, la = synthetic.make_images(12, resolution=16, seed=1)
    b, lb = synthetic.make_images(12, resolution=16, seed=1)
    np.testing.assert_array_equal(a, b)
    c, lc = synthetic.make_images(4, resolution=16, seed=1, start=8)
    np.testing.assert_array_equal(a[8:], c)
    np.testing.assert_array_equal(la[8:], lc)
    d, _ = synthetic.make_images(12, resolution=16, seed=2)
    assert not np.allclose(a, d)
    assert a.dtype == np.float32 and a.min() >= 0 and a.max() <= 1
    _, labels = synthetic.make_images(400, resolution=8, num_classes=6, seed=0)
    assert set(labels) == set(range(6))


def test_synthetic_scenes_are_resolution_consistent():
    # Rendering at 16 px with 4x4 supersampling box-filters exactly the samples that a
    # 64 px, 1x1-sampled rendering takes: the same scene at two resolutions.
    low, _ = synthetic.make_images(6, resolution=16, supersample=4, noise=0.0, seed=3)
    high, _ = synthetic.make_images(6, resolution=64, supersample=1, noise=0.0, seed=3)
    np.testing.assert_allclose(low, high.reshape(6, 16, 4, 16, 4, 3).mean(axis=(2, 4)), atol=1e-5)


def test_fine_textures_vanish_at_low_resolution():
    # The fine texture's stripes have a period of 1/20 of the image: at 16 px the box
    # filter averages them out, at 64 px they remain. Measured by pixel-level contrast
    # (mean |Laplacian|) of fine-texture images relative to coarse-texture ones.
    factors = synthetic.class_factors(10)

    def fine_to_coarse(res):
        x, y = synthetic.make_images(120, resolution=res, noise=0.0, seed=0)
        lap = np.abs(4 * x[:, 1:-1, 1:-1] - x[:, :-2, 1:-1] - x[:, 2:, 1:-1]
                     - x[:, 1:-1, :-2] - x[:, 1:-1, 2:]).mean(axis=(1, 2, 3))
        texture = np.array([factors[c][1] for c in y])
        return lap[texture == 1].mean() / lap[texture == 0].mean()

    assert fine_to_coarse(16) < 1.0 < 2.0 < fine_to_coarse(64)


def test_grain_batches_deterministic_epochs_and_shards():
    src = pipeline.ArraySource({"x": np.arange(20), "y": np.arange(20) * 10})
    ds = pipeline.batches(src, 5, seed=7)
    again = pipeline.batches(src, 5, seed=7)
    first_epoch = np.concatenate([ds[s]["x"] for s in range(4)])
    assert sorted(first_epoch) == list(range(20))  # each example once per epoch
    np.testing.assert_array_equal(ds[6]["x"], again[6]["x"])  # pure function of (seed, step)
    np.testing.assert_array_equal(ds[6]["y"], ds[6]["x"] * 10)
    second_epoch = np.concatenate([ds[s]["x"] for s in range(4, 8)])
    assert sorted(second_epoch) == list(range(20)) and not np.array_equal(first_epoch, second_epoch)
    # Two processes read disjoint halves, each half a global batch per step.
    p0 = pipeline.batches(src, 10, seed=1, process_index=0, process_count=2)
    p1 = pipeline.batches(src, 10, seed=1, process_index=1, process_count=2)
    seen0 = np.concatenate([p0[s]["x"] for s in range(2)])
    seen1 = np.concatenate([p1[s]["x"] for s in range(2)])
    assert len(seen0) == 10 and not set(seen0) & set(seen1)
    with pytest.raises(ValueError, match="divisible"):
        pipeline.batches(src, 5, process_index=0, process_count=2)


class _Recording(pipeline.ArraySource):
    """An `ArraySource` that records which records were read."""

    def __init__(self, arrays):
        super().__init__(arrays)
        self.read: set[int] = set()

    def __getitem__(self, i):
        self.read.add(int(i))
        return super().__getitem__(i)


@pytest.mark.parametrize("repeat", [True, False])
def test_process_shards_assemble_the_single_process_batches(repeat):
    # P processes must train on exactly the global batches one process would see, each
    # reading only its own rows: the rows of process p are [p*B/P, (p+1)*B/P).
    n, batch, procs = 46, 12, 3
    whole = pipeline.batches(pipeline.ArraySource({"x": np.arange(n)}), batch, seed=3, repeat=repeat,
                             process_index=0, process_count=1)
    parts = [_Recording({"x": np.arange(n)}) for _ in range(procs)]
    shards = [pipeline.batches(parts[p], batch, seed=3, repeat=repeat, process_index=p, process_count=procs)
              for p in range(procs)]
    steps = 9 if repeat else len(whole)
    if not repeat:
        assert [len(d) for d in shards] == [len(whole)] * procs == [n // batch] * procs
    for s in range(steps):
        np.testing.assert_array_equal(np.concatenate([d[s]["x"] for d in shards]), whole[s]["x"])
    if not repeat:  # one epoch: every record read once, by one process
        read = [src.read for src in parts]
        assert all(not read[a] & read[b] for a in range(procs) for b in range(a + 1, procs))
        assert sum(len(r) for r in read) == steps * batch
