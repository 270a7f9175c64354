"""Detectors: MH-UI and the baselines, as scores computed from network outputs.

Every detector maps network outputs of N inputs to `{score_name: [N]}` with
*higher = more likely adversarial*:

    MH-UI            Dirichlet moment matching over the heads  `[H, N, K]` logits
    MSP              -max softmax of the final head             `[N, K]`
    MC dropout       sample entropy / mutual information of T dropout passes `[T, N, K]`
    MCD + Dirichlet  the same moment matching over the T dropout passes (separates the
                     depth of the heads from the estimator)
    Ensemble         sample entropy / mutual information of M members `[M, N, K]`
    Ensemble + Dir.  moment matching over the M members
    RKL Prior Net    the scores of Dir(exp z)                   `[N, K]`

`detection_results(config, nets, x, y, advs)` scores clean and adversarial inputs with
every detector and measures detection (AUROC/AUPR, `metrics`), with the ablations over
the heads used, the estimator and the score.

Protocol: only test inputs that the attacked classifier gets right are used; the clean
versions are the negatives, their adversarial versions the positives ("all"), or only
those whose prediction the attack changed ("succ"). Sets other than `adaptive` target
the classifier only (non-adaptive).
"""

from __future__ import annotations

import dataclasses
import itertools

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.core import evaluation
from jaxlab.core.config import ConfigError
from jaxlab.mhui import dirichlet, metrics, models, rng
from jaxlab.mhui.train import prior_alpha

__all__ = ["mhui_scores", "msp_scores", "sample_method_scores", "prior_net_scores", "select_heads", "METHODS",
           "PRIMARY", "primary_score", "make_outputs", "method_scores", "target_predictions", "head_subsets",
           "detection_results"]

# Detectors in table order, by the network whose classifier they share.
METHODS = {"mhui": ("MH-UI", "MSP", "MC dropout", "MCD + Dirichlet"),
           "ensemble": ("Ensemble", "Ensemble + Dirichlet"), "prior_net": ("RKL Prior Net",),
           "prior_net_fkl": ("FKL Prior Net",)}
# The score a baseline reports in the main tables (the Dirichlet methods: `detect.score`).
PRIMARY = {"MSP": "max_prob", "MC dropout": "mutual_info", "Ensemble": "mutual_info"}


def select_heads(logits: jax.Array, heads: tuple[int, ...]) -> jax.Array:
    """The heads `heads` (() = all) of `logits [H, N, K]`; negative indices count from the end."""
    if not heads:
        return logits
    h = logits.shape[0]
    bad = [i for i in heads if not -h <= i < h]
    if bad:
        raise ConfigError(f"config field 'detect.heads' names heads {bad}, but the model has {h} heads")
    return logits[jnp.asarray(heads)]


def _mm(probs, dcfg):
    return dirichlet.dirichlet_moment_match(probs, combine=dcfg.combine, var_floor=dcfg.var_floor,
                                    min_precision=dcfg.min_precision)


def mhui_scores(logits: jax.Array, dcfg, heads: tuple[int, ...] | None = None) -> dict[str, jax.Array]:
    """MH-UI: all Dirichlet scores of the moment-matched heads. `logits [H, N, K]`."""
    z = select_heads(logits, dcfg.heads if heads is None else heads)
    probs = jax.nn.softmax(z / dcfg.head_temperature, axis=-1)
    return dirichlet.dirichlet_scores(_mm(probs, dcfg))


def msp_scores(logits: jax.Array) -> dict[str, jax.Array]:
    """Maximum softmax probability of one head, `[N, K]` -> {"max_prob": -max p}."""
    return {"max_prob": -jnp.max(jax.nn.softmax(logits, -1), -1)}


def sample_method_scores(logits: jax.Array, dcfg) -> tuple[dict[str, jax.Array], dict[str, jax.Array]]:
    """`logits [S, N, K]` of S samples (dropout passes or members) ->
    (sample scores {entropy, max_prob, mutual_info}, moment-matched Dirichlet scores)."""
    probs = jax.nn.softmax(logits, -1)
    return dirichlet.sample_scores(probs), dirichlet.dirichlet_scores(_mm(probs, dcfg))


