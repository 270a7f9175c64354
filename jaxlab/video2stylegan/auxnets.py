"""The auxiliary networks `proc_landmarks`, `proc_3dmm` and `proc_id`, trained on procedural faces.

Self-trained stand-ins for a landmark detector, a 3DMM regressor and a face-recognition network
(none of which is available offline; spec §3). Each is a `models.AuxCNN` on `[B, R, R, 3]`
frames in [−1, 1], trained on random renders of `faces.py`, whose labels are exact:

    proc_landmarks:  x -> ℓ(x) ∈ R^{K×2} (pixels)
                     loss  mean_k ‖(ℓ_k(x) − ℓ*_k) / (R/2)‖² / 2
    proc_3dmm:       x -> θ(x) = (identity, expression, pose) of the face model
                     loss  mean (θ̃(x) − θ̃*)² + vertex_weight · mean_v ‖M_v(θ(x)) − M_v(θ*)‖²
                     θ̃: pose divided by its range, the rest as is; M(θ): the model's camera-frame
                     mesh vertices (`faces.deform`, rotation, translation), differentiable in θ
    proc_id:         x -> e(x) ∈ S^{D−1}
                     loss  additive angular margin softmax over the training identities:
                     logit_c = s · cos(φ_c + m·[c = y]),  cos φ_c = ⟨e(x), W_c / ‖W_c‖⟩

The encoder's terms (spec §2.5, reconstruction; the frozen nets' outputs on the input frame x
are the targets, as a detector's would be, so the same terms apply to videos without labels):

    L_lmk  = mean_k ‖(ℓ_k(x̂) − ℓ_k(x)) / R‖²         (landmarks in units of the image size)
    L_mesh = mean_v ‖M_v(θ(x̂)) − M_v(θ(x))‖²          (vertices in units of the head radius)
    L_id   = 1 − ⟨e(x̂), e(x)⟩

Each net trains through `core.train.fit` in its own stage directory `aux/<net>/`, one after the
other, so a killed `train-aux` resumes the net it was training.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxlab.core import train as train_lib
from jaxlab.core import workdir as workdir_lib
from jaxlab.core.config import ConfigError
from jaxlab.video2stylegan import data, faces, metrics
from jaxlab.video2stylegan.models import AuxCNN

__all__ = ["NETS", "AuxNets", "aux_images", "render_padded", "mesh_vertices", "normalise_params", "split_params",
           "make_net", "init_state", "margin_softmax_loss", "make_loss_fn", "make_eval_fn", "train_all", "load_aux",
           "load_run", "has_aux", "encoder_terms", "frame_metrics", "consistency_metrics", "jit_fns", "make_fd_fn",
           "generator_fd"]

NETS = ("proc_landmarks", "proc_3dmm", "proc_id")
AUX_IDS, AUX_FRAMES, AUX_EVAL_IDS, AUX_EVAL_FRAMES, AUX_BATCHES, INIT_AUX, AUX_FD = (
    0x6A01, 0x6A02, 0x6A03, 0x6A04, 0x6A05, 0x6A06, 0x6A07)
NUM_PARAMS = faces.ID_DIM + faces.EXPR_DIM + faces.POSE_DIM


def _pose_range(fc) -> np.ndarray:
    return np.maximum(np.array([fc.max_yaw, fc.max_pitch, fc.max_roll], np.float32), 1.0)


def normalise_params(ident, expr, pose, fc) -> jax.Array:
    """`[..., 13]`: identity and expression as they are, pose divided by its range (about [−1, 1])."""
    return jnp.concatenate([ident, expr, pose / _pose_range(fc)], axis=-1)


def split_params(theta, fc) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Inverse of `normalise_params`: `(ident [..., 6], expr [..., 4], pose [..., 3] in degrees)`."""
    i, e = faces.ID_DIM, faces.ID_DIM + faces.EXPR_DIM
    return theta[..., :i], theta[..., i:e], theta[..., e:] * _pose_range(fc)


def mesh_vertices(ident, expr, pose, fc) -> jax.Array:
    """Camera-frame vertices `[B, V, 3]` of the face model for `[B, ...]` parameters: the renderer's
    `vertices` (`R(pose) · deform(canonical, ident, expr) + (0, 0, distance)`)."""
    mesh = faces.make_mesh(fc.mesh_level)
    canon = jnp.asarray(mesh.vertices[: mesh.num_sphere])

    def one(i, e, p):
        return faces.deform(canon, i, e) @ faces.rotation(p).T + jnp.array([0.0, 0.0, fc.distance])

    return jax.vmap(one)(ident, expr, pose)


