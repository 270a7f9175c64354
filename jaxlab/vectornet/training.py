"""VectorNet's objective, train state and evaluation (also of the learned baselines, `model.name`).

L = L_traj + alpha L_node (paper Eq. 8). L_traj: Huber (delta 1 m) summed over x, y and
averaged over valid future steps, or the unit-variance Gaussian NLL (half the squared
error); L_node: Huber between the reconstruction of each masked polyline and its pre-mask
(L2-normalised) feature, summed over feature dimensions and averaged over masked polylines.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxlab.core import evaluation
from jaxlab.core import train as train_lib
from jaxlab.vectornet.baselines import HistoryLSTM
from jaxlab.vectornet.configs import VectorNetConfig
from jaxlab.vectornet.metrics import displacement_metrics
from jaxlab.vectornet.models import VectorNet, context_mask
from jaxlab.vectornet.polylines import NUM_FEATURES, TARGET
from jaxlab.vectornet.raster import RasterConvNet

__all__ = ["make_model", "init_state", "make_loss_fn", "make_eval_fn", "predict",
           "INIT_STREAM", "MASK_STREAM", "BATCH_KEYS"]

INIT_STREAM = 11
MASK_STREAM = 12
BATCH_KEYS = ("vectors", "vec_mask", "kind", "future", "future_mask")


def make_model(config: VectorNetConfig, *, aux: bool | None = None) -> VectorNet | HistoryLSTM | RasterConvNet:
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
                     aux=m.aux if aux is None else aux, dtype=jnp.dtype(m.dtype))


def dummy_inputs(config: VectorNetConfig, batch: int = 1):
    s = config.scene
    return (jnp.zeros((batch, s.max_polylines, s.max_vectors, NUM_FEATURES)),
            jnp.ones((batch, s.max_polylines, s.max_vectors), bool),
            jnp.zeros((batch, s.max_polylines), jnp.int32))


def make_optimizer(config: VectorNetConfig) -> optax.GradientTransformation:
    o = config.opt
    lr = optax.exponential_decay(o.lr, o.decay_every, o.decay_factor, staircase=True)
    return optax.chain(optax.clip_by_global_norm(o.clip_norm), optax.adam(lr))


def init_state(config: VectorNetConfig) -> train_lib.TrainState:
    model = make_model(config)
    key = jax.random.fold_in(jax.random.key(config.seed), INIT_STREAM)
    params = jax.jit(model.init)(key, *dummy_inputs(config))["params"]  # eager init of a ResNet takes a minute
    return train_lib.TrainState.create(params=params, tx=make_optimizer(config))


def trajectory_loss(pred, future, future_mask, kind: str = "huber"):
    """Per-scene L_traj `[B]`: Huber summed over (x, y) or half squared error, mean over valid steps."""
    err = optax.huber_loss(pred, future, delta=1.0) if kind == "huber" else 0.5 * (pred - future) ** 2
    per_step = jnp.sum(err, axis=-1)
    m = future_mask.astype(per_step.dtype)
    return jnp.sum(per_step * m, -1) / jnp.maximum(jnp.sum(m, -1), 1.0)


def sample_node_mask(key, kind, vec_mask, rate: float, context: str):
    """Bernoulli(rate) over the context polylines that are not the target's (reconstruction)."""
    eligible = context_mask(kind, context) & (kind != TARGET) & jnp.any(vec_mask, -1)
    return jax.random.bernoulli(key, rate, kind.shape) & eligible


def make_loss_fn(config: VectorNetConfig):
    """`loss_fn(params, extra, batch, key)` for `core.train.make_train_step`."""
    model = make_model(config)
    m = config.model
    aux = m.aux and m.name == "vectornet"

    def loss_fn(params, extra, batch, key):
        del extra
        if aux:
            node_mask = sample_node_mask(jax.random.fold_in(key, MASK_STREAM), batch["kind"], batch["vec_mask"],
                                         m.mask_rate, m.context)
            traj, recon, feats = model.apply({"params": params}, batch["vectors"], batch["vec_mask"], batch["kind"],
                                             node_mask)
            target = jax.lax.stop_gradient(feats) if m.aux_stop_gradient else feats
            node_err = jnp.sum(optax.huber_loss(recon, target, delta=1.0), -1)
            nm = node_mask.astype(node_err.dtype)
            node_loss = jnp.sum(node_err * nm) / jnp.maximum(jnp.sum(nm), 1.0)
        else:
            traj = model.apply({"params": params}, batch["vectors"], batch["vec_mask"], batch["kind"])
            node_loss = jnp.zeros(())
        traj_loss = jnp.mean(trajectory_loss(traj, batch["future"], batch["future_mask"], m.traj_loss))
        met = displacement_metrics(traj, batch["future"], batch["future_mask"], miss_threshold=config.miss_threshold)
        metrics = {"traj_loss": traj_loss, "node_loss": node_loss, "ade": jnp.mean(met["ade"]),
                   "fde": jnp.mean(met["fde"])}
        return traj_loss + m.aux_weight * node_loss, (metrics, None)

    return loss_fn


def make_predict_fn(config: VectorNetConfig):
    """Jitted `(params, batch) -> [B, T, 2]` (inference: no masking, no node decoder)."""
    model = make_model(config, aux=False)

    @jax.jit
    def predict_fn(params, batch):
        params = {k: v for k, v in params.items() if k != "node_decoder"}
        return model.apply({"params": params}, batch["vectors"], batch["vec_mask"], batch["kind"])

    return predict_fn


def predict(config: VectorNetConfig, params, data: dict, batch_size: int | None = None) -> np.ndarray:
    """Predictions `[N, T, 2]` in the target frame for every scene of `data` (padded batches)."""
    fn = make_predict_fn(config)
    bs = batch_size or config.eval_batch_size
    arrays = {k: data[k] for k in BATCH_KEYS}
    out = [np.asarray(fn(params, batch))[np.asarray(mask)] for batch, mask in evaluation.padded_batches(arrays, bs)]
    return np.concatenate(out)


def make_eval_fn(config: VectorNetConfig, data: dict):
    """`state -> {ade, fde, de1, de2, de3, miss_rate}` over `data` (one compile)."""
    model = make_model(config, aux=False)

    @jax.jit
    def per_scene(params, batch):
        params = {k: v for k, v in params.items() if k != "node_decoder"}
        pred = model.apply({"params": params}, batch["vectors"], batch["vec_mask"], batch["kind"])
        out = displacement_metrics(pred, batch["future"], batch["future_mask"], miss_threshold=config.miss_threshold)
        out["miss_rate"] = out.pop("miss")
        return out

    arrays = {k: data[k] for k in BATCH_KEYS}

    def eval_fn(state) -> dict:
        return evaluation.batched_sum(per_scene, arrays, config.eval_batch_size, state.params)

    return eval_fn
