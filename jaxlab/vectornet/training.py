"""VectorNet's objective, train state and evaluation (also of the learned baselines, `model.name`).

L = L_traj + alpha L_node (paper Eq. 8). L_traj: Huber (delta 1 m) summed over x, y and
averaged over valid future steps, or the unit-variance Gaussian NLL (half the squared
error); L_node: Huber between the reconstruction of each masked polyline and its pre-mask
(L2-normalised) feature, summed over feature dimensions and averaged over masked polylines.

Multi-agent prediction (`scene.max_targets = K > 1`, reconstruction): the decoder reads the
global-graph feature of each predicted agent's row; each agent's future is predicted in the
decoder frame of `model.target_frame` (`to_decoder_frame`), and L_traj is the mean of the
per-agent losses over the valid (agent, scene) pairs of the batch. Agents predicted besides
the target are never masked for the auxiliary task. Metrics are reported for the focal target
(as with K = 1) and, prefixed `all_`, over every valid predicted agent.
"""

from __future__ import annotations

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxlab.core import config as config_lib
from jaxlab.core import evaluation, runtime
from jaxlab.core import train as train_lib
from jaxlab.vectornet.baselines import HistoryLSTM
from jaxlab.vectornet.configs import VectorNetConfig
from jaxlab.vectornet.metrics import displacement_metrics, numpy_metrics
from jaxlab.vectornet.models import VectorNet, context_mask
from jaxlab.vectornet.polylines import NUM_FEATURES, TARGET, slot_budget
from jaxlab.vectornet.raster import RasterConvNet

__all__ = ["make_model", "slot_vectors", "init_state", "compiler_options", "make_loss_fn", "make_eval_fn", "predict",
           "predict_targets",
           "batch_keys", "target_scores", "to_decoder_frame", "from_decoder_frame", "multi_target_loss",
           "INIT_STREAM", "MASK_STREAM", "BATCH_KEYS", "TARGET_KEYS"]

INIT_STREAM = 11
MASK_STREAM = 12
BATCH_KEYS = ("vectors", "vec_mask", "kind", "future", "future_mask")
TARGET_KEYS = ("targets", "target_valid", "target_future", "target_future_mask", "target_origin", "target_heading")


def batch_keys(config: VectorNetConfig) -> tuple[str, ...]:
    """The arrays of a batch: `BATCH_KEYS`, and `TARGET_KEYS` with `scene.max_targets > 1`."""
    return BATCH_KEYS + (TARGET_KEYS if config.scene.max_targets > 1 else ())


def to_decoder_frame(xy, origin, heading, frame: str = "own"):
    """Positions `xy [..., K, T, 2]` in the focal target's frame as the decoder predicts them.

    `origin [..., K, 2]` and `heading [..., K]` are each agent's last observed position and
    heading in the focal frame. `own`: R(-heading) (xy - origin); `focal`: xy - origin. For
    the focal target (origin 0, heading 0) both are the identity.
    """
    d = xy - origin[..., None, :]
    if frame == "focal":
        return d
    c, s = jnp.cos(heading)[..., None], jnp.sin(heading)[..., None]
    return jnp.stack([c * d[..., 0] + s * d[..., 1], -s * d[..., 0] + c * d[..., 1]], axis=-1)


def from_decoder_frame(xy, origin, heading, frame: str = "own", xp=jnp):
    """Inverse of `to_decoder_frame`: decoder outputs `[..., K, T, 2]` into the focal frame."""
    if frame != "focal":
        c, s = xp.cos(heading)[..., None], xp.sin(heading)[..., None]
        xy = xp.stack([c * xy[..., 0] - s * xy[..., 1], s * xy[..., 0] + c * xy[..., 1]], axis=-1)
    return xy + origin[..., None, :]


