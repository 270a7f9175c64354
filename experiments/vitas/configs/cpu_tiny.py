"""ViTAS at the scale the README's experiments ran: a shared, loaded 2-core CPU.

    jaxlab vitas train-supernet --config experiments/vitas/configs/cpu_tiny.py:cyclic --workdir runs/vitas/cyclic_s0

scikit-learn's digits upsampled to 16x16 (1,091 train, 256 validation held out of train, 450
test; the procedural images were not learnt at all in 600 steps: loss 2.31, chance);
patch sizes {4, 8} (17 / 5 tokens), C = 32 with ratios
{1/4, 1/2, 3/4, 1}, L = 4 blocks, heads {1, 2, 4}, qkv 16 and MLP 64 with four ratios each.
The superformer is trained without augmentation in the base variant (on the procedural
images neither the weak recipe nor no augmentation left chance in a first run).
Variants (one changed field each against "cyclic"): "prefix", "bilateral" (two forwards per
step, so half the steps: equal compute), "noshift" (identity shifting off), "weak" (the
paper's weak recipe: crop, flip, erasing, CutMix), "strong" (the strong recipe).
"""

import dataclasses

from jaxlab.core.config import LoopConfig, variants
from jaxlab.vitas.configs import (
    AugConfig,
    DataConfig,
    RetrainConfig,
    SearchConfig,
    SpaceConfig,
    SupernetConfig,
    VitasConfig,
)

STEPS = 600


def _base() -> VitasConfig:
    space = SpaceConfig(image_size=16, patch_sizes=(4, 8), embed_dim=32, depth=4, heads=(1, 2, 4), qkv_dim=16,
                        mlp_dim=64, sharing="cyclic")
    return VitasConfig(
        space=space, data=DataConfig(source="digits", num_val=256),
        supernet=SupernetConfig(batch_size=32, lr=1e-3, warmup_steps=30, p_id_samples=500,
                                aug=AugConfig(kind="none"), loop=LoopConfig(
            num_steps=STEPS, log_every=20, checkpoint_every=200, num_devices=1, progress=False)),
        search=SearchConfig(pop_size=12, generations=5, eval_batch=256),
        retrain=RetrainConfig(batch_size=32, lr=1e-3, warmup_steps=30, loop=LoopConfig(
            num_steps=400, log_every=50, checkpoint_every=200, eval_every=200, num_devices=1, progress=False)))


def _with(**space_or_supernet):
    cfg = _base()
    sp = {k: v for k, v in space_or_supernet.items() if hasattr(cfg.space, k)}
    su = {k: v for k, v in space_or_supernet.items() if k not in sp}
    return dataclasses.replace(cfg, space=dataclasses.replace(cfg.space, **sp),
                               supernet=dataclasses.replace(cfg.supernet, **su))


def _bilateral():
    cfg = _with(sharing="bilateral")
    loop = dataclasses.replace(cfg.supernet.loop, num_steps=STEPS // 2, checkpoint_every=100, log_every=10)
    return dataclasses.replace(cfg, supernet=dataclasses.replace(cfg.supernet, loop=loop))


def get_config(variant: str = "cyclic") -> VitasConfig:
    return variants({
        "cyclic": _base,
        "prefix": lambda: _with(sharing="prefix"),
        "bilateral": _bilateral,
        "noshift": lambda: _with(identity_shifting=False),
        "weak": lambda: _with(aug=AugConfig(kind="weak")),
        "strong": lambda: _with(aug=AugConfig(kind="strong")),
    }, variant)
