"""Example user config: the paper's setting (ImageNet scale, accelerators) with the
search's base budget written out, as a starting point for one's own file.

    jaxlab scalenet train-supernet --config experiments/scalenet/configs/paper.py --workdir runs/paper
"""

import dataclasses

from jaxlab.scalenet.configs import get_config as _get


def get_config(variant: str = "paper"):
    cfg = _get(variant)  # "smoke", "default" or "paper"
    # 306M +- 25M MACs for the base model, 2^s x base +- 50M x 2^s per scaling stage
    return dataclasses.replace(cfg, search=dataclasses.replace(cfg.search, base_macs=306e6,
                                                               base_tol=25e6 / 306e6, ladder_tol=50e6 / 306e6))
