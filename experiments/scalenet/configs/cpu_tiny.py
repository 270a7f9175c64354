"""ScaleNet at the scale the README's experiments ran: a few minutes per action on a
shared 2-core CPU.

    jaxlab scalenet train-supernet --config experiments/scalenet/configs/cpu_tiny.py --workdir runs/sn_hier

`get_config("uniform")` is the sampling ablation; `get_config("decoupled")` the
base-then-scale search baseline (both read `supernet_dir` / `search_dir` overrides).
"""

import dataclasses

from jaxlab.core.config import ConfigError, LoopConfig
from jaxlab.scalenet.configs import DataConfig, RetrainConfig, ScaleNetConfig, SearchConfig, SupernetConfig
from jaxlab.scalenet.space import SpaceConfig


def get_config(variant: str = "hierarchical") -> ScaleNetConfig:
    space = SpaceConfig(
        stem_channels=8, stem_stride=1,
        stages=((1, 1, 8, 1), (2, 2, 12, 3), (2, 2, 16, 3)),
        kernels=(3, 5), head_channels=48, num_classes=10,
        res_grid=((10,), (10, 12), (12, 14), (14, 16)))
    cfg = ScaleNetConfig(
        space=space,
        data=DataConfig(num_train=4096, num_val=400, num_test=1000),
        supernet=SupernetConfig(batch_size=32, lr=0.1, warmup_steps=40, loop=LoopConfig(
            num_steps=800, log_every=50, checkpoint_every=200, num_devices=1)),
        search=SearchConfig(pop_size=8, num_generations=4, num_alternations=2, n_basenet=3, eval_chunk=4,
                            eval_batch=200, base_tol=0.15, ladder_tol=0.2, extrapolate_to=4),
        retrain=RetrainConfig(batch_size=64, lr=0.1, warmup_steps=25, stages=(0, 1, 2, 3, 4), loop=LoopConfig(
            num_steps=300, log_every=50, checkpoint_every=100)),
    )
    if variant == "hierarchical":
        return cfg
    if variant == "uniform":
        return dataclasses.replace(cfg, supernet=dataclasses.replace(cfg.supernet, sampler="uniform"))
    if variant == "decoupled":
        return dataclasses.replace(cfg, search=dataclasses.replace(cfg.search, mode="decoupled"))
    raise ConfigError(f"unknown variant {variant!r}; expected hierarchical, uniform or decoupled")