_SPLITS = {"train": ("num_identities", "train_images"), "eval": ("eval_identities", "eval_per_identity")}


def aux_images(seed: int, fc, ac, split: str) -> dict:
    """Renders for the auxiliary nets: `{"image" [N, R, R, 3] in [−1, 1], "landmarks" [N, K, 2],
    "ident", "expr", "pose", "id_index" [N]}`.

    `split="train"`: `ac.train_images` renders of `ac.num_identities` identities (index drawn per
    render); `"eval"`: `ac.eval_per_identity` renders of each of `ac.eval_identities` held-out
    identities (their own identity stream). Pose and expression are drawn per render. The last
    two sets rendered in a process are kept (a resumed run renders once); their arrays are
    read-only.
    """
    if split not in _SPLITS:
        raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
    counts = tuple(getattr(ac, k) for k in _SPLITS[split])
    return _render_set(seed, type(fc), dataclasses.astuple(fc), split, counts)


@functools.lru_cache(maxsize=2)
def _render_set(seed: int, fc_type: type, fc_fields: tuple, split: str, counts: tuple[int, int]) -> dict:
    fc = fc_type(*fc_fields)
    if split == "train":
        ids = data.identity_table(seed, counts[0], AUX_IDS)
        ident, expr, pose, idx = faces.sample_params(np.random.default_rng([seed, AUX_FRAMES]), counts[1], fc, ids)
    else:
        ids = data.identity_table(seed, counts[0], AUX_EVAL_IDS)
        idx = np.repeat(np.arange(counts[0]), counts[1])
        _, expr, pose, _ = faces.sample_params(np.random.default_rng([seed, AUX_EVAL_FRAMES]), len(idx), fc)
        ident = ids[idx]
    out = {**render_padded(ident, expr, pose, fc), "ident": ident, "expr": expr, "pose": pose, "id_index": idx}
    for a in out.values():
        a.setflags(write=False)
    return out


def render_padded(ident, expr, pose, fc, chunk: int = 64) -> dict:
    """`{"image" [N, R, R, 3] in [−1, 1], "landmarks" [N, K, 2]}`, rendered in chunks of `chunk`
    frames, the last one padded, so that any N compiles the renderer once."""
    n = len(ident)
    pad = -n % chunk
    rep = lambda a: np.concatenate([a, np.repeat(a[:1], pad, 0)]) if pad else a
    out = data._render_chunks(rep(ident), rep(expr), rep(pose), fc, chunk)
    return {k: v[:n] for k, v in out.items()}


def make_net(config, name: str) -> AuxCNN:
    """The `AuxCNN` of net `name` (one of `NETS`)."""
    out = {"proc_landmarks": 2 * len(faces.LANDMARK_NAMES), "proc_3dmm": NUM_PARAMS,
           "proc_id": config.aux.embed_dim}[name]
    ac = config.aux
    return AuxCNN(out_dim=out, stages=tuple(ac.stages), blocks_per_stage=ac.blocks_per_stage, hidden=ac.hidden)


def init_state(config, name: str) -> train_lib.TrainState:
    """`TrainState` of net `name`: params `{"net": ...}` (and `"centres" [I, D]`, the class weights
    of `proc_id`'s margin softmax, used only in training)."""
    r = config.faces.resolution
    key = jax.random.fold_in(jax.random.fold_in(jax.random.key(config.seed), INIT_AUX), NETS.index(name))
    k1, k2 = jax.random.split(key)
    params = {"net": _jitted_init(make_net(config, name))(k1, jnp.zeros((1, r, r, 3)))["params"]}
    if name == "proc_id":
        params["centres"] = jax.random.normal(k2, (config.aux.num_identities, config.aux.embed_dim))
    return train_lib.TrainState.create(params=params, tx=optax.adam(config.aux.lr))


@functools.lru_cache(maxsize=8)
def _jitted_init(net: AuxCNN):
    return jax.jit(net.init)


def _unit(x, axis=-1):
    return x / jnp.sqrt(jnp.sum(x * x, axis=axis, keepdims=True) + 1e-12)


