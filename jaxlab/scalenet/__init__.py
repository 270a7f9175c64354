"""ScaleNet: joint search of the base model and its scaling strategy (ECCV 2022).

  space     search space, base encodings, scaling rule, analytic MACs
  models    masked super-supernet, standalone subnets, `extract_subnet`
  sampler   hierarchical and uniform sub-network samplers
  search    MCEA (alternating base GA and scaling search), extrapolation
  training  super-supernet training, candidate evaluation, retraining
  configs   `get_config(variant)`: smoke / default / paper
  run       CLI actions: train-supernet, search, retrain, evaluate
"""

from jaxlab.scalenet.models import SubNet, SuperNet, extract_subnet, init_params
from jaxlab.scalenet.space import Space, SpaceConfig

__all__ = ["Space", "SpaceConfig", "SuperNet", "SubNet", "extract_subnet", "init_params"]


def load(workdir):
    """Config, space, supernet parameters, family and retrain results of a run directory."""
    from jaxlab.scalenet.run import load as _load

    return _load(workdir)


__all__.append("load")