def make_model(config: VectorNetConfig, *, aux: bool | None = None,
               slot_vectors: tuple[int, ...] = ()) -> VectorNet | HistoryLSTM | RasterConvNet:
    """The network of `config.model`; `slot_vectors` gives VectorNet's subgraph its length
    classes (`models.PolylineSubgraph`: the same outputs, fewer padded vectors computed)."""
    m = config.model
    if m.name == "lstm":
        return HistoryLSTM(num_obs=config.scene.num_obs, num_future=config.scene.num_future, width=m.lstm_width,
                           coord_scale=m.coord_scale)
    if m.name == "convnet":
        return RasterConvNet(num_obs=config.scene.num_obs, num_future=config.scene.num_future,
                             widths=tuple(m.convnet_widths), size=m.convnet_size, metres=m.convnet_metres,
                             frames=tuple(m.convnet_frames), coord_scale=m.coord_scale)
    return VectorNet(num_future=config.scene.num_future, subgraph_depth=m.subgraph_depth,
                     subgraph_width=m.subgraph_width, global_depth=m.global_depth, global_width=m.global_width,
                     attn_scale=m.attn_scale, decoder_width=m.decoder_width, context=m.context,
                     pool_includes_self=m.pool_includes_self, coord_scale=m.coord_scale,
                     aux=m.aux if aux is None else aux, dtype=jnp.dtype(m.dtype), slot_vectors=tuple(slot_vectors),
                     subgraph_hand_vjp=m.subgraph_vjp == "hand")


def slot_vectors(config: VectorNetConfig, vec_mask) -> tuple[int, ...]:
    """The subgraph's length classes for batches drawn from scenes `vec_mask [N, P, V]`:
    `polylines.slot_budget` with `model.length_classes` classes; () (the padded layout) when
    that is 0 or the network is not VectorNet."""
    m = config.model
    if m.name != "vectornet" or not m.length_classes:
        return ()
    return slot_budget(vec_mask, m.length_classes)


def dummy_inputs(config: VectorNetConfig, batch: int = 1):
    s = config.scene
    return (jnp.zeros((batch, s.max_polylines, s.max_vectors, NUM_FEATURES)),
            jnp.ones((batch, s.max_polylines, s.max_vectors), bool),
            jnp.zeros((batch, s.max_polylines), jnp.int32))


def make_optimizer(config: VectorNetConfig) -> optax.GradientTransformation:
    o = config.opt
    lr = optax.exponential_decay(o.lr, o.decay_every, o.decay_factor, staircase=True)
    return optax.chain(optax.clip_by_global_norm(o.clip_norm), optax.adam(lr))


def _network_key(config: VectorNetConfig) -> str:
    """What the network depends on (`model` and `scene`), as a cache key."""
    return json.dumps({"model": config_lib.to_dict(config.model), "scene": config_lib.to_dict(config.scene)},
                      sort_keys=True)


def _network_config(key: str) -> VectorNetConfig:
    return config_lib.from_dict(VectorNetConfig, json.loads(key))


@functools.lru_cache(maxsize=8)
def _init_fn(key: str):
    """The jitted `model.init` of a network, compiled once per network in a process."""
    return jax.jit(make_model(_network_config(key)).init)  # eager init of a ResNet takes a minute


def init_state(config: VectorNetConfig) -> train_lib.TrainState:
    key = jax.random.fold_in(jax.random.key(config.seed), INIT_STREAM)
    params = _init_fn(_network_key(config))(key, *dummy_inputs(config))["params"]
    return train_lib.TrainState.create(params=params, tx=make_optimizer(config))


def trajectory_loss(pred, future, future_mask, kind: str = "huber"):
    """Per-scene L_traj `[B]`: Huber summed over (x, y) or half squared error, mean over valid steps."""
    err = optax.huber_loss(pred, future, delta=1.0) if kind == "huber" else 0.5 * (pred - future) ** 2
    per_step = jnp.sum(err, axis=-1)
    m = future_mask.astype(per_step.dtype)
    return jnp.sum(per_step * m, -1) / jnp.maximum(jnp.sum(m, -1), 1.0)