def _first_dense(module, method_name) -> bool:
    return method_name == "__call__" and module.name == "Dense_0" and module.parent is not None \
        and getattr(module.parent, "name", None) == "MLP_0"


@dataclasses.dataclass(frozen=True, eq=False)
class AuxNets:
    """The three frozen nets of a run (`load_aux`) as pure functions of `[B, R, R, 3]` frames in [−1, 1].

    Attributes:
      nets, params: `{name: AuxCNN}` and `{name: net params}` (without `proc_id`'s class centres).
      faces: the `FaceConfig` they were trained with. steps: `{name: checkpoint step}`.
    """

    nets: dict
    params: dict
    faces: Any
    steps: dict

    def landmarks(self, x, params=None) -> jax.Array:
        """`[B, K, 2]` landmarks in pixels."""
        p = (params or self.params)["proc_landmarks"]
        out = self.nets["proc_landmarks"].apply({"params": p}, x)
        return (out.reshape(x.shape[0], -1, 2) + 1.0) * (x.shape[1] / 2)

    def face_params(self, x, params=None) -> tuple[jax.Array, jax.Array, jax.Array]:
        """`(ident [B, 6], expr [B, 4], pose [B, 3] degrees)`."""
        p = (params or self.params)["proc_3dmm"]
        return split_params(self.nets["proc_3dmm"].apply({"params": p}, x), self.faces)

    def vertices(self, x, params=None) -> jax.Array:
        """`[B, V, 3]` camera-frame mesh vertices of the regressed parameters."""
        return mesh_vertices(*self.face_params(x, params), self.faces)

    def features(self, x) -> jax.Array:
        """`[B, 2 * hidden]`: the hidden layer (after its ReLU) of `proc_3dmm` and of `proc_id`, the
        feature space of FD-proc (`generator_fd`)."""
        def hidden(name):
            _, st = self.nets[name].apply({"params": self.params[name]}, x, capture_intermediates=_first_dense)
            return jax.nn.relu(st["intermediates"]["MLP_0"]["Dense_0"]["__call__"][0])
        return jnp.concatenate([hidden("proc_3dmm"), hidden("proc_id")], axis=-1)

    def embed(self, x, params=None) -> jax.Array:
        """`[B, D]` unit identity embeddings."""
        p = (params or self.params)["proc_id"]
        return _unit(self.nets["proc_id"].apply({"params": p}, x))


def margin_softmax_loss(emb, centres, labels, margin: float, scale: float) -> tuple[jax.Array, jax.Array]:
    """Additive angular margin softmax: `(mean cross-entropy, accuracy of argmax cos)` for unit
    embeddings `emb [B, D]`, class weights `centres [I, D]` (normalised here) and `labels [B]`."""
    cos = emb @ _unit(centres).T
    onehot = jax.nn.one_hot(labels, centres.shape[0])
    sin = jnp.sqrt(jnp.clip(1.0 - cos * cos, 1e-7, 1.0))
    target = cos * np.cos(margin) - sin * np.sin(margin)  # cos(φ + m)
    logits = scale * jnp.where(onehot > 0, target, cos)
    loss = jnp.mean(optax.softmax_cross_entropy(logits, onehot))
    return loss, jnp.mean(jnp.argmax(cos, -1) == labels)


def make_loss_fn(config, name: str):
    """`loss_fn(params, extra, batch, key)` of net `name` for `core.train.make_train_step`; `batch`
    holds `image`, `landmarks`, `theta` (normalised parameters) and `id_index`."""
    net, fc, ac = make_net(config, name), config.faces, config.aux
    r = fc.resolution

    def loss_fn(params, extra, batch, key):
        del extra, key
        x = batch["image"]
        out = net.apply({"params": params["net"]}, x)
        if name == "proc_landmarks":
            target = batch["landmarks"].reshape(x.shape[0], -1) / (r / 2) - 1.0
            loss = jnp.mean((out - target) ** 2)
            return loss, ({"landmark_rmse_px": jnp.sqrt(2 * loss) * r / 2}, None)
        if name == "proc_3dmm":
            lp = jnp.mean((out - batch["theta"]) ** 2)
            vp = mesh_vertices(*split_params(out, fc), fc)
            vt = mesh_vertices(*split_params(batch["theta"], fc), fc)
            lv = jnp.mean(jnp.sum((vp - vt) ** 2, -1))
            return lp + ac.vertex_weight * lv, ({"param_mse": lp, "vertex_mse": lv}, None)
        loss, acc = margin_softmax_loss(_unit(out), params["centres"], batch["id_index"], ac.margin, ac.scale)
        return loss, ({"train_accuracy": acc}, None)

    return loss_fn


