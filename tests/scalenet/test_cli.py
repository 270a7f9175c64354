import json

import pytest

from jaxlab.scalenet import configs, run


@pytest.mark.slow
def test_actions_end_to_end(tmp_path):
    cfg = configs.get_config("smoke")
    wd = tmp_path / "run"
    from jaxlab.core import workdir as workdir_lib

    workdir_lib.prepare(wd, cfg)
    r1 = run.ACTIONS["train-supernet"](cfg, wd)
    assert r1["steps"] == cfg.supernet.num_steps
    r2 = run.ACTIONS["search"](cfg, wd)
    assert len(r2["family"]) == cfg.search.extrapolate_to + 1
    assert (wd / "search" / "mcea.json").exists()
    r3 = run.ACTIONS["retrain"](cfg, wd)
    assert {row["family"] for row in r3["rows"]} == {"searched", "compound"}
    ev = run.ACTIONS["evaluate"](cfg, wd)
    assert "inherited_accuracy" in ev and "retrain" in ev
    assert json.loads((wd / "summary.json").read_text())["results"]["search"]["mode"] == "joint"
    loaded = run.load(wd)
    assert "params" in loaded and "family" in loaded


def test_configs_and_actions():
    assert set(run.ACTIONS) == {"train-supernet", "search", "retrain", "evaluate"}
    for v in ("smoke", "default", "paper"):
        cfg = configs.get_config(v)
        from jaxlab.scalenet.space import Space

        sp = Space(cfg.space)
        assert sp.num_layers > 0
    paper = Space(configs.get_config("paper").space)
    # spec 2.2: ceil(1.64 n_max) layers per stage (4 -> 7, 1 -> 2)
    assert list(paper.n_super) == [2, 7, 7, 7, 7, 7, 2]
    import numpy as np

    from jaxlab.scalenet.sampler import stage_probabilities

    np.testing.assert_allclose(stage_probabilities(paper), np.array([1, 4, 5, 7]) / 17)
    from jaxlab.core.config import ConfigError, override

    with pytest.raises(ConfigError):
        override(configs.get_config("smoke"), ["search.nope=1"])
