"""Video2StyleGAN (Yu et al., arXiv 2206.13078): StyleGAN2 in Flax and a ViT encoder of face videos
into W+ that reuses the key frame's fine latents, on procedural faces:

    jaxlab video2stylegan render --config smoke --workdir runs/v2s
    jaxlab video2stylegan train-generator --config smoke --workdir runs/v2s
    jaxlab video2stylegan train-aux --config smoke --workdir runs/v2s
    jaxlab video2stylegan train-encoder --config smoke --workdir runs/v2s
    jaxlab video2stylegan train-control --config smoke --workdir runs/v2s
    jaxlab video2stylegan evaluate --workdir runs/v2s
"""

from jaxlab.video2stylegan.auxnets import load_run as load_aux
from jaxlab.video2stylegan.configs import Video2StyleGANConfig, get_config
from jaxlab.video2stylegan.run import (
    encode,
    evaluate,
    load,
    render,
    train_aux,
    train_control,
    train_encoder,
    train_generator,
)

__all__ = ["Video2StyleGANConfig", "get_config", "render", "train_generator", "train_aux", "train_encoder",
           "train_control", "encode", "evaluate", "load", "load_aux"]