def _batches(config, name: str, d: dict):
    theta = np.asarray(normalise_params(d["ident"], d["expr"], d["pose"], config.faces))
    n, b = len(theta), config.aux.batch_size

    def batch_fn(step):
        idx = np.random.default_rng([config.seed, AUX_BATCHES, NETS.index(name), step]).integers(0, n, b)
        return {"image": d["image"][idx], "landmarks": d["landmarks"][idx], "theta": theta[idx],
                "id_index": d["id_index"][idx].astype(np.int32)}

    return batch_fn


def make_eval_fn(config, name: str, ev: dict, train_landmarks: np.ndarray | None = None):
    """`state -> metrics` of net `name` on the held-out renders `ev` (`aux_images(..., "eval")`).

    proc_landmarks: `landmark_nme` (`metrics.landmark_nme`) and `mean_landmark_nme`, the NME of
    predicting the mean training landmarks for every frame; proc_3dmm: `vertex_rmse` (head radii)
    and `pose_mae_deg`; proc_id: `pair_auc` (same-identity pairs ranked above different-identity
    pairs, `metrics.pair_auc`) and the mean cosine of same- and different-identity pairs.
    """
    net, fc = make_net(config, name), config.faces
    apply = jax.jit(lambda p, x: net.apply({"params": p}, x))
    vertices = jax.jit(lambda theta: mesh_vertices(*split_params(theta, fc), fc))
    x = jnp.asarray(ev["image"])
    true_v = np.asarray(vertices(normalise_params(ev["ident"], ev["expr"], ev["pose"], fc)))
    labels = np.asarray(ev["id_index"])
    same = labels[:, None] == labels[None, :]
    off = ~np.eye(len(labels), dtype=bool)

    def eval_fn(state):
        out = np.asarray(apply(state.params["net"], x))
        if name == "proc_landmarks":
            pred = (out.reshape(len(out), -1, 2) + 1.0) * (fc.resolution / 2)
            res = {"landmark_nme": metrics.landmark_nme(pred, ev["landmarks"])}
            if train_landmarks is not None:
                mean = np.broadcast_to(train_landmarks.mean(0), ev["landmarks"].shape)
                res["mean_landmark_nme"] = metrics.landmark_nme(mean, ev["landmarks"])
            return res
        if name == "proc_3dmm":
            v = np.asarray(vertices(out))
            pose = out[:, -faces.POSE_DIM:] * _pose_range(fc)
            return {"vertex_rmse": float(np.sqrt(np.mean(np.sum((v - true_v) ** 2, -1)))),
                    "pose_mae_deg": float(np.mean(np.abs(pose - ev["pose"])))}
        e = out / np.linalg.norm(out, axis=-1, keepdims=True)
        sim = e @ e.T
        return {"pair_auc": metrics.pair_auc(e, labels), "same_identity_cos": float(sim[same & off].mean()),
                "different_identity_cos": float(sim[~same].mean())}

    return eval_fn


def train_all(config, workdir: pathlib.Path) -> dict:
    """Trains `NETS` in turn, each in `workdir/aux/<net>/` through `fit` (each resumes on its own);
    returns `{net: {"steps", "train_time_s", held-out metrics at the end}}`."""
    tr = aux_images(config.seed, config.faces, config.aux, "train")
    ev = aux_images(config.seed, config.faces, config.aux, "eval")
    results = {}
    for name in NETS:
        stage = workdir_lib.stage_dir(workdir, f"aux/{name}")
        eval_fn = make_eval_fn(config, name, ev, tr["landmarks"])
        state, history = train_lib.fit(init_state(config, name), train_lib.make_train_step(make_loss_fn(config, name)),
                                       _batches(config, name, tr), loop=config.aux.loop, workdir=stage,
                                       seed=config.seed, eval_fn=eval_fn, desc=f"video2stylegan {name}")
        last = next((h for h in reversed(history) if any(k.startswith("eval_") for k in h)), {})
        results[name] = {"steps": int(jax.device_get(state.step)), "loss": history[-1].get("loss") if history else None,
                         **{k[5:]: v for k, v in last.items() if k.startswith("eval_")},
                         "train_time_s": train_lib.run_times(stage)["train_time_s"],
                         "params": sum(int(p.size) for p in jax.tree.leaves(state.params["net"]))}
    results["eval_renders"] = len(ev["image"])
    return results


