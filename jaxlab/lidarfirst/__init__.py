"""lidarfirst: LiDAR cluster first, camera inference later (arXiv:2111.09799), risk-prioritised.

    jaxlab lidarfirst simulate --workdir runs/lf
    jaxlab lidarfirst train-classifier --workdir runs/lf
    jaxlab lidarfirst train-detector --workdir runs/lf
    jaxlab lidarfirst run --workdir runs/lf
    jaxlab lidarfirst compare --workdir runs/lf
    jaxlab lidarfirst evaluate --workdir runs/lf
"""

from jaxlab.lidarfirst.configs import LidarFirstConfig, get_config
from jaxlab.lidarfirst.run import (  # the `compare` action is run.compare (jaxlab.lidarfirst.compare is a module)
    evaluate,
    load,
    load_detector,
    run_pipeline,
    simulate,
    train_classifier,
    train_detector,
)

__all__ = ["LidarFirstConfig", "get_config", "simulate", "train_classifier", "train_detector", "run_pipeline",
           "evaluate", "load", "load_detector"]
