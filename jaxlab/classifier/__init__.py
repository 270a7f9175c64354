"""The reference method: a small CNN on scikit-learn's digits.

It exercises every part of the engine (config, TFDS array_record data through Grain,
data-parallel jitted step, `fit` with eval, checkpoints, resume, metrics, summary) and is
the template new methods copy:

    jaxlab classifier train --config default --workdir runs/digits
    jaxlab classifier evaluate --workdir runs/digits
"""

from jaxlab.classifier.configs import ClassifierConfig, get_config
from jaxlab.classifier.run import evaluate, load, train

__all__ = ["ClassifierConfig", "get_config", "train", "evaluate", "load"]
