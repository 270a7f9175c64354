"""Configs of VectorNet: `get_config("smoke" | "default" | "paper")`.

The model fields reproduce the paper's Tables 2 and 3 as overrides:
`--config.model.context=none|map|map_agents`, `--config.model.aux=false`,
`--config.model.subgraph_depth=1 --config.model.subgraph_width=128`,
`--config.model.global_depth=2 --config.model.global_width=256`.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from jaxlab.core.config import (
    ConfigError,
    LoopConfig,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Probability,
    variants,
)

Dtype = Literal["float32", "bfloat16", "float16"]


@dataclasses.dataclass
class ModelConfig:
    """The network (paper §3, defaults of §4.1.4).

    Attributes:
      subgraph_depth, subgraph_width: polyline subgraph layers (Dense -> LayerNorm -> ReLU,
        max-pool, concat); each layer outputs 2 x width.
      global_depth, global_width: self-attention layers over polylines and their Q/K/V width.
      attn_scale: scale logits by 1/sqrt(width); the paper writes softmax(Q K^T) V unscaled.
      decoder_width: hidden width of the trajectory MLP (30 x 2 outputs).
      context: which polylines the global graph sees besides the target's own trajectory
        (Table 2): none, map (lanes), map_agents (lanes and other agents).
      aux: auxiliary masked-polyline completion (training only).
      mask_rate: probability that a non-target polyline is masked for the auxiliary task
        (reconstruction: the paper gives no rate).
      aux_weight: alpha in L = L_traj + alpha L_node.
      aux_stop_gradient: stop the gradient through the completion targets
        (reconstruction; the paper's L2 normalisation argument implies it flows, so off).
      pool_includes_self: the max-pool of a subgraph layer includes the node itself
        (reconstruction; Fig. 3 draws one aggregator per polyline).
      traj_loss: huber (per coordinate, delta 1 m) or nll (Gaussian with unit variance, i.e.
        half the squared error; the paper's L_traj).
      coord_scale: coordinates (metres) are divided by this before the network.
      target_frame: the frame in which the decoder predicts the future of each agent when
        `scene.max_targets > 1`: own (offsets from the agent's last observed position, rotated
        to its own heading, as the focal target's) or focal (offsets from the agent's last
        observed position, in the focal target's axes). Both are the same for the focal
        target. Reconstruction: the paper centres and rotates on the focal target only.
      name: the network: vectornet; lstm (the LSTM encoder-decoder baseline over the
        target's own history, `baselines.HistoryLSTM`); or convnet (the rendering baseline of
        Table 4, `raster.RasterConvNet`). The auxiliary task and `context` apply to vectornet
        only (the ConvNet always sees the map and the agents).
      lstm_width: hidden size of the baseline's encoder and decoder LSTMs.
      convnet_widths: the ResNet-18's four stage widths (reconstruction; the paper's 246K-
        parameter ConvNet does not give them).
      convnet_size, convnet_metres: raster side in pixels and in metres.
      convnet_frames: history frames drawn, in steps before the last observation.
      length_classes: the training step runs VectorNet's subgraph on this many polyline
        length classes instead of padding every polyline to `scene.max_vectors` (0: padded).
        The classes are derived from the training split (`polylines.slot_budget`: polylines
        sorted by length per scene, each class a run of slots with its own vector budget);
        the values are the padded layout's, fewer padding vectors are computed.
      subgraph_vjp: how the subgraph layers are differentiated: hand (a hand-written VJP of
        Dense + LayerNorm + ReLU + max-pool, `models.dense_ln_relu_pool`; the same gradients
        as autodiff, a faster training step on the CPU) or autodiff (JAX differentiates the
        Flax modules; needed for forward-mode differentiation, e.g. `jax.jvp` or
        Hessian-vector products, of the network). Only with `pool_includes_self`.
    """

    name: Literal["vectornet", "lstm", "convnet"] = "vectornet"
    lstm_width: PositiveInt = 64
    convnet_widths: tuple[int, ...] = (10, 20, 40, 80)
    convnet_size: PositiveInt = 64
    convnet_metres: PositiveFloat = 64.0
    convnet_frames: tuple[int, ...] = (0, 4, 8, 12, 16)
    subgraph_depth: PositiveInt = 3
    subgraph_width: PositiveInt = 64
    global_depth: PositiveInt = 1
    global_width: PositiveInt = 64
    attn_scale: bool = False
    decoder_width: PositiveInt = 64
    context: Literal["none", "map", "map_agents"] = "map_agents"
    aux: bool = True
    mask_rate: Probability = 0.15
    aux_weight: NonNegativeFloat = 1.0
    aux_stop_gradient: bool = False
    pool_includes_self: bool = True
    traj_loss: Literal["huber", "nll"] = "huber"
    coord_scale: PositiveFloat = 10.0
    target_frame: Literal["own", "focal"] = "own"
    length_classes: NonNegativeInt = 3
    subgraph_vjp: Literal["hand", "autodiff"] = "hand"
    dtype: Dtype = "float32"


@dataclasses.dataclass
class SceneConfig:
    """Vectorisation and padding budgets (one compile: every batch has these shapes).

    Attributes:
      num_obs, num_future: observed and predicted steps at 10 Hz (Argoverse 1: 20 + 30).
      max_vectors: vectors per polyline; longer lanes and trajectories are split.
      max_polylines: polylines per scene (target first, then agents and lanes by distance).
      max_agents: other agents kept (nearest at the last observed step).
      map_radius: lanes with a point within this many metres of the target are kept.
      lane_spacing: lane centrelines are resampled at this arc-length spacing (metres).
      max_targets: agents predicted per scene, K. 1 (the default) predicts the focal target
        only, as the paper's experiments do. K > 1 also decodes up to K - 1 other agents from
        the same forward pass (shared context, the focal frame as input): those kept among
        `max_agents` that are observed at every history step and every future step, nearest
        first; empty slots are padded and masked (reconstruction: the paper does not describe
        how several agents share one pass).
    """

    num_obs: PositiveInt = 20
    num_future: PositiveInt = 30
    max_vectors: PositiveInt = 20
    max_polylines: PositiveInt = 48
    max_agents: PositiveInt = 10
    map_radius: PositiveFloat = 50.0
    lane_spacing: PositiveFloat = 2.0
    max_targets: PositiveInt = 1


@dataclasses.dataclass
class OptConfig:
    lr: PositiveFloat = 1e-3
    decay_every: PositiveInt = 1000
    decay_factor: PositiveFloat = 0.3
    clip_norm: PositiveFloat = 5.0


@dataclasses.dataclass
class VectorNetConfig:
    """Everything a VectorNet run depends on.

    Attributes:
      seed: initialisation, data generation, batching and masking seed.
      batch_size: scenes per step (divisible by the number of devices used).
      eval_batch_size: scenes per evaluation call (the last batch is padded and masked).
      data_dir: a folder of Argoverse files (`format`); "" uses procedural scenes.
      format: av1 (forecasting CSVs + map XML) or av2 (scenario parquet + map JSON); also the
        format `generate` writes.
      num_train, num_val, num_test: procedural scenes per split (also what `generate` writes).
      turn_fraction: share of procedural targets on a turn-only lane (the rest go straight).
      lane_change: probability that a procedural agent (the target and each other agent) on a
        lane with a left/right neighbour moves over to it (a 2-4 s minimum-jerk lateral blend)
        and follows the neighbour's route (reconstruction: the issue asks for lane changes, the
        paper's data are logged, so the rate is our choice). 0, the default of `smoke` and
        `default` and of runs saved before this field existed, gives lane-keeping agents (the
        scenes of the README's tables); `paper` uses 0.2.
      miss_threshold: metres of final displacement counted as a miss.
      select: the checkpoint `evaluate` and `predict` read: best_val (of the checkpoints kept on
        disk, `loop.keep`, the one with the lowest validation ADE of the focal target logged at
        its step; K = 1, so minADE = ADE) or last (the newest intact one). Training evaluates
        the validation split every `loop.eval_every` steps: choose `loop.checkpoint_every` a
        multiple of it so that every checkpoint has a validation score.
      num_plot: scenes drawn by `predict`.
    """

    seed: int = 0
    batch_size: PositiveInt = 32
    eval_batch_size: PositiveInt = 64
    data_dir: str = ""
    format: Literal["av1", "av2"] = "av1"
    num_train: PositiveInt = 2000
    num_val: PositiveInt = 256
    num_test: PositiveInt = 256
    turn_fraction: Probability = 0.6
    lane_change: Probability = 0.0
    miss_threshold: PositiveFloat = 2.0
    select: Literal["last", "best_val"] = "best_val"
    num_plot: PositiveInt = 4
    loop: LoopConfig = dataclasses.field(default_factory=lambda: LoopConfig(
        num_steps=3000, eval_every=500, log_every=50, checkpoint_every=500))
    scene: SceneConfig = dataclasses.field(default_factory=SceneConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    opt: OptConfig = dataclasses.field(default_factory=OptConfig)

    def validate(self) -> None:
        s = self.scene
        if s.max_polylines < 2:
            raise ConfigError("config field 'scene.max_polylines' must be >= 2 (the target and its context)")
        if s.num_obs < 2:
            raise ConfigError("config field 'scene.num_obs' must be >= 2 (a heading needs two points)")
        m = self.model
        if len(m.convnet_widths) != 4 or min(m.convnet_widths) < 1:
            raise ConfigError(f"config field 'model.convnet_widths' must be 4 positive stage widths (ResNet-18), "
                              f"got {tuple(m.convnet_widths)}")
        if s.max_targets > 1 and (m.name != "vectornet" or m.context != "map_agents"):
            raise ConfigError(f"config field 'scene.max_targets' = {s.max_targets} needs model.name=vectornet and "
                              f"model.context=map_agents (other agents are decoded from their own polylines), "
                              f"got model.name={m.name}, model.context={m.context}")
        bad = [k for k in m.convnet_frames if not 0 <= k < s.num_obs - 1]
        if bad or not m.convnet_frames:
            raise ConfigError(f"config field 'model.convnet_frames' must be steps in [0, {s.num_obs - 2}] "
                              f"(scene.num_obs = {s.num_obs}), got {tuple(m.convnet_frames)}")


def _default() -> VectorNetConfig:
    return VectorNetConfig()


def _smoke() -> VectorNetConfig:
    return VectorNetConfig(
        batch_size=16, eval_batch_size=32, num_train=128, num_val=32, num_test=32, num_plot=2,
        loop=LoopConfig(num_steps=40, eval_every=20, log_every=10, checkpoint_every=20),
        model=ModelConfig(subgraph_width=32, global_width=32, decoder_width=32),
        opt=OptConfig(lr=3e-3, decay_every=1000))


def _paper() -> VectorNetConfig:
    # Argoverse scale: 205,942 training sequences, 25 epochs with lr x0.3 every 5 epochs.
    # The paper's batch size is not given; 256 is a reconstruction.
    steps_per_epoch = 205_942 // 256
    return VectorNetConfig(
        batch_size=256, eval_batch_size=512, num_train=200_000, num_val=40_000, num_test=40_000, lane_change=0.2,
        scene=SceneConfig(max_polylines=128, max_agents=40, map_radius=100.0),
        loop=LoopConfig(num_steps=25 * steps_per_epoch, eval_every=steps_per_epoch, log_every=100,
                        checkpoint_every=steps_per_epoch),
        opt=OptConfig(lr=1e-3, decay_every=5 * steps_per_epoch, decay_factor=0.3))


def get_config(variant: str = "default") -> VectorNetConfig:
    """VectorNet's config for `variant` in {"smoke", "default", "paper"}."""
    return variants({"smoke": _smoke, "default": _default, "paper": _paper}, variant)