def sample_node_mask(key, kind, vec_mask, rate: float, context: str, targets=None, target_valid=None):
    """Bernoulli(rate) over the context polylines that are not the target's (reconstruction),
    nor, given `targets [B, K]` and `target_valid [B, K]`, the rows of other predicted agents."""
    eligible = context_mask(kind, context) & (kind != TARGET) & jnp.any(vec_mask, -1)
    if targets is not None:
        rows = jnp.arange(kind.shape[-1])
        predicted = jnp.any((targets[..., :, None] == rows) & target_valid[..., :, None], axis=-2)
        eligible = eligible & ~predicted
    return jax.random.bernoulli(key, rate, kind.shape) & eligible


def multi_target_loss(pred, batch, kind: str = "huber", frame: str = "own"):
    """`(L_traj, per-agent losses [B, K], truth [B, K, T, 2])` of decoder outputs `pred
    [B, K, T, 2]`: per-agent `trajectory_loss` against the futures in the decoder frame, averaged
    over the valid agents of the batch (padded slots, whatever they hold, count for nothing)."""
    truth = to_decoder_frame(batch["target_future"], batch["target_origin"], batch["target_heading"], frame)
    per = trajectory_loss(pred, truth, batch["target_future_mask"], kind)
    valid = batch["target_valid"]
    loss = jnp.sum(jnp.where(valid, per, 0.0)) / jnp.maximum(jnp.sum(valid), 1)
    return loss, per, truth


def _target_metrics(pred, truth, batch, miss_threshold: float) -> dict:
    """Per-scene sums over valid predicted agents `{all_<metric>_sum [B], num_targets [B]}`."""
    b, k = pred.shape[:2]
    met = displacement_metrics(pred.reshape((b * k,) + pred.shape[2:]), truth.reshape((b * k,) + truth.shape[2:]),
                               batch["target_future_mask"].reshape(b * k, -1), miss_threshold=miss_threshold)
    valid = batch["target_valid"]
    out = {f"all_{n}_sum": jnp.sum(jnp.where(valid, v.reshape(b, k), 0.0), -1) for n, v in met.items()}
    out["num_targets"] = jnp.sum(valid, -1).astype(jnp.float32)
    return out


def compiler_options(config: VectorNetConfig, differentiated: bool = True) -> dict | None:
    """XLA options of the jitted steps on the CPU; `differentiated`: for a training step
    (False: prediction and evaluation).

    Differentiated by JAX (`model.subgraph_vjp=autodiff`, or `pool_includes_self=False`),
    VectorNet's subgraph sums its bias and LayerNorm gradients over every axis but the last
    (`[B, P, V, 64]` cotangents), which XLA's own loops ran at 12 ms each against 0.3 ms in
    YNNPACK, so those steps hand reductions to YNNPACK (the training step at batch 32 went
    from 199 to 96 ms on one core; see `jaxlab.core.runtime`), as the forward-only programs
    do. The hand-written VJP (`models.dense_ln_relu_pool`, the default) computes those sums
    as matrix products and its LayerNorm means in 32-entry chunks, which XLA fuses with
    their producers; there YNNPACK's reductions materialise the LayerNorm scale as a whole
    broadcast and the normalised activations in passes of their own, and the training step
    takes less time with dots only. The baselines keep the default.

    Measured at batch 32 (the paper network without the auxiliary head, CPU; profiles with
    `jaxlab.core.profiling.op_times` on one core, A/B runs in one process, medians):

    - with YNNPACK's reductions, the broadcasts of the LayerNorm scale took 2.3 ms per step
      and the separate passes of the normalised activations 2.5 ms;
    - without them and with the VJP's former `jnp.sum`/`jnp.mean`, the row sums took up to
      17.9 ms each (138 ms per step), and the means over 64 features 7.8 ms per step as
      reduce-windows;
    - the training step against the previous form, with the PyG peer of
      `scripts/bench_vectornet.py` alternating (`--repeats 20`): 57.7 against 67.1 ms on one
      core, 41.2 against 48.3 ms on two;
    - inference with the chunked means: 14.8 ms against 11.4 with `jnp.mean`, both with
      YNNPACK's reductions (two cores), hence `jnp.mean` in the forward-only programs;
    - not kept: flax's fast variance `E[z^2] - E[z]^2` (no gain), an unrolled max-pool (39 ->
      56 ms on two cores: XLA fused it into every consumer), a max-pool over the integer bits
      of the non-negative activations or behind `materialize` (no gain), the 15,360-row weight
      gradients as 2 or 4 row chunks or a 2-way batched contraction (37.2 -> 38.5-40.4 ms).
    """
    m = config.model
    hand = m.subgraph_vjp == "hand" and m.pool_includes_self
    return runtime.cpu_compiler_options(reductions=m.name == "vectornet" and not (differentiated and hand))


