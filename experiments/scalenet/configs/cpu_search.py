"""ScaleNet's search protocol at CPU scale (issue 19): a space where the GA matters.

3 stages of up to 1 / 3 / 3 MBConv+SE layers with kernels {3, 5, 7}: 3 x 39 x 39 = 4,563
canonical base models, against 40 genomes per GA (population 8, 4 generations).
Five scaling stages S0-S4 are in the super-supernet; the search optimises S1-S3
(`search.num_search_stages=3`), so S4 can be both extrapolated from S0-S3 and searched.
Candidates are scored on 1,200 held-out images (standard error <= 1.45 points).

    jaxlab scalenet train-supernet --config experiments/scalenet/configs/cpu_search.py --workdir runs/sn

Variants: "supernet" (the full scaling grids, for training the super-supernet), and
for the searches and retraining the same space with coarser scaling grids (the same
largest multiplier per stage, so the same supernet layout and buckets; every triple
scored costs seconds of CPU at 1,200 images): "joint" (MCEA), "decoupled"
(base-then-scale); `--config.search.proposal=random` turns either GA into the
random-search baseline with the same number of evaluations, and
`--config.search.mode=per_budget` gives the one-shot-per-budget baseline.
"""

import dataclasses

from jaxlab.core.config import ConfigError, LoopConfig
from jaxlab.scalenet.configs import DataConfig, RetrainConfig, ScaleNetConfig, SearchConfig, SupernetConfig
from jaxlab.scalenet.space import SpaceConfig

COARSE_MULTS = ((1.0,), (1.08, 1.16), (1.20, 1.28, 1.36), (1.40, 1.52, 1.64), (1.68, 1.84))


def get_config(variant: str = "joint") -> ScaleNetConfig:
    space = SpaceConfig(
        stem_channels=8, stem_stride=1,
        stages=((1, 1, 8, 1), (3, 2, 12, 3), (3, 2, 16, 3)),
        kernels=(3, 5, 7), head_channels=48, num_classes=10, max_mult=1.84,
        mult_grid=((1.0,), (1.04, 1.08, 1.12, 1.16), (1.20, 1.24, 1.28, 1.32, 1.36),
                   (1.40, 1.44, 1.48, 1.52, 1.56, 1.60, 1.64), (1.68, 1.72, 1.76, 1.80, 1.84)),
        res_grid=((10,), (10, 12), (12, 14), (14, 16), (16, 18)))
    cfg = ScaleNetConfig(
        space=space,
        data=DataConfig(num_train=4096, num_val=1200, num_test=1200),
        supernet=SupernetConfig(batch_size=32, lr=0.1, warmup_steps=40, loop=LoopConfig(
            num_steps=1500, log_every=50, checkpoint_every=250, num_devices=1)),
        search=SearchConfig(pop_size=8, num_generations=4, num_alternations=1, n_basenet=1, eval_chunk=4,
                            eval_batch=1200, base_tol=0.15, ladder_tol=0.2, extrapolate_to=4,
                            num_search_stages=3),
        retrain=RetrainConfig(batch_size=64, lr=0.1, warmup_steps=25, stages=(0, 1, 2, 3, 4), eval_batch_size=400,
                              compound_target="family",
                              loop=LoopConfig(num_steps=300, log_every=50, checkpoint_every=100)),
    )
    if variant == "supernet":
        return cfg
    cfg = dataclasses.replace(cfg, space=dataclasses.replace(space, mult_grid=COARSE_MULTS))
    if variant == "joint":
        return cfg
    if variant == "decoupled":
        return dataclasses.replace(cfg, search=dataclasses.replace(cfg.search, mode=variant))
    raise ConfigError(f"unknown variant {variant!r}; expected supernet, joint or decoupled")
