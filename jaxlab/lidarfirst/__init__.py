"""lidarfirst: LiDAR cluster first, camera inference later (arXiv:2111.09799), risk-prioritised.

    jaxlab lidarfirst simulate --workdir runs/lf
    jaxlab lidarfirst train-classifier --workdir runs/lf
    jaxlab lidarfirst run --workdir runs/lf
    jaxlab lidarfirst evaluate --workdir runs/lf
"""

from jaxlab.lidarfirst.configs import LidarFirstConfig, get_config
from jaxlab.lidarfirst.run import evaluate, load, run_pipeline, simulate, train_classifier

__all__ = ["LidarFirstConfig", "get_config", "simulate", "train_classifier", "run_pipeline", "evaluate", "load"]
