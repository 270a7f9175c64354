"""MeGuide configs: every variant validates; bad values name the field."""

import pytest

from jaxlab.core import config as config_lib
from jaxlab.core.config import ConfigError, override
from jaxlab.meguide import configs


@pytest.mark.parametrize("variant", ["smoke", "default", "paper"])
def test_every_variant_validates_on_one_device(variant):
    cfg = config_lib.validate(configs.get_config(variant))
    assert isinstance(cfg, configs.MeGuideConfig)
    assert cfg.loop.num_devices == 1


def test_unknown_variant_is_a_config_error():
    with pytest.raises(ConfigError, match="bogus"):
        configs.get_config("bogus")


@pytest.mark.parametrize("item, field", [
    ("sampler=bogus", "'sampler'"),
    ("model.kind=mlp", "'model.kind'"),
    ("meguide.prefer=middle", "'meguide.prefer'"),
    ("feature_scale=log", "'feature_scale'"),
    ("meguide.uniform_mix=1.5", "'meguide.uniform_mix'"),
    ("saint.num_roots=0", "'saint.num_roots'"),
    ("neighbor.fanouts=(5,0)", "'neighbor.fanouts'"),
    ("loop.num_devices=8", "'loop.num_devices'"),
    ("loop.num_devices=0", "'loop.num_devices'"),
    ("budget_growth=1.0", "'budget_growth'"),
    ("cluster.clusters_per_batch=9", "'cluster.clusters_per_batch'"),
])
def test_bad_values_name_the_field(item, field):
    with pytest.raises(ConfigError, match=field):
        override(configs.get_config("smoke"), [item])


def test_train_graph_choices():
    assert configs.get_config("smoke").train_graph == "auto"
    for sampler in ("full", "cluster"):  # inductive full batch: the training graph, whole
        cfg = override(configs.get_config("smoke"), [f"sampler={sampler}", "train_graph=train"])
        assert cfg.train_graph == "train"
    with pytest.raises(ConfigError, match="train_graph"):
        override(configs.get_config("smoke"), ["train_graph=inductive"])


def test_sampler_names_come_from_the_literal():
    assert set(configs.SAMPLERS) == {"meguide", "saint-rw", "saint-node", "saint-edge", "cluster",
                                     "neighbor", "full"}