def make_loss_fn(config: VectorNetConfig, slot_vectors: tuple[int, ...] = ()):
    """`loss_fn(params, extra, batch, key)` for `core.train.make_train_step`; with `slot_vectors`
    (`slot_vectors(config, train_vec_mask)`) the subgraph runs on length classes, which every
    batch must fit (a batch that does not gets a NaN loss)."""
    model = make_model(config, slot_vectors=slot_vectors)
    m = config.model
    aux = m.aux and m.name == "vectornet"
    multi = config.scene.max_targets > 1

    def loss_fn(params, extra, batch, key):
        del extra
        tgt = {"targets": batch["targets"]} if multi else {}
        if aux:
            node_mask = sample_node_mask(jax.random.fold_in(key, MASK_STREAM), batch["kind"], batch["vec_mask"],
                                         m.mask_rate, m.context, batch.get("targets"), batch.get("target_valid"))
            traj, recon, feats = model.apply({"params": params}, batch["vectors"], batch["vec_mask"], batch["kind"],
                                             node_mask, **tgt)
            target = jax.lax.stop_gradient(feats) if m.aux_stop_gradient else feats
            node_err = jnp.sum(optax.huber_loss(recon, target, delta=1.0), -1)
            nm = node_mask.astype(node_err.dtype)
            node_loss = jnp.sum(node_err * nm) / jnp.maximum(jnp.sum(nm), 1.0)
        else:
            traj = model.apply({"params": params}, batch["vectors"], batch["vec_mask"], batch["kind"], **tgt)
            node_loss = jnp.zeros(())
        if multi:
            traj_loss, _, truth = multi_target_loss(traj, batch, m.traj_loss, m.target_frame)
            allm = _target_metrics(traj, truth, batch, config.miss_threshold)
            count = jnp.maximum(jnp.sum(allm["num_targets"]), 1.0)
            extra_metrics = {"all_ade": jnp.sum(allm["all_ade_sum"]) / count,
                             "all_fde": jnp.sum(allm["all_fde_sum"]) / count}
            traj = traj[:, 0]  # the focal target: its decoder frame is the focal frame
        else:
            traj_loss = jnp.mean(trajectory_loss(traj, batch["future"], batch["future_mask"], m.traj_loss))
            extra_metrics = {}
        met = displacement_metrics(traj, batch["future"], batch["future_mask"], miss_threshold=config.miss_threshold)
        metrics = {"traj_loss": traj_loss, "node_loss": node_loss, "ade": jnp.mean(met["ade"]),
                   "fde": jnp.mean(met["fde"]), **extra_metrics}
        return traj_loss + m.aux_weight * node_loss, (metrics, None)

    return loss_fn


def make_predict_fn(config: VectorNetConfig, slot_vectors: tuple[int, ...] = ()):
    """Jitted `(params, batch) -> [B, T, 2]` (inference: no masking, no node decoder); with
    `scene.max_targets > 1`, `[B, K, T, 2]` for every predicted agent, in the focal frame (slot 0
    is the focal target's prediction). `slot_vectors`: the subgraph's length classes, which
    every batch must fit (`make_loss_fn`)."""
    return _predict_fn(_network_key(config), tuple(slot_vectors))


@functools.lru_cache(maxsize=8)
def _predict_fn(key: str, slots: tuple[int, ...]):
    """`make_predict_fn`, compiled once per network and length classes in a process."""
    config = _network_config(key)
    model = make_model(config, aux=False, slot_vectors=slots)
    multi = config.scene.max_targets > 1

    @functools.partial(jax.jit, compiler_options=compiler_options(config, differentiated=False))
    def predict_fn(params, batch):
        params = {k: v for k, v in params.items() if k != "node_decoder"}
        if not multi:
            return model.apply({"params": params}, batch["vectors"], batch["vec_mask"], batch["kind"])
        out = model.apply({"params": params}, batch["vectors"], batch["vec_mask"], batch["kind"],
                          targets=batch["targets"])
        return from_decoder_frame(out, batch["target_origin"], batch["target_heading"], config.model.target_frame)

    return predict_fn


