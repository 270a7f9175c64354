"""ScaleNet: joint search of the base model and its scaling strategy (ECCV 2022).

  space     search space, base encodings, scaling rule, analytic MACs (true and official rules)
  released  the released family S0-S5 as a preset
  models    masked super-supernet, standalone subnets, `extract_subnet`
  sampler   hierarchical and uniform sub-network samplers
  data      the procedural train / val / test images, per resolution
  training  the optimizer and loss shared by both trainings
  supernet  super-supernet training (`core.train.fit`), scoring with inherited weights
  search    MCEA (alternating base GA and scaling search), extrapolation, compound scaling
  retrain   retraining family members from scratch, each in its own stage directory
  ranking   Kendall tau of inherited against from-scratch accuracy (and of MACs)
  report    figures and the experiments' tables
  configs   `get_config(variant)`: smoke / default / paper
  run       CLI actions: train-supernet, search, retrain, rank, evaluate; `load(workdir)`
"""

from jaxlab.scalenet.models import SubNet, SuperNet, extract_subnet, init_params
from jaxlab.scalenet.space import Space, SpaceConfig

__all__ = ["Space", "SpaceConfig", "SuperNet", "SubNet", "extract_subnet", "init_params", "load"]


def load(workdir):
    """`actions.Loaded` of a run directory: config, supernet and its state, family and
    retraining results (see `jaxlab.scalenet.run.load`)."""
    from jaxlab.scalenet.run import load as _load

    return _load(workdir)
