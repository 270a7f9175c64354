"""Width and depth buckets: the masked supernet run on a slice of itself.

The masked `SuperNet` computes every layer at the super-supernet's width
(`ceil(max_mult c) + c` channels with bilateral coupling) and every layer of its depth,
whatever the sampled architecture uses: one compile per resolution, the right design on
accelerators. On CPU the wasted multiply-adds cost a third of the step
(`experiments/scalenet/README.md`, "Where the time went"). A **bucket** `m` (a multiplier) is the supernet cut to
`ceil(m c)` channels per slot and `ceil(n_max m)` layers per stage: the left side keeps
the first channels of every slot, the right side the last, so an architecture whose
widths and depths fit in the bucket runs the same masked forward on a smaller tensor.
The parameters are sliced inside the jitted step (`lax.dynamic_slice`, the start
chosen by the traced side), so gradients land in the full parameter tree and the update
equals the masked step's to float tolerance (`tests/scalenet/test_buckets.py`).

Buckets are the maxima of the rows of `mult_grid` (one per scaling stage), so under the
hierarchical sampler a step compiles once per (scaling stage, resolution) pair, about as
often as the masked step (once per resolution).

`supernet.buckets` chooses: "auto" (buckets on the CPU backend for runs of at least
`AUTO_MIN_STEPS` steps, masks otherwise), "on", "off". Short runs keep masks: where the
scaling stages share resolutions (the smoke space) buckets multiply the compiles, and
one compile costs seconds against milliseconds saved per step.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.scalenet.space import Space, ceil_mult

AUTO_MIN_STEPS = 1000

__all__ = ["AUTO_MIN_STEPS", "BucketView", "bucket_mults", "bucket_view", "choose_bucket", "slice_params",
           "use_buckets"]


@dataclasses.dataclass(frozen=True, eq=False)
class BucketView:
    """What `SuperNet` reads of a `Space`, cut to bucket `mult`: `cfg`, `super_stem`,
    `super_channels`, `layers` (a prefix of every stage's layers) and `layer_ids`, the
    positions of those layers in the full supernet (to gather `arch["ops"]`)."""

    cfg: Any
    mult: float
    super_stem: int
    super_channels: np.ndarray
    layers: list
    layer_ids: np.ndarray
    stage_layers: np.ndarray


def bucket_mults(space: Space) -> tuple[float, ...]:
    """The bucket multipliers of `space`: the largest multiplier of each scaling stage,
    ascending and distinct (the last covers every architecture the sampler draws)."""
    return tuple(sorted({float(max(g)) for g in space.cfg.mult_grid}))


@functools.lru_cache(maxsize=64)
def _view(space: Space, mult: float) -> BucketView:
    cfg = space.cfg
    channels = np.minimum(ceil_mult(space.base_channels, mult), space.super_channels).astype(np.int64)
    n_stage = np.minimum([int(ceil_mult(n, mult)) for n in space.n_max], space.n_super)
    keep = np.array([l["index"] < n_stage[l["stage"]] for l in space.layers])
    ids = np.nonzero(keep)[0]
    for i in ids:
        l = space.layers[i]
        full_res = space.super_channels[l["in_slot"]] == space.super_channels[l["out_slot"]]
        if l["stride"] == 1 and full_res != (channels[l["in_slot"]] == channels[l["out_slot"]]):
            raise ValueError(f"bucket {mult}: layer {i} would change its residual connection; "
                             "use supernet.buckets='off' for this space")
    return BucketView(cfg, float(mult), int(channels[0]), channels, [space.layers[i] for i in ids], ids,
                      n_stage.astype(np.int64))


def bucket_view(space: Space, mult: float) -> BucketView:
    """The supernet layout of bucket `mult` (cached per space and multiplier)."""
    return _view(space, float(mult))


def choose_bucket(space: Space, arch: dict) -> float:
    """The smallest bucket multiplier that holds `arch` (host arrays): every slot's
    active channels and every stage's layers up to its last non-identity op."""
    ch = np.asarray(arch["channels"])
    ops = np.asarray(arch["ops"])
    depth = np.zeros(space.num_stages, np.int64)
    for li, l in enumerate(space.layers):
        if ops[li] != 0:
            depth[l["stage"]] = max(depth[l["stage"]], l["index"] + 1)
    for m in bucket_mults(space):
        v = bucket_view(space, m)
        if np.all(ch <= v.super_channels) and np.all(depth <= v.stage_layers):
            return m
    return float(space.cfg.max_mult)


def slice_params(full: Any, bucket_shapes: Any, side) -> Any:
    """`full` parameters cut to the shapes of `bucket_shapes` (same tree, each axis no
    longer): from the start of every cut axis for side 0 (left), from its end for side 1
    (right); `side` may be traced. Leaves of `full` absent from `bucket_shapes` (layers
    beyond the bucket's depth) are dropped."""

    def cut(x, shape):
        if tuple(x.shape) == tuple(shape.shape):
            return x
        starts = [jnp.asarray(side, jnp.int32) * (n - b) for n, b in zip(x.shape, shape.shape)]
        return jax.lax.dynamic_slice(x, starts, shape.shape)

    def walk(f, b):
        if isinstance(b, dict):
            return {k: walk(f[k], v) for k, v in b.items()}
        return cut(f, b)

    return walk(full, bucket_shapes)


def use_buckets(setting: str, num_steps: int) -> bool:
    """`supernet.buckets` resolved for a run of `num_steps` steps: "auto" is on for the
    CPU backend and at least `AUTO_MIN_STEPS` steps."""
    if setting not in ("auto", "on", "off"):
        raise ValueError(f"supernet.buckets must be 'auto', 'on' or 'off', got {setting!r}")
    if setting == "auto":
        return jax.default_backend() == "cpu" and num_steps >= AUTO_MIN_STEPS
    return setting == "on"
