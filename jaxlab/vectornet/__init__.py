"""VectorNet (Gao et al., CVPR 2020): a hierarchical graph network over vectorised maps and
agent trajectories, with procedural intersection scenes and Argoverse 1/2 readers.

    jaxlab vectornet train --config default --workdir runs/vn
    jaxlab vectornet evaluate --workdir runs/vn
"""

from jaxlab.vectornet.configs import VectorNetConfig, get_config
from jaxlab.vectornet.run import evaluate, generate, load, predict, train

__all__ = ["VectorNetConfig", "get_config", "generate", "train", "evaluate", "predict", "load"]
