"""A small VectorNet run shared by the multi-agent and checkpoint-selection tests."""

import dataclasses

import pytest

from jaxlab.vectornet import configs, run


def _small_config(max_targets: int = 4, **model):
    """The smoke config with tiny widths, splits and budgets (`scene.max_targets` agents)."""
    c = configs.get_config("smoke")
    c.num_train, c.num_val, c.num_test, c.batch_size, c.eval_batch_size = 24, 8, 8, 8, 8
    c.scene = dataclasses.replace(c.scene, max_polylines=24, max_vectors=10, max_targets=max_targets)
    c.model = dataclasses.replace(c.model, subgraph_width=8, global_width=8, decoder_width=8, **model)
    c.loop = dataclasses.replace(c.loop, num_steps=6, checkpoint_every=2, eval_every=2, log_every=2, keep=2,
                                 num_devices=1)
    return c


@pytest.fixture(scope="session")
def small_config():
    """`small_config(max_targets=4, **model_fields)`: the smoke config with tiny widths, splits,
    budgets and loop."""
    return _small_config


@pytest.fixture(scope="session")
def multi_target_run(tmp_path_factory):
    """`(config, workdir, train result)` of 6 steps with 4 predicted agents per scene,
    checkpoints and validation every 2 steps, the last 2 checkpoints kept."""
    c = _small_config(4)
    wd = tmp_path_factory.mktemp("vn-multi") / "run"
    return c, wd, run.train(c, wd)
