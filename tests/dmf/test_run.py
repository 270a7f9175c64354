"""The `jaxlab dmf` actions end to end on the smoke config (CLI entry point included)."""

import json

import numpy as np
import pytest

from jaxlab import cli, dmf
from jaxlab.dmf import configs, data, run


def test_cli_spe_and_evaluate(tmp_path):
    wd = tmp_path / "spe"
    assert cli.main(["dmf", "spe", "--config", "smoke", "--workdir", str(wd), "--config.hessian_points=0"]) == 0
    summary = json.loads((wd / "summary.json").read_text())
    assert summary["results"]["status"] == "ok" and summary["results"]["num_stages"] == 2
    for f in ["config.json", "metrics.jsonl", "trajectory.npz", "figures/staircase.png"]:
        assert (wd / f).exists(), f
    assert cli.main(["dmf", "evaluate", "--workdir", str(wd)]) == 0
    ev = json.loads((wd / "evaluation.json").read_text())
    assert ev["num_stages"] == 2 and ev["status"] == "ok"
    loaded = dmf.load(wd)
    assert loaded["trajectory"].loss.ndim == 1 and loaded["config"].rank == 2


def test_sweep_and_completion_actions(tmp_path):
    cfg = configs.get_config("smoke")
    res = run.sweep(cfg, tmp_path / "sweep")
    # smoke: rank 1 and 2 targets at depth 2, init 1e-4 (separated) and 1e-1 (merged or not)
    assert res["claim_success"]["depth2"]["R1"] == 1.0
    assert (tmp_path / "sweep" / "figures" / "phase_diagram.png").exists()
    res = run.completion(cfg, tmp_path / "completion")
    kinds = {r["method"] for r in res["rows"]}
    assert kinds == {"DMF", "nuclear norm"}
    assert all(np.isfinite(r["test_error"]) for r in res["rows"])


def test_config_override_errors(tmp_path):
    assert cli.main(["dmf", "spe", "--config", "smoke", "--workdir", str(tmp_path / "x"), "--config.nope=1"]) == 2


def test_entries_readers(tmp_path):
    csv = tmp_path / "e.csv"
    csv.write_text("row,col,value\n0,1,2.5\n2,0,-1\n")
    r, c, v = data.load_entries(csv)
    m, mask = data.entries_to_matrix(r, c, v)
    assert m.shape == (3, 2) and m[0, 1] == 2.5 and mask.sum() == 2
    ml = tmp_path / "u.data"
    ml.write_text("1\t2\t5\t881250949\n3\t1\t3\t891717742\n")
    r, c, v = data.load_entries(ml)
    np.testing.assert_array_equal(r, [0, 2])
    np.testing.assert_array_equal(c, [1, 0])
    bad = tmp_path / "bad.csv"
    bad.write_text("0,1,2\n0,x,3\n")
    with pytest.raises(ValueError, match="bad.csv:2"):
        data.load_entries(bad)
