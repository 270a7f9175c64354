"""CoditT5 (Zhang et al., ASE 2022): edit-aware pretraining of a T5 for code and comment editing.

    jaxlab coditt5 pretrain --config smoke --workdir runs/codit
    jaxlab coditt5 finetune --config smoke --workdir runs/codit
    jaxlab coditt5 evaluate --workdir runs/codit
"""

from jaxlab.coditt5.configs import CoditConfig, get_config
from jaxlab.coditt5.run import evaluate, finetune, generate, load, pretrain

__all__ = ["CoditConfig", "get_config", "pretrain", "finetune", "evaluate", "generate", "load"]
