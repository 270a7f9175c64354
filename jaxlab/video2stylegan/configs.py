"""Configs of video2stylegan: `get_config("smoke" | "default" | "paper")`.

Stages, each with its own `loop` and its own directory in the workdir: `gan` (StyleGAN2 on
procedural faces, `generator/`), `aux` (the auxiliary networks `proc_landmarks`, `proc_3dmm`,
`proc_id`, `aux/<net>/`), `encoder` (the ViT into W+ trained on clips, `encoder/`) and
`control` (the pose/expression control network in W+, `control/`).
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

Resolution = Literal[16, 32, 64, 128, 256, 512, 1024]


@dataclasses.dataclass
class FaceConfig:
    """The procedural face renderer and its videos.

    Attributes:
      resolution: rendered frame size (square).
      mesh_level: icosphere subdivisions of the head mesh (2: 162 vertices, 320 triangles).
      focal: focal length in units of the image size (f_px = focal · resolution).
      distance: camera-to-head-centre distance (head radius ~1).
      max_yaw, max_pitch, max_roll: pose ranges in degrees.
      softness: edge softness of the rasteriser in pixels; depth_gamma: SoftRas depth temperature.
      num_identities: identities of the training renders.
      train_images: random single frames for the GAN.
      videos, frames: procedural evaluation videos (held-out identities) and frames per video.
      clip_videos: training videos of the encoder (training identities).
    """

    resolution: Resolution = 32
    mesh_level: PositiveInt = 2
    focal: PositiveFloat = 1.5
    distance: PositiveFloat = 4.0
    max_yaw: NonNegativeFloat = 35.0
    max_pitch: NonNegativeFloat = 15.0
    max_roll: NonNegativeFloat = 10.0
    softness: PositiveFloat = 0.5
    depth_gamma: PositiveFloat = 0.02
    num_identities: PositiveInt = 64
    train_images: PositiveInt = 2048
    videos: PositiveInt = 4
    frames: PositiveInt = 16
    clip_videos: PositiveInt = 64


@dataclasses.dataclass
class GanConfig:
    """StyleGAN2 (the `cifar`/`auto`-like small setting by default; see the spec §2.4).

    Attributes:
      channel_base, channel_max: channels at resolution r are min(channel_base / r, channel_max).
      conv_clamp: activation clamp (0: none).
      mbstd_group: minibatch-stddev group size (1: off).
      r1_gamma, r1_every: R1 weight γ and lazy interval; pl_weight, pl_every, pl_batch_shrink,
        pl_decay: path-length regularisation.
      lazy_updates: on a lazy-regularisation step, the penalty joins the main loss in one optimizer
        update ("joint") or takes a second update of its own after the main one ("separate", the
        reference's Greg/Dreg phases; see `gan.make_gan_step`).
      style_mixing: style-mixing probability. ema_kimg, ema_rampup: G-EMA half-life (thousands
        of images) and ramp-up (0: none). w_avg_beta: decay of the tracked w̄.
      truncation_psi: ψ of the samples drawn for figures and the encoder's w̄ offset is w̄ itself.
      up_conv: the generator's up-sampling convolutions: "transpose" (StyleGAN2's stride-2
        transposed convolution then the FIR, `fir.upsample_conv2d`) or "upsample" (FIR
        up-sampling then a SAME 3x3 convolution: the same away from a 1-pixel border, which
        sees zeros instead of the interpolated image; the generator of this library before
        "transpose", and of the experiment tables measured with it).
      weights: a stylegan2-ada-pytorch generator `state_dict` saved as `.safetensors` or `.npz`
        that `import-generator` makes this run's generator (`jaxlab.video2stylegan.convert`);
        the shape fields above must agree with it ("": none).
    """

    resolution: Resolution = 32
    z_dim: PositiveInt = 128
    w_dim: PositiveInt = 128
    mapping_layers: PositiveInt = 2
    mapping_lr_mul: PositiveFloat = 0.01
    channel_base: PositiveInt = 2048
    channel_max: PositiveInt = 64
    conv_clamp: NonNegativeFloat = 256.0
    mbstd_group: PositiveInt = 4
    batch_size: PositiveInt = 16
    g_lr: PositiveFloat = 0.0025
    d_lr: PositiveFloat = 0.0025
    r1_gamma: NonNegativeFloat = 0.05
    r1_every: PositiveInt = 16
    pl_weight: NonNegativeFloat = 2.0
    pl_every: PositiveInt = 4
    pl_batch_shrink: PositiveInt = 2
    pl_decay: Probability = 0.01
    lazy_updates: Literal["joint", "separate"] = "joint"
    style_mixing: Probability = 0.9
    ema_kimg: PositiveFloat = 5.0
    ema_rampup: NonNegativeFloat = 0.05
    w_avg_beta: Probability = 0.995
    truncation_psi: Probability = 1.0
    up_conv: Literal["transpose", "upsample"] = "transpose"
    weights: str = ""
    loop: LoopConfig = dataclasses.field(default_factory=lambda: LoopConfig(
        num_steps=3000, log_every=50, checkpoint_every=500, num_devices=1))


@dataclasses.dataclass
class AuxConfig:
    """The auxiliary networks trained on procedural renders (`train-aux`), one after the other.

    `proc_landmarks` regresses the K exact 2-D landmarks, `proc_3dmm` the face model's identity,
    expression and pose parameters (its vertices follow from the known model), `proc_id` an
    L2-normalised identity embedding trained with an additive angular margin softmax over the
    training identities. They are self-trained stand-ins for a landmark detector, a 3DMM
    regressor and a face-recognition network, and carry none of those names.

    Attributes:
      num_identities: identities of the training renders (their own identity stream).
      train_images: random training renders (pose and expression drawn per render).
      eval_identities, eval_per_identity: held-out identities and renders of each for evaluation.
      stages: channels of the conv stages (`jaxlab.nn.ConvBlock`, 2x2 average pooling between).
      blocks_per_stage: conv blocks per stage; hidden: width of the MLP head.
      embed_dim: dimension of the `proc_id` embedding.
      margin, scale: additive angular margin m (radians) and logit scale s of `proc_id`'s loss.
      vertex_weight: weight of the vertex term of `proc_3dmm`'s loss beside the parameter term.
      batch_size, lr: Adam on every net.
      loop: steps and periods, the same for each of the three nets.
    """

    num_identities: PositiveInt = 128
    train_images: PositiveInt = 2048
    eval_identities: PositiveInt = 32
    eval_per_identity: PositiveInt = 4
    stages: tuple[PositiveInt, ...] = (32, 64, 64)
    blocks_per_stage: PositiveInt = 1
    hidden: PositiveInt = 128
    embed_dim: PositiveInt = 32
    margin: NonNegativeFloat = 0.2
    scale: PositiveFloat = 16.0
    vertex_weight: NonNegativeFloat = 1.0
    batch_size: PositiveInt = 64
    lr: PositiveFloat = 2e-3
    loop: LoopConfig = dataclasses.field(default_factory=lambda: LoopConfig(
        num_steps=1000, log_every=50, checkpoint_every=250, eval_every=250, num_devices=1))


@dataclasses.dataclass
class EncoderConfig:
    """The ViT encoder into W+ and its training on clips.

    Attributes:
      reuse_start: W+ entries from this index on come from the key frame (reconstruction; the
        spec's defaults: 4 at 32 px, 6 at 64 px, 8 at 1024 px; 7 = pSp's split at 1024).
      reuse: train with temporal reuse (False: every frame encodes all of W+, the per-frame baseline).
      l2: weight of the pixel loss.
      landmark, mesh, identity: weights of the landmark, mesh and identity terms (reconstruction:
        the paper gives no weights; pSp's identity weight is 0.1). 0 leaves a term out (not traced);
        all 0 is the pixel loss alone. Any non-zero weight needs the auxiliary networks of `aux_from`.
      aux_from: run directory whose `aux/` holds the frozen auxiliary networks ("": this workdir; a
        relative path is taken from the current directory). `evaluate` uses them when present.
      delta_scale: scale of the heads' Δw.
    """

    reuse_start: NonNegativeInt = 4
    reuse: bool = True
    patch_size: PositiveInt = 4
    embed_dim: PositiveInt = 96
    depth: PositiveInt = 3
    num_heads: PositiveInt = 4
    delta_scale: PositiveFloat = 1.0
    batch_size: PositiveInt = 16
    lr: PositiveFloat = 1e-3
    l2: PositiveFloat = 1.0
    landmark: NonNegativeFloat = 0.0
    mesh: NonNegativeFloat = 0.0
    identity: NonNegativeFloat = 0.0
    aux_from: str = ""
    loop: LoopConfig = dataclasses.field(default_factory=lambda: LoopConfig(
        num_steps=1500, log_every=50, checkpoint_every=500, eval_every=500, num_devices=1))


@dataclasses.dataclass
class ControlConfig:
    """The pose/expression control network F(w_<k, p_tgt) -> Δw_<k (`control.py`; reconstruction:
    the paper gives no architecture, weights or target distribution).

    Attributes:
      hidden, depth: width and number of hidden layers of the MLP.
      keep: probability that an attribute group (yaw, pitch, roll, expression) keeps its current
        value in a training target (else a fresh draw from the renderer's distribution).
      identity: weight of the identity term 1 − cos(proc_id(G(w + Δw)), proc_id(G(w))).
      reg: weight of the edit size mean ‖Δw‖² / w_dim.
      truncation_psi: ψ of the training and evaluation latents.
      judge_from: run directory whose `aux/` holds the proc_3dmm and proc_id that *measure* the
        edits ("": the nets trained against, from `encoder.aux_from` or this workdir; a run with
        another seed gives an independent measurement).
      eval_latents: held-out latents edited in evaluation; eval_yaws: target yaws (degrees).
    """

    hidden: PositiveInt = 256
    depth: PositiveInt = 2
    batch_size: PositiveInt = 16
    lr: PositiveFloat = 1e-3
    keep: Probability = 0.5
    identity: NonNegativeFloat = 1.0
    reg: NonNegativeFloat = 0.1
    truncation_psi: Probability = 0.7
    judge_from: str = ""
    eval_latents: PositiveInt = 64
    eval_yaws: tuple[float, ...] = (-30.0, -15.0, 0.0, 15.0, 30.0)
    loop: LoopConfig = dataclasses.field(default_factory=lambda: LoopConfig(
        num_steps=1000, log_every=50, checkpoint_every=250, num_devices=1))


@dataclasses.dataclass
class Video2StyleGANConfig:
    """Everything a video2stylegan run depends on.

    Attributes:
      seed: every random stream derives from it (named constants per stream).
      video: a folder `<frame>.png` (one video) or of `<video>/<frame>.png` for `encode` ("" : the
        procedural evaluation videos).
      eval_batch_size: frames per jitted call in evaluation.
    """

    seed: int = 0
    video: str = ""
    eval_batch_size: PositiveInt = 64
    faces: FaceConfig = dataclasses.field(default_factory=FaceConfig)
    gan: GanConfig = dataclasses.field(default_factory=GanConfig)
    aux: AuxConfig = dataclasses.field(default_factory=AuxConfig)
    encoder: EncoderConfig = dataclasses.field(default_factory=EncoderConfig)
    control: ControlConfig = dataclasses.field(default_factory=ControlConfig)

    def validate(self) -> None:
        from jaxlab.video2stylegan.models import num_ws

        if self.faces.resolution != self.gan.resolution:
            raise ConfigError(f"config fields 'faces.resolution' ({self.faces.resolution}) and 'gan.resolution' "
                              f"({self.gan.resolution}) must be equal")
        n = num_ws(self.gan.resolution)
        if not 1 <= self.encoder.reuse_start < n:
            raise ConfigError(f"config field 'encoder.reuse_start' must be in [1, {n - 1}] at resolution "
                              f"{self.gan.resolution} (num_ws = {n}), got {self.encoder.reuse_start}")
        if self.gan.resolution % self.encoder.patch_size:
            raise ConfigError(f"config field 'encoder.patch_size' ({self.encoder.patch_size}) must divide "
                              f"the resolution {self.gan.resolution}")
        bad = [t for t in self.control.eval_yaws if abs(t) > self.faces.max_yaw]
        if bad:
            raise ConfigError(f"config field 'control.eval_yaws' has {bad}, outside the faces' yaw range "
                              f"+/-{self.faces.max_yaw} degrees ('faces.max_yaw')")
        if self.gan.batch_size % self.gan.mbstd_group:
            raise ConfigError(f"config field 'gan.batch_size' ({self.gan.batch_size}) must be a multiple of "
                              f"'gan.mbstd_group' ({self.gan.mbstd_group})")


def _default() -> Video2StyleGANConfig:
    return Video2StyleGANConfig()


def _smoke() -> Video2StyleGANConfig:
    return Video2StyleGANConfig(
        eval_batch_size=16,
        faces=FaceConfig(resolution=16, num_identities=8, train_images=128, videos=2, frames=6, clip_videos=8),
        gan=GanConfig(resolution=16, channel_base=256, channel_max=16, z_dim=32, w_dim=32, batch_size=8, r1_every=4,
                      pl_every=2,
                      loop=LoopConfig(num_steps=12, log_every=4, checkpoint_every=6, num_devices=1)),
        aux=AuxConfig(num_identities=32, train_images=448, eval_identities=16, eval_per_identity=4, stages=(16, 32),
                      hidden=64, embed_dim=16, batch_size=32, lr=3e-3,
                      loop=LoopConfig(num_steps=300, log_every=100, checkpoint_every=100, eval_every=0,
                                      num_devices=1)),
        encoder=EncoderConfig(reuse_start=3, embed_dim=32, depth=1, num_heads=2, batch_size=4,
                              loop=LoopConfig(num_steps=8, log_every=4, checkpoint_every=4, eval_every=4,
                                              num_devices=1)),
        control=ControlConfig(hidden=32, batch_size=4, eval_latents=4, eval_yaws=(-20.0, 20.0),
                              loop=LoopConfig(num_steps=4, log_every=2, checkpoint_every=2, num_devices=1)))


def _paper() -> Video2StyleGANConfig:
    # FFHQ-1024 StyleGAN2 shape (config `stylegan2`), encoder split at the StyleGAN "fine" boundary 8.
    return Video2StyleGANConfig(
        faces=FaceConfig(resolution=1024, num_identities=1000, train_images=70000, videos=50, frames=64,
                         clip_videos=5000),
        aux=AuxConfig(num_identities=2000, train_images=200000, eval_identities=200, stages=(32, 64, 128, 256, 256),
                      blocks_per_stage=2, hidden=512, embed_dim=128, margin=0.5, scale=32.0, batch_size=128,
                      lr=1e-3, loop=LoopConfig(num_steps=100000, log_every=100, checkpoint_every=5000,
                                               eval_every=5000, num_devices=0)),
        gan=GanConfig(resolution=1024, z_dim=512, w_dim=512, mapping_layers=8, channel_base=32768, channel_max=512,
                      batch_size=32, g_lr=0.002, d_lr=0.002, r1_gamma=10.0, ema_kimg=10.0, ema_rampup=0.0,
                      loop=LoopConfig(num_steps=781250, log_every=100, checkpoint_every=5000, num_devices=0)),
        encoder=EncoderConfig(reuse_start=8, patch_size=64, embed_dim=768, depth=12, num_heads=12, batch_size=8,
                              lr=1e-4,
                              loop=LoopConfig(num_steps=500000, checkpoint_every=5000, eval_every=5000,
                                              num_devices=0)))


def get_config(variant: str = "default") -> Video2StyleGANConfig:
    """video2stylegan's config for `variant` in {"smoke", "default", "paper"}."""
    return variants({"smoke": _smoke, "default": _default, "paper": _paper}, variant)