def prior_net_scores(logits: jax.Array) -> dict[str, jax.Array]:
    """Scores of the Prior Network's own Dirichlet, alpha = exp(z), `[N, K]`."""
    return dirichlet.dirichlet_scores(prior_alpha(logits))


def primary_score(method: str, dcfg) -> str:
    """The score of `method` in the main tables."""
    return PRIMARY.get(method, dcfg.score)


def make_outputs(config, nets: dict):
    """`outputs(x [N, ...]) -> {name: array}`: every network output the detectors need.

    `mhui_logits [H, N, K]`, `mc_logits [T, N, K]` (final head, T dropout passes, where
    `detect.mc_samples >= 2` and the model has dropout), `ens_logits [M, N, K]` (final
    heads of the members) and `pn_logits [N, K]`, computed in padded batches of
    `eval_batch_size` (one compile each).
    """
    model, p, e = nets["mhui"]
    fns = {"mhui_logits": (jax.jit(lambda pe, xx, k: models.forward(model, pe[0], pe[1], xx)[0]), (p, e), 1)}
    if config.detect.mc_samples >= 2 and config.model.dropout_rate > 0:
        fns["mc_logits"] = (jax.jit(lambda pe, xx, k: models.mc_forward(
            model, pe[0], pe[1], xx, k, config.detect.mc_samples)[:, -1]), (p, e), 1)
    if "ensemble" in nets:
        em, ep, ee = nets["ensemble"]
        member = jax.jit(lambda pe, xx, k: jax.vmap(lambda pm, xm: models.forward(em, pm, xm, xx)[0][-1])(*pe))
        fns["ens_logits"] = (member, (ep, ee), 1)
    if "prior_net" in nets:
        pm, pp, pe_ = nets["prior_net"]
        fns["pn_logits"] = (jax.jit(lambda pe, xx, k: models.forward(pm, pe[0], pe[1], xx)[0]), (pp, pe_), 0)
    if "prior_net_fkl" in nets:
        fm, fp, fe = nets["prior_net_fkl"]
        fns["fkl_logits"] = (jax.jit(lambda pe, xx, k: models.forward(fm, pe[0], pe[1], xx)[0]), (fp, fe), 0)
    key = rng.key(config.seed, rng.MC_DROPOUT)

    def outputs(x: np.ndarray) -> dict[str, np.ndarray]:
        parts: dict[str, list] = {name: [] for name in fns}
        for j, (xb, mask) in enumerate(evaluation.padded_batches(x, min(config.eval_batch_size, len(x)))):
            xb = jnp.asarray(xb)
            for name, (fn, pe, axis) in fns.items():
                out = np.asarray(fn(pe, xb, jax.random.fold_in(key, j)))
                parts[name].append(np.compress(mask, out, axis=axis))
        return {name: np.concatenate(v, axis=fns[name][2]) for name, v in parts.items()}

    return outputs


def method_scores(dcfg, outs: dict, target: str) -> dict[str, dict[str, np.ndarray]]:
    """`{method: {score: [N]}}` of the detectors that share the classifier of network `target`."""
    res = {}
    if target == "mhui":
        res["MH-UI"] = mhui_scores(jnp.asarray(outs["mhui_logits"]), dcfg)
        res["MSP"] = msp_scores(jnp.asarray(outs["mhui_logits"][-1]))
        if "mc_logits" in outs:
            res["MC dropout"], res["MCD + Dirichlet"] = sample_method_scores(jnp.asarray(outs["mc_logits"]), dcfg)
    elif target == "ensemble" and "ens_logits" in outs:
        res["Ensemble"], res["Ensemble + Dirichlet"] = sample_method_scores(jnp.asarray(outs["ens_logits"]), dcfg)
    elif target == "prior_net" and "pn_logits" in outs:
        res["RKL Prior Net"] = prior_net_scores(jnp.asarray(outs["pn_logits"]))
    elif target == "prior_net_fkl" and "fkl_logits" in outs:
        res["FKL Prior Net"] = prior_net_scores(jnp.asarray(outs["fkl_logits"]))
    return {m: {k: np.asarray(v) for k, v in s.items()} for m, s in res.items()}


