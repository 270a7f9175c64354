"""TFDS builders prepare quietly: no "Downloading ... Unknown size" text, no nested
progress bars, one stderr line saying where the prepared data is cached."""

import logging
import pathlib
import sys

import numpy as np
import pytest

builders = pytest.importorskip("jaxlab.data.builders")
tqdm_utils = pytest.importorskip("tensorflow_datasets.core.utils.tqdm_utils")

NOISE = ("Download", "download", "Generating", "Shuffling", "it/s", "examples/s", "%|", "Unknown size")


def test_first_build_prints_one_line_naming_the_cache(tmp_path, capfd):
    builder = builders.build("jaxlab_digits", data_dir=tmp_path)
    out, err = capfd.readouterr()
    assert out == ""
    assert not [w for w in NOISE if w in err], err
    lines = err.splitlines()
    assert len(lines) == 1, lines
    assert "jaxlab_digits" in lines[0] and str(tmp_path / "jaxlab_digits") in lines[0]
    assert "JAXLAB_DATA_DIR" in lines[0]
    # the data is really there, and a second build reuses it without a word
    assert len(builder.as_data_source()["train"]) == 1347
    again = builders.build("jaxlab_digits", data_dir=tmp_path)
    assert capfd.readouterr() == ("", "")
    assert len(again.as_data_source()["test"]) == 450


def test_default_cache_dir_follows_env(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXLAB_DATA_DIR", str(tmp_path / "cache"))
    assert builders.default_data_dir() == tmp_path / "cache"
    monkeypatch.setenv("JAXLAB_DATA_DIR", "~/x")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert builders.default_data_dir() == tmp_path / "home" / "x"
    monkeypatch.delenv("JAXLAB_DATA_DIR")
    assert builders.default_data_dir() == tmp_path / "home" / ".cache" / "jaxlab" / "tfds"


def test_build_without_data_dir_uses_env_and_says_so(tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("JAXLAB_DATA_DIR", str(tmp_path / "cache"))
    cfg = builders.SyntheticConfig(name="q8", resolution=8, train_size=6, test_size=2, seed=1)
    src = builders.build("jaxlab_synthetic", config=cfg).as_data_source()
    out, err = capfd.readouterr()
    assert out == "" and "Download" not in err and len(err.splitlines()) == 1
    assert str(tmp_path / "cache" / "jaxlab_synthetic" / "q8") in err
    assert any(p.suffix.startswith(".array_record") or "array_record" in p.name
               for p in (tmp_path / "cache").rglob("*"))
    assert len(src["train"]) == 6 and src["train"][0]["image"].dtype == np.uint8


def test_quiet_state_is_restored_after_an_error(tmp_path, monkeypatch):
    def boom(self, split):
        raise RuntimeError("generator failed")
        yield  # pragma: no cover

    monkeypatch.setattr(builders.JaxlabDigits, "_generate_examples", boom)
    active_before = tqdm_utils._active
    level_before = logging.getLogger("absl").level
    stdout_before = sys.stdout
    with pytest.raises(RuntimeError, match="generator failed"):
        builders.build("jaxlab_digits", data_dir=tmp_path)
    assert tqdm_utils._active == active_before
    assert logging.getLogger("absl").level == level_before
    assert sys.stdout is stdout_before
    assert not any(pathlib.Path(tmp_path).rglob("dataset_info.json"))
