"""End to end through the CLI: train -> attack -> evaluate on a tiny config."""

import json

import numpy as np
import pytest

from jaxlab import cli
from jaxlab.mhui import configs, run

TINY = ["--config.train.num_steps=20", "--config.baselines.ensemble_size=2", "--config.baselines.rkl_num_steps=10",
        "--config.data.num_eval=48", "--config.attack.attacks=fgsm,cw_l2", "--config.attack.cw_binary_steps=1",
        "--config.attack.cw_steps=3", "--config.detect.mc_samples=2", "--config.attack.adaptive_weights=0,1",
        "--config.model.stages=8,16,16"]


def test_attack_sets_and_unknown_attack():
    cfg = configs.get_config("default")
    sets = run.attack_sets(cfg)
    assert ("mhui", "pgd_l2", 2.0) in sets and ("prior_net", "cw_l2", 0.0) in sets
    assert len(sets) == 3 * (3 * 3 + 3 + 1)
    import dataclasses
    bad = dataclasses.replace(cfg, attack=dataclasses.replace(cfg.attack, attacks=("deepfool",)))
    with pytest.raises(ValueError, match="attack.attacks"):
        run.attack_sets(bad)


@pytest.mark.slow  # ~dozens of XLA compiles (every attack x network); minutes on a loaded 2-core CPU
def test_cli_train_attack_evaluate(tmp_path):
    wd = str(tmp_path / "run")
    with pytest.raises(FileNotFoundError, match="jaxlab mhui train"):
        run.attack(configs.get_config("smoke"), tmp_path / "empty")
    assert cli.main(["mhui", "train", "--config", "smoke", "--workdir", wd, *TINY]) == 0
    assert cli.main(["mhui", "attack", "--workdir", wd]) == 0
    assert cli.main(["mhui", "evaluate", "--workdir", wd]) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    res = summary["results"]
    assert set(res) == {"train", "attack", "evaluate"}
    assert len(res["train"]["mhui_head_test_acc"]) == 3
    methods = {r["method"] for r in res["evaluate"]["rows"]}
    assert methods == {"MH-UI", "MSP", "MC dropout", "MCD + Dirichlet", "Ensemble", "Ensemble + Dirichlet",
                       "RKL Prior Net"}
    for r in res["evaluate"]["rows"]:
        assert 0.0 <= r["auroc"] <= 1.0 and 0.0 <= r["aupr"] <= 1.0
    adv = np.load(tmp_path / "run" / "attacks.npz")
    x = adv["mhui__fgsm__0.1"]
    assert x.shape == (48, 8, 8, 1) and x.min() >= 0 and x.max() <= 1
    tables = (tmp_path / "run" / "tables.md").read_text()
    assert "| fgsm | 0.1 |" in tables and "Adaptive" in tables
    assert (tmp_path / "run" / "figures" / "precision_hist.png").exists()
    loaded = run.load(wd)
    assert set(loaded["nets"]) == {"mhui", "ensemble", "prior_net"}
