"""MeGuide (Bai, Ren & Zhang, IJIS 2022, arXiv:2112.15015): metric-guided subgraph
sampling for GNN training.

The paper's two metrics and its sampler are a documented *reconstruction* (see
`metrics`, `sampler` and `configs.MeGuideSamplerConfig`):

    jaxlab meguide train --config default --workdir runs/mg --config.sampler=meguide
    jaxlab meguide evaluate --workdir runs/mg
"""

from jaxlab.meguide.configs import MeGuideConfig, get_config
from jaxlab.meguide.metrics import connection_failure_distance, feature_smoothness, label_smoothness, node_smoothness
from jaxlab.meguide.run import evaluate, load, train
from jaxlab.meguide.sampler import MeGuideSampler

__all__ = ["MeGuideConfig", "get_config", "train", "evaluate", "load", "MeGuideSampler",
           "feature_smoothness", "label_smoothness", "node_smoothness",
           "connection_failure_distance"]
