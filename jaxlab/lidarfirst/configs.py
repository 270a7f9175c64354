"""Configs of lidarfirst (LiDAR cluster first, camera inference later): `get_config(variant)`.

Fields marked *reconstruction* are choices the paper does not state; their defaults come
from the co-authors' depth_clustering code and the group's R^3 risk code (see the spec,
`experiments/lidarfirst/README.md`).
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


@dataclasses.dataclass
class SceneConfig:
    """The NumPy scene simulator (LiDAR frame: x forward, y left, z up, origin at the sensor).

    Attributes:
      num_frames: frames simulated (training crops and evaluation frames are disjoint seeds).
      beam_layout: "uniform" (`num_beams` inclinations evenly in [incl_min, incl_max]) or
        "waymo" (64 non-uniform Waymo-TOP-like inclinations, +2.47 ... -17.52 deg).
      num_beams: beams of the "uniform" layout.
      num_columns: azimuth columns over 360 degrees.
      incl_min_deg / incl_max_deg: inclination range of the "uniform" layout.
      lidar_height: sensor height above the ground under it (m).
      range_noise: standard deviation of the Gaussian range noise (m).
      dropout: share of returns lost at random (no return, -1), as on dark or specular surfaces.
      max_range: returns beyond it are invalid (-1), as the 75 m cap of the paper's TOP LiDAR.
      ground_slope_deg: ground rises along +x by this angle (0: flat).
      num_cars / num_pedestrians / num_cyclists: objects per frame (cuboids).
      min_distance / max_distance: object centre distance from the sensor (m).
      ego_speed: ego velocity along +x (m/s).
      image_width / image_height / focal: the pinhole camera (px).
    """

    num_frames: PositiveInt = 16
    beam_layout: Literal["uniform", "waymo"] = "uniform"
    num_beams: PositiveInt = 32
    num_columns: PositiveInt = 512
    incl_min_deg: float = -25.0
    incl_max_deg: float = 3.0
    lidar_height: PositiveFloat = 1.8
    range_noise: NonNegativeFloat = 0.01
    dropout: Probability = 0.0
    max_range: PositiveFloat = 75.0
    ground_slope_deg: float = 0.0
    num_cars: NonNegativeInt = 5
    num_pedestrians: NonNegativeInt = 3
    num_cyclists: NonNegativeInt = 2
    min_distance: PositiveFloat = 5.0
    max_distance: PositiveFloat = 35.0
    ego_speed: NonNegativeFloat = 8.0
    image_width: PositiveInt = 480
    image_height: PositiveInt = 320
    focal: PositiveFloat = 300.0


@dataclasses.dataclass
class PipelineConfig:
    """The cluster-first pipeline (defaults from depth_clustering's Waymo config: reconstruction).

    Attributes:
      ground_angle_deg: ground BFS joins 4-neighbours whose smoothed inclination angles differ
        by less than this, from the lowest valid pixel of each column when its angle is below it.
      repair_depth: compute the ground angles on the depth-repaired range image (an invalid pixel
        takes the mean of its column's valid pairs within 4 rows above and below whose ranges
        differ by < 1 m, depth_clustering's `RepairDepth`); the ground is still a subset of the
        valid pixels.
      smooth_window: Savitzky-Golay window (quadratic fit) along columns: 1 (off), 5 or 7.
      ground_dilation: dilate the ground mask 3x3 (over valid pixels) as depth_clustering does.
      cluster_angle_deg: neighbours p, q join when beta = atan2(d2 sin a, d1 - d2 cos a) exceeds it.
      min_cluster / max_cluster: kept cluster sizes (points).
      max_clusters: static budget of clusters per frame (largest kept).
      box_shape: the 3-D box a cluster projects into the camera with: "polygon" (the 2-D convex
        hull of its (x, y) extruded from z_min to z_max, depth_clustering's default) or "cube"
        (axis-aligned min/max box). Distance and R^3 use the cube either way.
      camera_fov_only: cluster only the columns inside the camera's horizontal FOV (no wrap).
      priority: crop order, "nearest" (nearest box corner) or "r3" (R^3 imminent/potential/none
        then distance) (reconstruction: the paper does not say which it sorts by).
      crop_budget: crops classified per frame before the early exit (0: all).
      crop_batch: crops per classifier call, in risk order (1: one at a time, the paper's loop;
        larger batches trade the riskiest object's detection time for fewer calls).
      crop_margin: projected boxes are enlarged by this fraction on each side before cropping.
      truncation_threshold: drop a projected box when this fraction or more lies outside the image.
      score_threshold: a crop is a detection when its best non-background probability exceeds it.
      r3_dt / r3_t_compute / r3_a_max / r3_margin: the R^3 model (step s, compute time s,
        maximum deceleration m/s^2, added critical distance m); ego footprint 4 m x 2 m.
    """

    ground_angle_deg: PositiveFloat = 9.0
    repair_depth: bool = True
    smooth_window: Literal[1, 5, 7] = 5
    ground_dilation: bool = False
    cluster_angle_deg: PositiveFloat = 10.0
    min_cluster: PositiveInt = 10
    max_cluster: PositiveInt = 20000
    max_clusters: PositiveInt = 64
    box_shape: Literal["polygon", "cube"] = "polygon"
    camera_fov_only: bool = True
    priority: Literal["nearest", "r3"] = "r3"
    crop_budget: NonNegativeInt = 0
    crop_batch: PositiveInt = 1
    crop_margin: NonNegativeFloat = 0.1
    truncation_threshold: Probability = 0.7
    score_threshold: Probability = 0.5
    r3_dt: PositiveFloat = 0.1
    r3_t_compute: NonNegativeFloat = 0.1
    r3_a_max: PositiveFloat = 7.5
    r3_margin: NonNegativeFloat = 2.2


@dataclasses.dataclass
class ClassifierModelConfig:
    """The crop classifier: 3 conv stages (one block each) + GAP + linear over 4 classes."""

    stages: tuple[PositiveInt, ...] = (16, 32, 64)
    crop_size: PositiveInt = 32
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"


@dataclasses.dataclass
class DetectorConfig:
    """The full-frame baseline: a CenterNet-style detector over the whole image (`detector.py`).

    Attributes:
      stages / strides: backbone widths and the stride of each stage's first conv (output stride =
        their product).
      head: width of the 3x3 conv of each head.
      max_objects: boxes per image in the targets.
      top_k: peaks decoded per image.
      size_weight: weight of the size L1 loss.
      num_steps / batch_size / lr: its training (through `core.train.fit`, checkpoints every
        `loop.checkpoint_every`).
    """

    stages: tuple[PositiveInt, ...] = (16, 24, 32)
    strides: tuple[PositiveInt, ...] = (2, 2, 1)
    head: PositiveInt = 16
    max_objects: PositiveInt = 32
    top_k: PositiveInt = 32
    size_weight: NonNegativeFloat = 0.1
    num_steps: PositiveInt = 800
    batch_size: PositiveInt = 8
    lr: PositiveFloat = 2e-3


@dataclasses.dataclass
class OptConfig:
    lr: PositiveFloat = 3e-3
    warmup_steps: NonNegativeInt = 20
    weight_decay: NonNegativeFloat = 1e-4


@dataclasses.dataclass
class LidarFirstConfig:
    """Everything a lidarfirst run depends on.

    Attributes:
      seed: scenes (training scenes use stream TRAIN_SCENES, evaluation scenes EVAL_SCENES), init.
      data_dir: what `run` reads: a Waymo v1 segment file (`*.tfrecord`; TOP range image, FRONT
        camera image, calibration and labels) or a folder of them, or a KITTI object folder (with
        velodyne/, calib/, label_2/, image_2/); "" simulates `scene.num_frames` evaluation frames instead.
      train_frames: simulated frames whose crops train the classifier.
      batch_size: classifier batch.
      val_frames: simulated validation frames (stream VAL_SCENES) on which `compare` chooses each
        method's score threshold.
      loop: the classifier's training loop.
    """

    seed: int = 0
    data_dir: str = ""
    train_frames: PositiveInt = 24
    batch_size: PositiveInt = 64
    val_frames: PositiveInt = 8
    loop: LoopConfig = dataclasses.field(default_factory=lambda: LoopConfig(
        num_steps=600, eval_every=200, log_every=50, checkpoint_every=200))
    scene: SceneConfig = dataclasses.field(default_factory=SceneConfig)
    pipeline: PipelineConfig = dataclasses.field(default_factory=PipelineConfig)
    model: ClassifierModelConfig = dataclasses.field(default_factory=ClassifierModelConfig)
    detector: DetectorConfig = dataclasses.field(default_factory=DetectorConfig)
    opt: OptConfig = dataclasses.field(default_factory=OptConfig)

    def validate(self) -> None:
        s, p = self.scene, self.pipeline
        if s.incl_min_deg >= s.incl_max_deg:
            raise ConfigError("config field 'scene.incl_min_deg' must be below 'scene.incl_max_deg'")
        if s.min_distance >= s.max_distance:
            raise ConfigError("config field 'scene.min_distance' must be below 'scene.max_distance'")
        if p.min_cluster > p.max_cluster:
            raise ConfigError("config field 'pipeline.min_cluster' must be <= 'pipeline.max_cluster'")
        if not -30.0 < s.ground_slope_deg < 30.0:
            raise ConfigError(f"config field 'scene.ground_slope_deg' must be in (-30, 30), got {s.ground_slope_deg}")
        if len(self.detector.stages) != len(self.detector.strides) or not self.detector.stages:
            raise ConfigError("config fields 'detector.stages' and 'detector.strides' need the same non-zero length")
        if len(self.model.stages) < 1:
            raise ConfigError("config field 'model.stages' needs at least one stage")


def _default() -> LidarFirstConfig:
    return LidarFirstConfig()


def _smoke() -> LidarFirstConfig:
    return LidarFirstConfig(
        train_frames=6, batch_size=32, val_frames=2,
        detector=DetectorConfig(num_steps=60, batch_size=4),
        loop=LoopConfig(num_steps=60, eval_every=30, log_every=10, checkpoint_every=30),
        scene=SceneConfig(num_frames=3, num_beams=32, num_columns=256, image_width=240, image_height=160,
                          focal=150.0, num_cars=3, num_pedestrians=2, num_cyclists=1, max_distance=25.0),
        pipeline=PipelineConfig(max_clusters=32),
        opt=OptConfig(lr=5e-3, warmup_steps=5))


def _paper() -> LidarFirstConfig:
    # The paper's sensor: 64 Waymo TOP beams; 2650 columns in Waymo, 1024 here for the simulator.
    return LidarFirstConfig(
        train_frames=200, batch_size=128, val_frames=40,
        detector=DetectorConfig(stages=(32, 64, 96), num_steps=6000, batch_size=16),
        loop=LoopConfig(num_steps=3000, eval_every=500, log_every=100, checkpoint_every=500),
        scene=SceneConfig(num_frames=100, beam_layout="waymo", num_beams=64, num_columns=1024,
                          image_width=480, image_height=320, max_distance=60.0, num_cars=8,
                          num_pedestrians=4, num_cyclists=3),
        pipeline=PipelineConfig(max_clusters=128))


def get_config(variant: str = "default") -> LidarFirstConfig:
    """The lidarfirst config for `variant` in {"smoke", "default", "paper"}."""
    return variants({"smoke": _smoke, "default": _default, "paper": _paper}, variant)
