import json
import math
import os
import stat

import pytest

from jaxlab.classifier import configs
from jaxlab.core import metrics as metrics_lib
from jaxlab.core import workdir as workdir_lib


def _strict_load(text):
    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def test_write_json_is_strict_and_keeps_finite_values(tmp_path):
    import numpy as np

    obj = {"a": float("nan"), "b": [1.5, float("inf"), -float("inf")], "c": np.float32(2.0),
           "d": np.array([1, 2]), "e": {"f": np.nan}}
    workdir_lib.write_json(tmp_path / "x.json", obj)
    back = _strict_load((tmp_path / "x.json").read_text())
    assert back == {"a": None, "b": [1.5, None, None], "c": 2.0, "d": [1, 2], "e": {"f": None}}


def test_metric_rows_are_strict_json(tmp_path):
    with metrics_lib.MetricWriter(tmp_path, tensorboard=False) as w:
        w.write(3, {"loss": math.nan, "acc": 0.5})
    (row,) = [_strict_load(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert row == {"step": 3, "loss": None, "acc": 0.5}


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_files_follow_the_umask(tmp_path, mask, mode):
    old = os.umask(mask)
    try:
        workdir_lib.prepare(tmp_path / "run", configs.get_config("smoke"))
        workdir_lib.write_summary(tmp_path / "run", {"x": 1})
        with metrics_lib.MetricWriter(tmp_path / "run", tensorboard=False) as w:
            w.write(1, {"loss": 1.0})
    finally:
        os.umask(old)
    for name in ("config.json", "summary.json", "metrics.jsonl"):
        assert stat.S_IMODE((tmp_path / "run" / name).stat().st_mode) == mode, name


def test_a_run_that_never_started_may_change_its_config(tmp_path, capsys):
    cfg = configs.get_config("smoke")
    workdir_lib.prepare(tmp_path, cfg)
    other = configs.get_config("smoke")
    other.data_dir = "/elsewhere"
    workdir_lib.prepare(tmp_path, other)  # nothing but config.json was written
    assert json.loads((tmp_path / "config.json").read_text())["data_dir"] == "/elsewhere"
    assert "never started" in capsys.readouterr().err
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n')
    with pytest.raises(workdir_lib.WorkdirError, match="data_dir"):
        workdir_lib.prepare(tmp_path, cfg)


def test_workdir_that_is_a_file_or_under_a_file_is_a_workdir_error(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(workdir_lib.WorkdirError, match="not a directory"):
        workdir_lib.prepare(f, configs.get_config("smoke"))
    with pytest.raises(workdir_lib.WorkdirError, match="cannot use --workdir"):
        workdir_lib.prepare(f / "sub", configs.get_config("smoke"))


def test_update_summary_keeps_other_sections(tmp_path):
    cfg = configs.get_config("smoke")
    workdir_lib.update_summary(tmp_path, "train", {"acc": 0.5}, cfg, seed=0)
    workdir_lib.update_summary(tmp_path, "attack", {"success": float("nan")}, cfg, seed=0)
    results = _strict_load((tmp_path / "summary.json").read_text())["results"]
    assert results == {"train": {"acc": 0.5}, "attack": {"success": None}}