def load_aux(run_dir: str | pathlib.Path, resolution: int | None = None) -> AuxNets:
    """The frozen nets of `run_dir/aux/` (newest intact checkpoints), with the config of `run_dir`.

    Raises `WorkdirError` when a net has no finished checkpoint, `ConfigError` when the nets were
    trained at another resolution than `resolution`.
    """
    from jaxlab.video2stylegan.configs import Video2StyleGANConfig

    run_dir = pathlib.Path(run_dir)
    cfg = workdir_lib.load_config(run_dir, Video2StyleGANConfig)
    if resolution is not None and cfg.faces.resolution != resolution:
        raise ConfigError(f"the auxiliary networks of {run_dir} take {cfg.faces.resolution} px frames, "
                          f"this run's generator makes {resolution} px (config field 'encoder.aux_from')")
    nets, params, steps = {}, {}, {}
    for name in NETS:
        if not (run_dir / "aux" / name / "checkpoints").exists():
            raise workdir_lib.WorkdirError(f"{run_dir / 'aux' / name}: no trained {name}; run `jaxlab "
                                           f"video2stylegan train-aux --workdir {run_dir}` first")
        abstract = jax.eval_shape(lambda n=name: init_state(cfg, n))  # restore target, nothing computed
        state, steps[name] = train_lib.load_state(run_dir / "aux" / name, abstract, keep=cfg.aux.loop.keep)
        nets[name], params[name] = make_net(cfg, name), state.params["net"]
    return AuxNets(nets, params, cfg.faces, steps)


def load_run(workdir: str | pathlib.Path):
    """`jaxlab.video2stylegan.load_aux(workdir)`: the run's config and its frozen auxiliary nets as
    an `actions.Loaded` (`model`: {net: AuxCNN}, `state`: {net: params}, `step`: {net: step},
    `extras["aux"]`: the `AuxNets`)."""
    from jaxlab.core import actions
    from jaxlab.video2stylegan.configs import Video2StyleGANConfig

    workdir = pathlib.Path(workdir)
    aux = load_aux(workdir)
    return actions.Loaded(workdir_lib.load_config(workdir, Video2StyleGANConfig), aux.nets, aux.params, aux.steps,
                          {"aux": aux})


def has_aux(run_dir: str | pathlib.Path) -> bool:
    """Whether `run_dir/aux/` holds checkpoints of every net."""
    return all((pathlib.Path(run_dir) / "aux" / n / "checkpoints").exists() for n in NETS)


def encoder_terms(aux: AuxNets, x, y, ec) -> tuple[jax.Array, dict]:
    """`(Σ weight · term, {term: value})` over the encoder's non-zero-weighted terms `landmark`,
    `mesh`, `identity` (module docstring) for inputs `x` and reconstructions `y`, `[B, R, R, 3]`.
    The nets' outputs on `x` are constants (stop-gradient); terms of weight 0 are not traced."""
    total, out = jnp.zeros(()), {}
    sg = jax.lax.stop_gradient
    if ec.landmark > 0:
        r = x.shape[1]
        out["landmark_loss"] = jnp.mean(jnp.sum(((aux.landmarks(y) - sg(aux.landmarks(x))) / r) ** 2, -1))
        total = total + ec.landmark * out["landmark_loss"]
    if ec.mesh > 0:
        out["mesh_loss"] = jnp.mean(jnp.sum((aux.vertices(y) - sg(aux.vertices(x))) ** 2, -1))
        total = total + ec.mesh * out["mesh_loss"]
    if ec.identity > 0:
        out["identity_loss"] = 1.0 - jnp.mean(jnp.sum(aux.embed(y) * sg(aux.embed(x)), -1))
        total = total + ec.identity * out["identity_loss"]
    return total, out


