"""Retraining the searched family (and the compound-scaling baseline) from scratch.

Each member (family, stage) is a standalone `SubNet` trained at its resolution through
`jaxlab.core.train.fit` in its own stage directory `retrain/<family>_s<stage>/`
(checkpoints, metrics.jsonl, segments.jsonl), so a killed retraining resumes each member
where it stopped and a finished member is only restored and re-tested. Batches are a
pure function of `(seed, step)`; the test accuracy is computed over the whole test split
in padded batches of `retrain.eval_batch_size` (one compile per member).
"""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.core import evaluation, parallel
from jaxlab.core import train as train_lib
from jaxlab.core import workdir as workdir_lib
from jaxlab.core.config import ConfigError
from jaxlab.scalenet import search as search_lib
from jaxlab.scalenet.configs import ScaleNetConfig
from jaxlab.scalenet.data import Data
from jaxlab.scalenet.models import SubNet, init_params, subnet_from_arch
from jaxlab.scalenet.space import Space
from jaxlab.scalenet.training import make_optimizer, smoothed_cross_entropy

__all__ = ["BATCH_STREAM", "members", "member_dir", "init_state", "make_eval_fn", "train_member",
           "retrain_family"]

BATCH_STREAM = 2   # default_rng([seed, BATCH_STREAM, step]): the training images of a retraining step


def members(cfg: ScaleNetConfig, space: Space, family: dict, source: str = "family.json") -> list[dict]:
    """The members to retrain: `[{family, stage, d, w, r, base}]` from a search's family.json.

    * the searched family at `retrain.stages` (searched and extrapolated stages);
    * "above": the stages the search left out but ranked for its final base
      (`searched_above`, `search.num_search_stages`), to compare with extrapolation;
    * with `retrain.compound`, the compound-scaling family of the same base at the same
      stages but 0 (its S0 is the searched S0), `phi` matched to the ladder or to the
      searched member's MACs (`retrain.compound_target`);
    * a one-shot-per-budget search (`members` in family.json: a base per stage) gives
      the family "per_budget" at `retrain.stages`.
    """
    rc = cfg.retrain
    if "members" in family:
        have = {int(m["stage"]): m for m in family["members"]}
        missing = [s for s in rc.stages if s not in have]
        if missing:
            raise ConfigError(f"config field 'retrain.stages' asks for stages {missing}, but {source} holds "
                              f"{sorted(have)}")
        return [{"family": "per_budget", "stage": s, "d": float(have[s]["d"]), "w": float(have[s]["w"]),
                 "r": int(have[s]["r"]), "base": [int(v) for v in have[s]["base"]]} for s in sorted(rc.stages)]
    base = np.asarray(family["base"])
    trip = {0: (1.0, 1.0, float(space.cfg.res_grid[0][0]))}
    trip.update({int(k): tuple(v) for k, v in family["scaling"].items()})
    trip.update({int(k): tuple(v) for k, v in family["extrapolated"].items()})
    above = {int(k): tuple(v) for k, v in family.get("searched_above", {}).items()}
    missing = [s for s in rc.stages if s not in trip and s not in above]
    if missing:
        raise ConfigError(f"config field 'retrain.stages' asks for stages {missing}, but {source} holds "
                          f"{sorted(set(trip) | set(above))}")
    out = [{"family": "searched", "stage": s, "triple": trip[s]} for s in sorted(rc.stages) if s in trip]
    out += [{"family": "above", "stage": s, "triple": above[s]} for s in sorted(rc.stages) if s in above]
    if rc.compound:
        stages = [s for s in sorted(rc.stages) if s > 0 and s in trip]
        targets, rule = None, cfg.search.flops_rule
        if rc.compound_target == "family":  # matched on the MACs the tables report (true shapes)
            rule = "true"
            targets = {s: search_lib.scaled_macs(space, base, *trip[s][:2], int(trip[s][2])) for s in stages}
        comp = search_lib.compound_scaling(space, base, stages, rc.compound_alpha, rc.compound_beta,
                                           rc.compound_gamma, rule=rule, targets=targets)
        out += [{"family": "compound", "stage": s, "triple": t} for s, t in sorted(comp.items())]
    return [{"family": m["family"], "stage": int(m["stage"]), "d": float(m["triple"][0]),
             "w": float(m["triple"][1]), "r": int(m["triple"][2]), "base": base.tolist()} for m in out]


def member_dir(workdir: pathlib.Path, member: dict) -> pathlib.Path:
    """`workdir/retrain/<family>_s<stage>/`, the run directory of one member."""
    return workdir_lib.stage_dir(workdir, f"retrain/{member['family']}_s{member['stage']}")