def target_predictions(outs: dict, target: str) -> np.ndarray:
    """`[N]` predictions of the classifier through which network `target` is attacked."""
    if target == "mhui":
        return outs["mhui_logits"][-1].argmax(-1)
    if target == "ensemble":
        z = jnp.asarray(outs["ens_logits"])
        return np.asarray(jax.nn.logsumexp(jax.nn.log_softmax(z, -1), 0)).argmax(-1)
    if target == "prior_net_fkl":
        return outs["fkl_logits"].argmax(-1)
    return outs["pn_logits"].argmax(-1)


def head_subsets(num_heads: int) -> list[tuple[int, ...]]:
    """Every subset of at least 2 of the heads, smallest first (all heads alone beyond 6)."""
    if num_heads > 6:
        return [tuple(range(num_heads))]
    return [c for r in range(2, num_heads + 1) for c in itertools.combinations(range(num_heads), r)]


def detection_results(config, nets: dict, x: np.ndarray, y: np.ndarray, advs: dict) -> tuple[dict, dict]:
    """Detection metrics of every detector on every adversarial set.

    Args:
      nets: `{name: (model, params, extra)}` as for `attacks.craft`.
      x, y: clean test inputs and labels; `advs`: `{attacks.set_key: x_adv}`.

    Returns:
      `(results, hist)`: results hold `rows` (one per set, detector and score),
      `ablation_heads` (MH-UI over head subsets and estimators, the configured score),
      `adaptive` (rows of the adaptive sets, with their `weight`), `clean_head_acc` and
      the 10/50/90% quantiles of MH-UI's clean alpha_0; `hist` maps each non-adaptive
      MH-UI set to (clean, adversarial) precision scores of the examples used.
    """
    from jaxlab.mhui.attacks import parse_set_key

    dcfg = config.detect
    outputs = make_outputs(config, nets)
    clean = outputs(x)
    clean_scores = {t: method_scores(dcfg, clean, t) for t in METHODS}
    num_heads = clean["mhui_logits"].shape[0]
    variants = [(h, c) for h in head_subsets(num_heads) for c in ("pooled", "minka_log")]

    def ablation_score(logits, heads, combine):
        dc = dataclasses.replace(dcfg, heads=heads, combine=combine)
        return np.asarray(mhui_scores(jnp.asarray(logits), dc)[dcfg.score])

    clean_ablation = {v: ablation_score(clean["mhui_logits"], *v) for v in variants}
    rows, ablation_rows, adaptive_rows, hist = [], [], [], {}
    for k, adv in advs.items():
        target, name, eps, weight = parse_set_key(k)
        outs = outputs(adv)
        correct = target_predictions(clean, target) == y
        success = (target_predictions(outs, target) != y)[correct]
        base = {"target": target, "attack": name, "eps": eps, "n": int(correct.sum()),
                "success_rate": float(success.mean())}
        adv_scores = method_scores(dcfg, outs, target)
        for method, scores in adv_scores.items():
            for score, s_adv in scores.items():
                met = metrics.detection_metrics(clean_scores[target][method][score][correct], s_adv[correct], success)
                row = {**base, "method": method, "score": score, **met}
                (adaptive_rows if weight is not None else rows).append(
                    row if weight is None else {**row, "weight": weight})
        if target == "mhui" and weight is None:
            hist[k] = (clean_scores["mhui"]["MH-UI"]["precision"][correct], adv_scores["MH-UI"]["precision"][correct])
            for heads, combine in variants:
                sa = ablation_score(outs["mhui_logits"], heads, combine)
                met = metrics.detection_metrics(clean_ablation[(heads, combine)][correct], sa[correct], success)
                ablation_rows.append({**base, "heads": list(heads), "combine": combine, **met})
    results = {"rows": rows, "ablation_heads": ablation_rows, "adaptive": adaptive_rows,
               "clean_head_acc": [float(a) for a in (clean["mhui_logits"].argmax(-1) == y[None]).mean(-1)],
               "clean_precision_quantiles": np.quantile(
                   -clean_scores["mhui"]["MH-UI"]["precision"], [0.1, 0.5, 0.9]).tolist()}
    return results, hist
