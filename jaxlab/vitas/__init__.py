"""ViTAS: vision-transformer architecture search with cyclic weight sharing and identity shifting.

    jaxlab vitas train-supernet --config default --workdir runs/vitas
    jaxlab vitas search --workdir runs/vitas
    jaxlab vitas retrain --workdir runs/vitas
    jaxlab vitas evaluate --workdir runs/vitas
"""

from jaxlab.vitas.configs import VitasConfig, get_config
from jaxlab.vitas.run import evaluate, load, retrain, search, train_supernet

__all__ = ["VitasConfig", "get_config", "train_supernet", "search", "retrain", "evaluate", "load"]