def init_state(cfg: ScaleNetConfig, model: SubNet, resolution: int) -> train_lib.TrainState:
    """Fresh parameters (host-side init from `cfg.seed`) and BN statistics of `model`."""
    rc = cfg.retrain
    variables = init_params(model, cfg.seed, jnp.zeros((1, resolution, resolution, 3)), train=False)
    tx = make_optimizer(rc.lr, rc.loop.num_steps, rc.warmup_steps, rc.weight_decay,
                        conv_decay_multiplier=rc.conv_decay_multiplier)
    return train_lib.TrainState.create(params=variables["params"], tx=tx,
                                       extra={"batch_stats": variables["batch_stats"]})


def make_eval_fn(model: SubNet, x: np.ndarray, y: np.ndarray, batch_size: int):
    """`state -> {"accuracy"}` over all of `x [N, r, r, 3]`, `y [N]` (BN running statistics)."""

    @jax.jit
    def per_example(variables, batch):
        xb, yb = batch
        logits = model.apply(variables, xb, train=False)
        return {"accuracy": (jnp.argmax(logits, -1) == yb).astype(jnp.float32)}

    def eval_fn(state) -> dict:
        return evaluation.batched_sum(per_example, (x, y), batch_size, {"params": state.params, **state.extra})

    return eval_fn


def train_member(cfg: ScaleNetConfig, space: Space, arch: dict, resolution: int, data: Data,
                 workdir: pathlib.Path, stop_after: int | None = None) -> tuple[train_lib.TrainState, dict]:
    """Trains the standalone network of `arch` from scratch at `resolution` in `workdir`
    (resuming there), and tests it. Returns the state and
    `{test_accuracy, train_loss, steps, train_time_s, macs, resolution}`."""
    rc = cfg.retrain
    model = subnet_from_arch(space, arch)
    x_tr, y_tr = data.get("train", resolution)
    x_te, y_te = data.get("test", resolution)
    mesh = None
    if rc.loop.num_devices != 1:
        mesh = parallel.make_mesh(rc.loop.num_devices or None)
        if rc.batch_size % mesh.size:
            raise ConfigError(f"config field 'retrain.batch_size' ({rc.batch_size}) must be a multiple of the "
                              f"{mesh.size} devices of 'retrain.loop.num_devices'")

    def loss_fn(params, extra, batch, key):
        del key
        logits, new = model.apply({"params": params, **extra}, batch["x"], train=True, mutable=["batch_stats"])
        loss = smoothed_cross_entropy(logits, batch["y"], rc.label_smoothing)
        return loss, ({"accuracy": jnp.mean(jnp.argmax(logits, -1) == batch["y"])}, dict(new))

    def batch_fn(step: int) -> dict:
        idx = np.random.default_rng([cfg.seed, BATCH_STREAM, step]).integers(0, len(y_tr), rc.batch_size)
        return {"x": x_tr[idx], "y": y_tr[idx]}

    eval_fn = make_eval_fn(model, x_te, y_te, rc.eval_batch_size)
    state, history = train_lib.fit(
        init_state(cfg, model, resolution), train_lib.make_train_step(loss_fn), batch_fn, workdir=workdir,
        loop=rc.loop, mesh=mesh, seed=cfg.seed, eval_fn=eval_fn, desc=f"retrain r={resolution}",
        stop_after=stop_after)
    losses = [row["loss"] for row in history if "loss" in row]
    return state, {
        "test_accuracy": eval_fn(state)["accuracy"],
        "train_loss": losses[-1] if losses else None,
        "steps": int(jax.device_get(state.step)),
        "train_time_s": train_lib.run_times(workdir)["train_time_s"],
        "macs": int(space.macs(arch, resolution)),
        "resolution": int(resolution),
    }


def retrain_family(cfg: ScaleNetConfig, space: Space, family: dict, data: Data, workdir: pathlib.Path,
                   source: str = "family.json") -> list[dict]:
    """Retrains every member of `members(...)`, each in its `member_dir`; one row per member
    with its scaling, test accuracy, MACs and `ratio` = MACs / MACs of the base at S0.

    A member deeper than the super-supernet keeps all its layers (`Space.with_depth`)."""
    rows = []
    for m in members(cfg, space, family, source):
        base = np.asarray(m["base"])
        f0 = float(space.base_macs(base))
        mspace = space.with_depth(m["d"])
        arch = mspace.scale(base, m["d"], m["w"])
        _, res = train_member(cfg, mspace, arch, m["r"], data, member_dir(workdir, m))
        rows.append({"family": m["family"], "stage": m["stage"], "d": m["d"], "w": m["w"], **res,
                     "ratio": res["macs"] / f0, "base": base.tolist()})
    return rows