def predict(config: VectorNetConfig, params, data: dict, batch_size: int | None = None,
            all_targets: bool = False) -> np.ndarray:
    """Predictions `[N, T, 2]` of the focal target in its frame for every scene of `data`
    (padded batches); with `all_targets` (needs `scene.max_targets > 1`), `[N, K, T, 2]` of
    every predicted agent (slots with `target_valid` False hold garbage), also in the focal
    target's frame."""
    multi = config.scene.max_targets > 1
    if all_targets and not multi:
        raise ValueError("predict(all_targets=True) needs scene.max_targets > 1")
    fn = make_predict_fn(config, slot_vectors(config, data["vec_mask"]))
    bs = batch_size or config.eval_batch_size
    arrays = {k: data[k] for k in batch_keys(config)}
    out = [np.asarray(fn(params, batch))[np.asarray(mask)] for batch, mask in evaluation.padded_batches(arrays, bs)]
    out = np.concatenate(out)
    return out[:, 0] if multi and not all_targets else out


def target_scores(config: VectorNetConfig, arrays: dict, pred: np.ndarray) -> dict:
    """Mean metrics over every valid predicted agent of `arrays` (`pred [N, K, T, 2]` in the
    focal frame, `predict_targets`), with `num_targets`, their count."""
    valid = np.asarray(arrays["target_valid"], bool)
    met = numpy_metrics(pred[valid], arrays["target_future"][valid], arrays["target_future_mask"][valid],
                        miss_threshold=config.miss_threshold)
    met["miss_rate"] = met.pop("miss")
    return {**{k: float(np.mean(v)) for k, v in met.items()}, "num_targets": int(valid.sum())}


def predict_targets(config: VectorNetConfig, params, data: dict, batch_size: int | None = None) -> np.ndarray:
    """`predict(..., all_targets=True)`: `[N, K, T, 2]` in the focal target's frame."""
    return predict(config, params, data, batch_size, all_targets=True)


def make_eval_fn(config: VectorNetConfig, data: dict):
    """`state -> {ade, fde, de1, de2, de3, miss_rate}` of the focal target over `data` (one
    compile); with `scene.max_targets > 1` also `all_<metric>`, the means over every valid
    predicted agent of the split, and `num_targets`, their mean number per scene."""
    model = make_model(config, aux=False, slot_vectors=slot_vectors(config, data["vec_mask"]))
    multi = config.scene.max_targets > 1

    @functools.partial(jax.jit, compiler_options=compiler_options(config, differentiated=False))
    def per_scene(params, batch):
        params = {k: v for k, v in params.items() if k != "node_decoder"}
        tgt = {"targets": batch["targets"]} if multi else {}
        pred = model.apply({"params": params}, batch["vectors"], batch["vec_mask"], batch["kind"], **tgt)
        extra = {}
        if multi:
            truth = to_decoder_frame(batch["target_future"], batch["target_origin"], batch["target_heading"],
                                     config.model.target_frame)
            extra = _target_metrics(pred, truth, batch, config.miss_threshold)
            pred = pred[:, 0]
        out = displacement_metrics(pred, batch["future"], batch["future_mask"], miss_threshold=config.miss_threshold)
        out["miss_rate"] = out.pop("miss")
        return {**out, **extra}

    arrays = {k: data[k] for k in batch_keys(config)}

    def eval_fn(state) -> dict:
        out = evaluation.batched_sum(per_scene, arrays, config.eval_batch_size, state.params)
        if multi:
            count = max(out["num_targets"], 1e-12)
            for k in [k for k in out if k.endswith("_sum")]:
                name = k[:-len("_sum")].replace("all_miss", "all_miss_rate")
                out[name] = out.pop(k) / count
        return out

    return eval_fn