def frame_metrics(aux_fns: dict, recon: np.ndarray, video: dict) -> dict:
    """Landmark NME against the exact landmarks, identity similarity under `proc_id` to the input
    frames and vertex RMSE against the exact vertices, for reconstructions `[T, R, R, 3]` of a
    procedural `video` (`aux_fns` from `jit_fns`)."""
    lmk, emb, verts = (np.asarray(aux_fns[k](jnp.asarray(recon))) for k in ("landmarks", "embed", "vertices"))
    emb_in = np.asarray(aux_fns["embed"](jnp.asarray(video["image"])))
    true_v = np.asarray(aux_fns["true_vertices"](video["ident"], video["expr"], video["pose"]))
    return {"landmark_nme": metrics.landmark_nme(lmk, video["landmarks"]),
            "identity_similarity": metrics.identity_similarity(emb, emb_in),
            "vertex_rmse": float(np.sqrt(np.mean(np.sum((verts - true_v) ** 2, -1))))}


def consistency_metrics(aux_fns: dict, recon: np.ndarray, frames: np.ndarray) -> dict:
    """For frames without ground truth (a user's video): the landmark NME of the nets' landmarks on
    the reconstructions `recon` against theirs on the input `frames` (normalised by the input's
    eye-corner distance), and the identity similarity under `proc_id` of each reconstruction to
    its frame. Both measure agreement under the nets, not accuracy."""
    lmk_r, lmk_x, emb_r, emb_x = (np.asarray(aux_fns[k](jnp.asarray(a))) for k, a in (
        ("landmarks", recon), ("landmarks", frames), ("embed", recon), ("embed", frames)))
    return {"landmark_nme_to_input": metrics.landmark_nme(lmk_r, lmk_x),
            "identity_similarity": metrics.identity_similarity(emb_r, emb_x)}


def jit_fns(aux: AuxNets) -> dict:
    """Jitted `landmarks`, `embed`, `vertices` of frames and `true_vertices(ident, expr, pose)`."""
    return {"landmarks": jax.jit(aux.landmarks), "embed": jax.jit(aux.embed), "vertices": jax.jit(aux.vertices),
            "true_vertices": jax.jit(lambda i, e, p: mesh_vertices(i, e, p, aux.faces))}


def make_fd_fn(config, aux: AuxNets, n: int = 1024, chunk: int = 128):
    """`(fd(g_ema) -> FD-proc, ref_features, features)`: FD-proc of `n` samples of a generator
    (ψ = 1, const noise, fixed latents) against the features of the first `n` training renders,
    computed once (fewer renders than 2n: half of what there is)."""
    from jaxlab.video2stylegan import gan

    real = data.train_images(config.seed, config.faces)["image"]
    n = min(n, len(real) // 2)
    g, _ = gan.make_models(config.gan)
    feats = jax.jit(aux.features)
    sample = jax.jit(lambda p, z: gan.generate(g, p, gan.map_ws(g, p, z)))
    z = jax.random.normal(jax.random.fold_in(jax.random.key(config.seed), AUX_FD), (n, config.gan.z_dim))

    def features(images):
        return np.concatenate([np.asarray(feats(jnp.asarray(images[i:i + chunk])))
                               for i in range(0, len(images), chunk)])

    ref = features(real[:n])

    def fd(g_ema) -> float:
        fake = np.concatenate([np.asarray(sample(g_ema, z[i:i + chunk])) for i in range(0, n, chunk)])
        return metrics.frechet_distance(features(fake), ref)

    fd.real, fd.ref, fd.features, fd.samples = real, ref, features, n
    return fd


def generator_fd(config, aux: AuxNets, g_ema, n: int = 1024, chunk: int = 128) -> dict:
    """FD-proc (`metrics.frechet_distance` under `AuxNets.features`) of `n` samples of the generator
    with parameters `g_ema` (ψ = 1, const noise) against half of the training renders, beside two
    reference points: an untrained generator (the run's initialisation) and the other half of
    the renders (the floor at this sample size). Fewer renders than 2n: halves of what there is."""
    from jaxlab.video2stylegan import gan

    fd = make_fd_fn(config, aux, n, chunk)
    n = fd.samples
    return {"generator": fd(g_ema), "untrained_generator": fd(gan.init_state(config.gan, config.seed).g_ema),
            "real_vs_real": metrics.frechet_distance(fd.features(fd.real[n:2 * n]), fd.ref), "samples": n,
            "features": "proc_3dmm + proc_id hidden layers (self-trained; not FID)"}
