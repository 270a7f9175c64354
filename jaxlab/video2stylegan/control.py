"""Pose and expression control in W+ (spec §2.6; reconstruction).

    F(w_<k, p̃_tgt, p̃_tgt − p̃(G(w))) -> Δw_<k        an MLP; W+ entries from k = reuse_start on are untouched
    loss = ‖p̃(G(w + Δw)) − p̃_tgt‖²                    attribute term (sum over the 7 attributes)
         + identity · (1 − ⟨e(G(w + Δw)), e(G(w))⟩)    the identity kept
         + reg · mean_k ‖Δw_k‖² / w_dim                 small edits

p̃ = (yaw, pitch, roll) divided by their ranges and the 4 expression coefficients, as the
frozen `proc_3dmm` regresses them; e = the frozen `proc_id` embedding. The latents are
w = truncate(mapping(z)) of the frozen G-EMA. Targets: per attribute group (yaw, pitch, roll,
expression) the current value p̃(G(w)) is kept with probability `keep`, else a fresh draw from
the renderer's pose and expression distribution, so F learns to change what it is asked to
and to leave the rest. F sees the current attributes through p̃_tgt − p̃(G(w)), which is a
function of (w, p̃_tgt), so it is still the spec's F(w_<k, p_tgt). Reconstruction: the paper
gives no architecture, weights or target distribution (StyleRig's RigNet is the closest
published analogue); every choice is a field of `configs.ControlConfig`.

`evaluate_edits` measures the edits with a *judge* regressor: the training `proc_3dmm` by
default (an edit can then fool the net it was trained against), or one trained with another
seed (`control.judge_from`), an independent measurement.
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxlab.core import train as train_lib
from jaxlab.nn.linear import Dense
from jaxlab.video2stylegan import auxnets, faces, gan

__all__ = ["ControlNet", "GROUPS", "attributes", "apply_edit", "target_attributes", "init_state", "make_loss_fn",
           "batch_fn", "evaluate_edits", "train", "generator_fns", "make_net", "INIT_C", "C_BATCHES", "C_EVAL"]

INIT_C, C_BATCHES, C_EVAL = 0x6B01, 0x6B02, 0x6B03
GROUPS = ("yaw", "pitch", "roll", "expression")
NUM_ATTRS = faces.POSE_DIM + faces.EXPR_DIM
_GROUP_OF_ATTR = np.array([0, 1, 2] + [3] * faces.EXPR_DIM)


class ControlNet(nn.Module):
    """`(w_coarse [B, k, D], p_tgt [B, 7], p_cur [B, 7]) -> Δw [B, k, D]`; the last layer starts at
    zero, so an untrained net leaves every latent as it is."""

    k: int
    w_dim: int
    hidden: int = 256
    depth: int = 2

    @nn.compact
    def __call__(self, w_coarse, p_tgt, p_cur):
        b = w_coarse.shape[0]
        h = jnp.concatenate([w_coarse.reshape(b, -1), p_tgt, p_tgt - p_cur], axis=-1)
        for _ in range(self.depth):
            h = nn.leaky_relu(Dense(self.hidden)(h), 0.2)
        d = Dense(self.k * self.w_dim, kernel_init=nn.initializers.zeros)(h)
        return d.reshape(b, self.k, self.w_dim)


def attributes(aux: auxnets.AuxNets, x) -> jax.Array:
    """`[B, 7]`: the regressed (yaw, pitch, roll) divided by their ranges, then the expression."""
    _, expr, pose = aux.face_params(x)
    rng = np.maximum(np.array([aux.faces.max_yaw, aux.faces.max_pitch, aux.faces.max_roll], np.float32), 1.0)
    return jnp.concatenate([pose / rng, expr], axis=-1)


def apply_edit(ws, delta):
    """`ws [B, N, D]` with `delta [B, k, D]` added to its first k entries; the rest unchanged (bitwise)."""
    k = delta.shape[1]
    return jnp.concatenate([ws[:, :k] + delta, ws[:, k:]], axis=1)


def target_attributes(p_cur, p_new, keep):
    """`[B, 7]`: per group (`keep [B, 4]`, True = keep) the current attributes or the new ones."""
    return jnp.where(keep[:, _GROUP_OF_ATTR], p_cur, p_new)


def make_net(config) -> ControlNet:
    return ControlNet(k=config.encoder.reuse_start, w_dim=config.gan.w_dim, hidden=config.control.hidden,
                      depth=config.control.depth)


def init_state(config) -> train_lib.TrainState:
    k, d = config.encoder.reuse_start, config.gan.w_dim
    params = make_net(config).init(jax.random.fold_in(jax.random.key(config.seed), INIT_C), jnp.zeros((1, k, d)),
                                   jnp.zeros((1, NUM_ATTRS)), jnp.zeros((1, NUM_ATTRS)))["params"]
    return train_lib.TrainState.create(params=params, tx=optax.adam(config.control.lr))


def make_loss_fn(net: ControlNet, latents: Callable, generate: Callable, attrs: Callable, embed: Callable, cc):
    """`loss_fn(params, extra, batch, key)` for `core.train.make_train_step`, from pure functions:
    `latents(z) -> ws`, `generate(ws) -> images`, `attrs(images) -> [B, 7]`, `embed(images) -> [B, E]`
    (unit rows), all frozen; `batch` holds `z`, `p_new [B, 7]` and `keep [B, 4]`."""
    sg = jax.lax.stop_gradient

    def loss_fn(params, extra, batch, key):
        del extra, key
        ws = sg(latents(batch["z"]))
        x0 = generate(ws)
        p_cur, e0 = sg(attrs(x0)), sg(embed(x0))
        p_tgt = target_attributes(p_cur, batch["p_new"], batch["keep"])
        delta = net.apply({"params": params}, ws[:, :net.k], p_tgt, p_cur)
        x1 = generate(apply_edit(ws, delta))
        p1 = attrs(x1)
        attr = jnp.mean(jnp.sum((p1 - p_tgt) ** 2, -1))
        ident = 1.0 - jnp.mean(jnp.sum(embed(x1) * e0, -1)) if cc.identity > 0 else jnp.zeros(())
        reg = jnp.mean(jnp.sum(delta ** 2, -1)) / delta.shape[-1]
        changed = ~batch["keep"][:, 0]
        yaw_err = jnp.sum(jnp.abs(p1[:, 0] - p_tgt[:, 0]) * changed) / jnp.maximum(jnp.sum(changed), 1)
        loss = attr + cc.identity * ident + cc.reg * reg
        return loss, ({"attr_loss": attr, "identity_loss": ident, "reg_loss": reg, "yaw_error": yaw_err}, None)

    return loss_fn


def generator_fns(config, g_state: gan.GanState):
    """`(latents, generate)` of the frozen G-EMA: truncated mapped latents and const-noise synthesis."""
    g, _ = gan.make_models(config.gan)
    psi = config.control.truncation_psi

    def latents(z):
        return gan.truncate(gan.map_ws(g, g_state.g_ema, z), g_state.w_avg, psi)

    return latents, lambda ws: gan.generate(g, g_state.g_ema, ws, noise_mode="const")


def batch_fn(config, step: int, stream: int = C_BATCHES) -> dict:
    """A training batch: latent seeds `z`, fresh attributes `p_new` (the renderer's pose and
    expression distribution, pose divided by its range) and the groups to keep."""
    cc, fc = config.control, config.faces
    rng = np.random.default_rng([config.seed, stream, step])
    b = cc.batch_size
    z = rng.normal(size=(b, config.gan.z_dim)).astype(np.float32)
    _, expr, pose, _ = faces.sample_params(rng, b, fc)
    lim = np.maximum(np.array([fc.max_yaw, fc.max_pitch, fc.max_roll], np.float32), 1.0)
    keep = rng.uniform(size=(b, len(GROUPS))) < cc.keep
    return {"z": z, "p_new": np.concatenate([pose / lim, expr], -1).astype(np.float32), "keep": keep}


def evaluate_edits(config, params, latents, generate, aux: auxnets.AuxNets, judge: auxnets.AuxNets,
                   ws=None) -> dict:
    """Held-out latents (their own stream; or the given W+ `ws [N, num_ws, w_dim]`, say the
    encoder's latents of video frames) edited towards each yaw of `control.eval_yaws` (other
    groups kept) and towards fresh expressions (pose kept), measured by `judge`:

    - `yaw`: per target, the mean |judged yaw − target| in degrees after the edit and without
      it (`no_edit`), and the drift of pitch and roll (degrees) and of the expression (mean
      absolute change per coefficient) that the edit should have kept;
    - `expression`: mean absolute error per coefficient after and without the edit, pose drift;
    - identity similarity of edited and unedited images under the judge's `proc_id`.
    """
    cc, fc = config.control, config.faces
    net = make_net(config)
    rng = np.random.default_rng([config.seed, C_EVAL])
    z = jnp.asarray(rng.normal(size=(cc.eval_latents, config.gan.z_dim)), jnp.float32)
    n = cc.eval_latents if ws is None else len(ws)
    _, expr_new, _, _ = faces.sample_params(rng, n, fc)

    @jax.jit
    def edit(ws, p_tgt):
        x0 = generate(ws)
        delta = net.apply({"params": params}, ws[:, :net.k], p_tgt, attributes(aux, x0))
        x1 = generate(apply_edit(ws, delta))
        return x0, x1, attributes(judge, x0), attributes(judge, x1), judge.embed(x0), judge.embed(x1)

    ws = jax.jit(latents)(z) if ws is None else jnp.asarray(ws)
    p_cur = np.asarray(jax.jit(lambda w: attributes(aux, generate(w)))(ws))
    lim = np.array([fc.max_yaw, fc.max_pitch, fc.max_roll])
    out = {"yaw": [], "judge_independent": judge is not aux}
    sims, grid = [], []
    for t in cc.eval_yaws:
        p_tgt = p_cur.copy()
        p_tgt[:, 0] = t / max(fc.max_yaw, 1.0)
        x0, x1, j0, j1, e0, e1 = (np.asarray(a) for a in edit(ws, jnp.asarray(p_tgt)))
        out["yaw"].append({
            "target_deg": float(t), "error_deg": float(np.mean(np.abs(j1[:, 0] * lim[0] - t))),
            "no_edit_error_deg": float(np.mean(np.abs(j0[:, 0] * lim[0] - t))),
            "pitch_roll_drift_deg": float(np.mean(np.abs((j1[:, 1:3] - j0[:, 1:3]) * lim[1:]))),
            "expression_drift": float(np.mean(np.abs(j1[:, 3:] - j0[:, 3:])))})
        sims.append(np.sum(e0 * e1, -1))
        grid.append(x1)
    p_tgt = p_cur.copy()
    p_tgt[:, 3:] = expr_new
    x0, x1, j0, j1, e0, e1 = (np.asarray(a) for a in edit(ws, jnp.asarray(p_tgt)))
    out["expression"] = {"error": float(np.mean(np.abs(j1[:, 3:] - expr_new))),
                         "no_edit_error": float(np.mean(np.abs(j0[:, 3:] - expr_new))),
                         "pose_drift_deg": float(np.mean(np.abs((j1[:, :3] - j0[:, :3]) * lim)))}
    sims.append(np.sum(e0 * e1, -1))
    out["identity_similarity"] = float(np.mean(sims))
    for key in ("error_deg", "no_edit_error_deg"):
        out[f"yaw_{key}"] = float(np.mean([r[key] for r in out["yaw"]]))
    out["images"] = np.stack([x0] + grid, axis=1)  # [latents, 1 + targets, R, R, 3]: original, then each yaw
    return out


def train(config, workdir, g_state: gan.GanState, aux: auxnets.AuxNets) -> dict:
    """Trains F through `fit` in `workdir/control/` (resumes a killed run), evaluates the edits as
    the nets of `control.judge_from` (else `aux`) see them (`evaluate_edits`; with an independent
    judge also as the training regressor sees them, `self_judged`) and draws `figures/control.png`
    and `figures/control_training.png`."""
    from jaxlab.core import workdir as workdir_lib
    from jaxlab.video2stylegan import report

    cc = config.control
    judge = auxnets.load_aux(cc.judge_from, config.gan.resolution) if cc.judge_from else aux
    stage = workdir_lib.stage_dir(workdir, "control")
    latents, generate = generator_fns(config, g_state)
    loss_fn = make_loss_fn(make_net(config), latents, generate, lambda x: attributes(aux, x), aux.embed,
                           config.control)
    state, _ = train_lib.fit(init_state(config), train_lib.make_train_step(loss_fn),
                             lambda s: batch_fn(config, s), loop=config.control.loop, workdir=stage,
                             seed=config.seed, desc="video2stylegan control")
    res = evaluate_edits(config, state.params, latents, generate, aux, judge)
    if judge is not aux:  # the same edits measured by the regressor they were trained against
        own = evaluate_edits(config, state.params, latents, generate, aux, aux)
        res["self_judged"] = {"yaw_error_deg": own["yaw_error_deg"],
                              "yaw_no_edit_error_deg": own["yaw_no_edit_error_deg"],
                              "expression_error": own["expression"]["error"],
                              "expression_no_edit_error": own["expression"]["no_edit_error"]}
    report.plot_control(workdir, res.pop("images"), config.control.eval_yaws, res["yaw"])
    report.plot_training(stage, workdir, ("loss", "attr_loss", "identity_loss", "yaw_error"), "control_training")
    return {"steps": int(jax.device_get(state.step)), "train_time_s": train_lib.run_times(stage)["train_time_s"],
            **res}
