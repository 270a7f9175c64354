"""CORAL (Zhang, Maddila et al., ICSE-SEIP 2023): reviewer recommendation with a GCN over a
socio-technical graph built from git history (or a JSON-lines export of pull requests).

    jaxlab coral train --config smoke --workdir runs/coral
    jaxlab coral recommend --config.repo=PATH --config.rev=HEAD --workdir runs/coral-mine
"""

from jaxlab.coral.configs import CoralConfig, get_config
from jaxlab.coral.run import build_graph, evaluate, load, recommend, train

__all__ = ["CoralConfig", "get_config", "build_graph", "train", "evaluate", "recommend", "load"]
