"""Detection protocol with validation-chosen detectors and strong adaptive attacks.

The test set is split in two halves (`rng.VAL_SPLIT`): a validation half on which every
detector's choices are made, and a test half on which it is measured.

Detectors (the network whose classifier each one shares in brackets):

    MH-UI        [mhui]           Dirichlet moment matching over a subset of the heads
    MSP          [mhui]           final head: max prob or entropy
    MC dropout   [mhui]           T dropout passes of the final head: MI, entropy, max prob
    RKL Prior Net [prior_net]     scores of Dir(exp z)
    FKL Prior Net [prior_net_fkl] scores of Dir(exp z), forward-KL training

Choices on the validation half: the score, its sign (a detector may flag *low*
uncertainty: `sign = -1`) and, for MH-UI, the heads and the estimator. The criterion is
the AUROC on successful non-adaptive attacks (PGD-Linf and C&W-L2 against the detector's
classifier, pooled); negatives are the clean validation inputs the classifier gets right.
MH-UI "as specified" (all heads, pooled estimator, low alpha_0 = adversarial) is kept
as a fixed reference.

Attacks on the test half, white-box, L-inf radius eps (C&W: L2, unbounded):

    pgd      PGD on the classifier's cross-entropy (non-adaptive)
    cw       C&W-L2 on the classifier (non-adaptive)
    hinge    constrained adaptive: PGD on max(margin + kappa, 0) + w * s(x), margin =
             z_y - max_{j!=y} z_j of the classifier, s = the detector's signed score, for
             every w in `weights`; keeps per example the misclassified iterate of lowest s
    agree    all heads agree on the wrong class: targeted PGD on the mean cross-entropy of
             every head (MH-UI network: all heads; MC dropout: every dropout pass; Prior
             Network: its head) towards the classifier's most likely wrong class; keeps
             the misclassified iterate of lowest s
    score    two-stage: from the `pgd` set, PGD that descends s(x) alone inside the same
             ball; keeps the misclassified iterate of lowest s (PGD on the score itself)
    adaptive per example the lowest-s successful one of hinge, agree and score

MC dropout is attacked with expectation over transformation: each gradient step and each
"keep" decision uses fresh dropout masks (the score is the mean over T passes), and the
evaluation uses other masks (`rng.MC_DROPOUT`). For precision-type scores the attacks and
the detectors use -log alpha_0 (the same ranking as -alpha_0, better scaled gradients).

Metrics on the test half (`evaluate_sets`): success rate (among clean-correct inputs),
AUROC and TPR at `fpr` FPR on successful attacks only (the threshold is the (1 - fpr)
quantile of the validation clean scores, so the test FPR is measured, not set), AUROC over
all attacked inputs; and the same on the common subset: the test inputs every classifier
gets right and every method's attack of that kind fools.
"""

from __future__ import annotations

import dataclasses
import itertools
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxlab.core import evaluation
from jaxlab.mhui import attacks, dirichlet, metrics, models, rng

__all__ = ["Detector", "METHODS", "NETWORK_OF", "CANDIDATE_SCORES", "ATTACK_KINDS", "split_val_test",
           "raw_scores", "signed_score", "choose_detector", "reference_detector", "best_of_pgd", "tpr_at_fpr",
           "run_protocol"]

METHODS = ("MH-UI", "MSP", "MC dropout", "RKL Prior Net", "FKL Prior Net")
NETWORK_OF = {"MH-UI": "mhui", "MSP": "mhui", "MC dropout": "mhui", "RKL Prior Net": "prior_net",
              "FKL Prior Net": "prior_net_fkl"}
CANDIDATE_SCORES = {"MH-UI": dirichlet.SCORES, "MSP": ("max_prob", "entropy"),
                    "MC dropout": ("mutual_info", "entropy", "max_prob"),
                    "RKL Prior Net": dirichlet.SCORES, "FKL Prior Net": dirichlet.SCORES}
ATTACK_KINDS = ("pgd", "cw", "hinge", "agree", "score", "adaptive")
ADAPTIVE_KINDS = ("hinge", "agree", "score")


@dataclasses.dataclass(frozen=True)
class Detector:
    """One detector: `sign * score` of `method`'s outputs, higher = flagged adversarial."""

    method: str
    score: str
    sign: float = 1.0
    heads: tuple[int, ...] = ()
    combine: str = "pooled"
    temperature: float = 1.0


def split_val_test(n: int, seed: int, val_fraction: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint sorted `(val_idx, test_idx)` of `range(n)`, a seeded random split."""
    perm = np.random.default_rng([seed, rng.VAL_SPLIT]).permutation(n)
    k = int(round(val_fraction * n))
    if not 0 < k < n:
        raise ValueError(f"val_fraction {val_fraction} leaves an empty validation or test half of {n} inputs")
    return np.sort(perm[:k]), np.sort(perm[k:])


def _dir_scores(alpha):
    """`dirichlet.dirichlet_scores` with precision / EPKL as -log alpha_0 (same ranking)."""
    s = dirichlet.dirichlet_scores(alpha)
    log_a0 = jnp.log(jnp.sum(alpha, -1))
    s["precision"] = -log_a0
    s["epkl"] = jnp.log(alpha.shape[-1] - 1.0) - log_a0
    return s


def raw_scores(method: str, z, *, heads=(), combine="pooled", temperature=1.0, dcfg=None) -> dict:
    """All candidate scores (high = uncertain) of `method` from its network outputs `z`.

    `z`: MH-UI/MSP `[H, B, K]` head logits; MC dropout `[T, B, K]` final-head logits of T
    dropout passes; Prior Networks `[B, K]`.
    """
    if method == "MH-UI":
        sel = z if not heads else z[jnp.asarray(heads)]
        probs = jax.nn.softmax(sel / temperature, -1)
        kw = {} if dcfg is None else {"var_floor": dcfg.var_floor, "min_precision": dcfg.min_precision}
        return _dir_scores(dirichlet.dirichlet_moment_match(probs, combine=combine, **kw))
    if method == "MSP":
        p = jax.nn.softmax(z[-1], -1)
        return {"max_prob": -jnp.max(p, -1), "entropy": dirichlet.entropy_of_mean(p)}
    if method == "MC dropout":
        return dirichlet.sample_scores(jax.nn.softmax(z, -1))
    if method in ("RKL Prior Net", "FKL Prior Net"):
        alpha = jnp.exp(jnp.clip(z, -20.0, 20.0))
        s = _dir_scores(alpha)
        s["precision"] = -jax.nn.logsumexp(jnp.clip(z, -20.0, 20.0), -1)  # -log alpha_0, stable
        return s
    raise ValueError(f"unknown detector method {method!r}; expected one of {METHODS}")


def signed_score(det: Detector, z, dcfg=None):
    """`det.sign * score` `[B]` of the detector from its network outputs `z`."""
    s = raw_scores(det.method, z, heads=det.heads, combine=det.combine, temperature=det.temperature, dcfg=dcfg)
    return det.sign * s[det.score]


def reference_detector() -> Detector:
    """MH-UI as specified: all heads, pooled estimator, low alpha_0 flagged."""
    return Detector("MH-UI", "precision", 1.0, (), "pooled", 1.0)


def _candidates(method: str, num_heads: int):
    if method != "MH-UI":
        return [Detector(method, s) for s in CANDIDATE_SCORES[method]]
    subsets = [c for r in range(2, num_heads + 1) for c in itertools.combinations(range(num_heads), r)]
    return [Detector(method, s, 1.0, h, c) for h in subsets for c in ("pooled", "minka_log")
            for s in CANDIDATE_SCORES[method]]


def choose_detector(method: str, z_clean, z_adv_sets, num_heads: int, dcfg=None) -> tuple[Detector, float, list]:
    """The candidate (score, sign, heads, estimator) of highest validation AUROC.

    Args:
      z_clean: outputs of the clean validation inputs the classifier gets right.
      z_adv_sets: outputs of their successful adversarial versions, one array per attack
        (pooled as positives).

    Returns `(detector, its validation AUROC, [(candidate, auroc of sign +1)] of every candidate)`.
    """
    table, cache = [], {}
    z_clean, z_adv = jnp.asarray(z_clean), jnp.concatenate([jnp.asarray(z) for z in z_adv_sets], -2)
    for cand in _candidates(method, num_heads):
        group = (cand.heads, cand.combine)  # every score of one head subset / estimator in one pass
        if group not in cache:
            kw = {"heads": cand.heads, "combine": cand.combine, "temperature": cand.temperature, "dcfg": dcfg}
            cache[group] = (raw_scores(method, z_clean, **kw), raw_scores(method, z_adv, **kw))
        neg, pos = (np.asarray(s[cand.score]) for s in cache[group])
        table.append((cand, metrics.auroc(neg, pos)))
    best, auc = max(table, key=lambda t: max(t[1], 1.0 - t[1]))
    if auc < 0.5:
        return dataclasses.replace(best, sign=-1.0), 1.0 - auc, table
    return best, auc, table


def tpr_at_fpr(val_clean: np.ndarray, test_clean: np.ndarray, test_pos: np.ndarray, fpr: float) -> tuple[float, float]:
    """`(TPR, measured test FPR)` at the threshold = (1 - fpr) quantile of the validation clean scores."""
    thr = float(np.quantile(np.asarray(val_clean, np.float64), 1.0 - fpr))
    tpr = float(np.mean(np.asarray(test_pos) > thr)) if len(test_pos) else float("nan")
    return tpr, float(np.mean(np.asarray(test_clean) > thr))


def best_of_pgd(objective, check, x, x_start, key, *, eps: float, step_size: float, num_steps: int):
    """Signed-gradient descent on `objective(x, key) [B]` in the L-inf eps-ball around `x`,
    keeping per example the iterate (from `x_start` on) that `check(x, key) -> (misclassified
    [B] bool, score [B])` finds misclassified with the lowest score.

    Returns `(x_best, score_best)`: `x_start` and +inf where no iterate was misclassified.
    """
    bshape = (x.shape[0],) + (1,) * (x.ndim - 1)
    k0, key = jax.random.split(key)
    mis, s = check(x_start, k0)
    best_s = jnp.where(mis, s, jnp.inf)

    def step(carry, k):
        xa, bx, bs = carry
        kg, kc = jax.random.split(k)
        g = jax.grad(lambda xx: jnp.sum(objective(xx, kg)))(xa)
        xa = jnp.clip(x + jnp.clip(xa - step_size * jnp.sign(g) - x, -eps, eps), 0.0, 1.0)
        m, sc = check(xa, kc)
        better = m & (sc < bs)
        return (xa, jnp.where(better.reshape(bshape), xa, bx), jnp.where(better, sc, bs)), None

    (_, bx, bs), _ = jax.lax.scan(step, (x_start, x_start, best_s), jax.random.split(key, num_steps))
    return bx, bs


def _margin(z, y):
    onehot = jax.nn.one_hot(y, z.shape[-1], dtype=z.dtype)
    return jnp.sum(onehot * z, -1) - jnp.max(z - 1e9 * onehot, -1)


class _MethodFns:
    """Jitted functions of one detector on its network: outputs, classifier, attacks."""

    def __init__(self, det: Detector, net, dcfg, pcfg):
        model, self.params, self.extra = net
        mc = dcfg.mc_samples
        method = det.method

        def outputs(p, e, x, key):
            if method == "MC dropout":
                return models.mc_forward(model, p, e, x, key, mc)[:, -1]
            return models.forward(model, p, e, x)[0]

        def classify(p, e, x):
            z = models.forward(model, p, e, x)[0]
            return z if z.ndim == 2 else z[-1]

        def heads(p, e, x, key):  # every "head" whose agreement the agree attack forces
            z = outputs(p, e, x, key)
            return z[None] if z.ndim == 2 else z

        def score(p, e, x, key):
            return signed_score(det, outputs(p, e, x, key), dcfg)

        def check(p, e, x, y, key):
            return classify(p, e, x).argmax(-1) != y, score(p, e, x, key)

        step = pcfg.rel_step_size * pcfg.eps / pcfg.num_steps

        def uniform_start(x, key):
            return jnp.clip(x + jax.random.uniform(key, x.shape, x.dtype, -pcfg.eps, pcfg.eps), 0.0, 1.0)

        def pgd(p, e, x, y, key):
            loss = attacks.cross_entropy_loss(lambda xx: classify(p, e, xx))
            return attacks.pgd(loss, x, y, key, eps=pcfg.eps, step_size=step, num_steps=pcfg.num_steps)

        def cw(p, e, x, y, key):
            return attacks.cw_l2(lambda xx: classify(p, e, xx), x, y, binary_steps=pcfg.cw_binary_steps,
                                 num_steps=pcfg.cw_steps, learning_rate=pcfg.cw_lr)

        def run_best(p, e, x, y, key, objective, x_start):
            return best_of_pgd(objective, lambda xx, k: check(p, e, xx, y, k), x, x_start, key,
                               eps=pcfg.eps, step_size=step, num_steps=pcfg.num_steps)

        def hinge(p, e, x, y, key, w):
            def obj(xx, k):
                return jnp.maximum(_margin(classify(p, e, xx), y) + pcfg.kappa, 0.0) + w * score(p, e, xx, k)
            k1, k2 = jax.random.split(key)
            return run_best(p, e, x, y, k2, obj, uniform_start(x, k1))

        def agree(p, e, x, y, key):
            z0 = classify(p, e, x)
            target = jnp.argmax(z0 - 1e9 * jax.nn.one_hot(y, z0.shape[-1]), -1)

            def obj(xx, k):
                zh = heads(p, e, xx, k)
                return jnp.mean(jax.vmap(lambda zz: optax.softmax_cross_entropy_with_integer_labels(zz, target))(zh),
                                0)
            k1, k2 = jax.random.split(key)
            return run_best(p, e, x, y, k2, obj, uniform_start(x, k1))

        def score_pgd(p, e, x, y, key, x_start):
            return run_best(p, e, x, y, key, lambda xx, k: score(p, e, xx, k), x_start)

        self.outputs, self.classify, self.score = jax.jit(outputs), jax.jit(classify), jax.jit(score)
        self.pgd, self.cw, self.hinge = jax.jit(pgd), jax.jit(cw), jax.jit(hinge)
        self.agree, self.score_pgd = jax.jit(agree), jax.jit(score_pgd)


def _batched(fn, arrays: tuple, key, batch_size: int):
    """`fn(*batch, key_j)` over padded batches; outputs (array or tuple of arrays) concatenated."""
    outs = []
    for j, (batch, mask) in enumerate(evaluation.padded_batches(arrays, min(batch_size, len(arrays[0])))):
        out = fn(*[jnp.asarray(b) for b in batch], jax.random.fold_in(key, j))
        out = out if isinstance(out, tuple) else (out,)
        outs.append(tuple(np.compress(mask, np.asarray(o), axis=0) for o in out))
    res = tuple(np.concatenate(parts) for parts in zip(*outs))
    return res if len(res) > 1 else res[0]


def _outputs(fns: _MethodFns, x, key, batch_size):
    """Network outputs of `x` with the sample axis (if any) first."""
    out = _batched(lambda xb, k: jnp.moveaxis(fns.outputs(fns.params, fns.extra, xb, k), -2, 0), (x,), key,
                   batch_size)
    return np.moveaxis(out, 0, -2)


def _craft(fns: _MethodFns, x, y, key, pcfg, kinds, pgd_set=None) -> dict:
    """`{kind: x_adv}` of the requested attack kinds against one detector."""
    p, e, bs = fns.params, fns.extra, pcfg.batch_size
    out, t = {}, {}
    for i, kind in enumerate(kinds):
        k = jax.random.fold_in(key, i)
        t0 = time.perf_counter()
        if kind == "pgd":
            out[kind] = _batched(lambda xb, yb, kk: fns.pgd(p, e, xb, yb, kk), (x, y), k, bs)
        elif kind == "cw":
            out[kind] = _batched(lambda xb, yb, kk: fns.cw(p, e, xb, yb, kk), (x, y), k, bs)
        elif kind == "hinge":
            cands = [_batched(lambda xb, yb, kk, w=w: fns.hinge(p, e, xb, yb, kk, jnp.float32(w)), (x, y),
                              jax.random.fold_in(k, j), bs) for j, w in enumerate(pcfg.weights)]
            xs = np.stack([c[0] for c in cands])
            out[kind] = xs[np.argmin(np.stack([c[1] for c in cands]), 0), np.arange(len(x))]
        elif kind == "agree":
            out[kind] = _batched(lambda xb, yb, kk: fns.agree(p, e, xb, yb, kk), (x, y), k, bs)[0]
        elif kind == "score":
            start = pgd_set if pgd_set is not None else out["pgd"]
            out[kind] = _batched(lambda xb, yb, sb, kk: fns.score_pgd(p, e, xb, yb, kk, sb), (x, y, start), k, bs)[0]
        t[kind] = time.perf_counter() - t0
    return out, t


def _select_adaptive(fns: _MethodFns, x, y, sets: dict, key, batch_size) -> np.ndarray:
    """Per example the successful adaptive candidate of lowest score (the attacker's own,
    fresh-mask scores); the first candidate where none succeeded."""
    p, e = fns.params, fns.extra
    best_s = np.full(len(x), np.inf)
    best = sets[ADAPTIVE_KINDS[0]].copy()
    for i, kind in enumerate(ADAPTIVE_KINDS):
        mis, s = _batched(lambda xb, yb, kk: (fns.classify(p, e, xb).argmax(-1) != yb, fns.score(p, e, xb, kk)),
                          (sets[kind], y), jax.random.fold_in(key, i), batch_size)
        s = np.where(mis, s, np.inf)
        better = s < best_s
        best[better], best_s[better] = sets[kind][better], s[better]
    return best


def run_protocol(config, nets: dict, x: np.ndarray, y: np.ndarray, *, log=print) -> dict:
    """The whole protocol on one trained run (see the module docstring); JSON-ready results."""
    pcfg, dcfg = config.protocol, config.detect
    bs = pcfg.batch_size
    val, test = split_val_test(len(x), config.seed, pcfg.val_fraction)
    eval_key = rng.key(config.seed, rng.MC_DROPOUT)
    attack_key = rng.key(config.seed, rng.PROTOCOL_ATTACK)
    has_dropout = config.model.arch == "cnn" and config.model.dropout_rate > 0 and dcfg.mc_samples >= 2
    methods = [m for m in METHODS if NETWORK_OF[m] in nets and (m != "MC dropout" or has_dropout)]
    num_heads = config.model.num_heads
    res: dict = {"val_size": len(val), "test_size": len(test), "eps": pcfg.eps, "fpr": pcfg.fpr, "choices": {},
                 "rows": [], "common": [], "temperature": [], "reference": [], "times": {}}

    # --- validation: non-adaptive attacks per network, detector choice per method
    zs, val_sets = {}, {}
    for m in methods:
        fns = _MethodFns(Detector(m, CANDIDATE_SCORES[m][0]), nets[NETWORK_OF[m]], dcfg, pcfg)
        net = NETWORK_OF[m]
        if net not in val_sets:
            val_sets[net], _ = _craft(fns, x[val], y[val], jax.random.fold_in(attack_key, 1000 + len(val_sets)),
                                      pcfg, ("pgd", "cw"))
        pred = np.asarray(fns.classify(fns.params, fns.extra, jnp.asarray(x[val]))).argmax(-1)
        ok = pred == y[val]
        zc = _outputs(fns, x[val], eval_key, bs)
        z_adv = []
        for xs in val_sets[net].values():
            succ = ok & (np.asarray(fns.classify(fns.params, fns.extra, jnp.asarray(xs))).argmax(-1) != y[val])
            z_adv.append(np.take(_outputs(fns, xs, eval_key, bs), np.flatnonzero(succ), axis=-2))
        det, auc, _ = choose_detector(m, np.take(zc, np.flatnonzero(ok), axis=-2), z_adv, num_heads, dcfg)
        zs[m] = (det, np.take(zc, np.flatnonzero(ok), axis=-2))
        res["choices"][m] = {**dataclasses.asdict(det), "heads": list(det.heads), "val_auroc": auc}
        log(f"protocol: {m} chose {det} (validation AUROC {auc:.3f})")

    # --- test: attacks against every chosen detector; per-example success and scores
    per: dict = {}
    for mi, m in enumerate(methods):
        det = zs[m][0]
        fns = _MethodFns(det, nets[NETWORK_OF[m]], dcfg, pcfg)
        xt, yt = x[test], y[test]
        key = jax.random.fold_in(attack_key, mi)
        sets, times = _craft(fns, xt, yt, key, pcfg, ("pgd", "cw") + ADAPTIVE_KINDS)
        sets["adaptive"] = _select_adaptive(fns, xt, yt, sets, jax.random.fold_in(key, 99), bs)
        res["times"][m] = times

        def scores_of(xs, d=det, f=fns):
            return np.asarray(signed_score(d, jnp.asarray(_outputs(f, xs, eval_key, bs)), dcfg))

        def pred_of(xs, f=fns):
            return np.asarray(f.classify(f.params, f.extra, jnp.asarray(xs))).argmax(-1)

        correct = pred_of(xt) == yt
        val_clean = np.asarray(signed_score(det, jnp.asarray(zs[m][1]), dcfg))
        per[m] = {"correct": correct, "clean": scores_of(xt), "val_clean": val_clean, "sets": {}}
        for kind in ATTACK_KINDS:
            xs = sets[kind]
            succ = correct & (pred_of(xs) != yt)
            per[m]["sets"][kind] = (succ, scores_of(xs))
            res["rows"].append({"method": m, "attack": kind, **_metrics(per[m], kind, correct, pcfg.fpr),
                                "linf": float(np.abs(xs - xt).reshape(len(xt), -1).max(1)[succ].mean())
                                if succ.any() else float("nan")})
            log(f"protocol: {m} {kind}: success {res['rows'][-1]['success_rate']:.2f}, "
                f"AUROC(succ) {res['rows'][-1]['auroc_success']:.3f}")
        if m == "MH-UI":
            res["temperature"] = _temperature_rows(det, fns, xt, zs[m][1], per[m], sets, eval_key, pcfg, dcfg)
            ref = reference_detector()
            zc_t = _outputs(fns, xt, eval_key, bs)
            ref_per = {"correct": correct, "clean": np.asarray(signed_score(ref, jnp.asarray(zc_t), dcfg)),
                       "val_clean": np.asarray(signed_score(ref, jnp.asarray(zs[m][1]), dcfg)), "sets": {}}
            for kind in ("pgd", "cw"):
                ref_per["sets"][kind] = (per[m]["sets"][kind][0], np.asarray(signed_score(
                    ref, jnp.asarray(_outputs(fns, sets[kind], eval_key, bs)), dcfg)))
                res["reference"].append({"method": "MH-UI as specified", "attack": kind,
                                         **_metrics(ref_per, kind, correct, pcfg.fpr)})

    # --- common subset: correct for every classifier, fooled for every method
    all_correct = np.all([per[m]["correct"] for m in methods], 0)
    for kind in ATTACK_KINDS:
        common = all_correct & np.all([per[m]["sets"][kind][0] for m in methods], 0)
        for m in methods:
            sub = {"correct": all_correct, "clean": per[m]["clean"], "val_clean": per[m]["val_clean"],
                   "sets": {kind: (common, per[m]["sets"][kind][1])}}
            res["common"].append({"method": m, "attack": kind, **_metrics(sub, kind, all_correct, pcfg.fpr)})
    return res


def _metrics(per_method: dict, kind: str, correct: np.ndarray, fpr: float) -> dict:
    succ, s_adv = per_method["sets"][kind]
    clean = per_method["clean"][correct]
    pos = s_adv[succ]
    out = {"n_correct": int(correct.sum()), "n_success": int(succ.sum()),
           "success_rate": float(succ.sum() / max(correct.sum(), 1)),
           "auroc_all": metrics.auroc(clean, s_adv[correct]) if correct.any() else float("nan")}
    if len(pos) and len(clean):
        out["auroc_success"] = metrics.auroc(clean, pos)
        out["tpr"], out["test_fpr"] = tpr_at_fpr(per_method["val_clean"], clean, pos, fpr)
    else:
        out["auroc_success"], out["tpr"], out["test_fpr"] = float("nan"), float("nan"), float("nan")
    return out


def _temperature_rows(det, fns, xt, zval_clean, per_m, sets, eval_key, pcfg, dcfg) -> list[dict]:
    """MH-UI with its chosen heads / score / sign at each head temperature: AUROC on the
    successful test attacks (the adaptive sets were crafted against temperature 1)."""
    rows = []
    z_clean = _outputs(fns, xt, eval_key, pcfg.batch_size)
    z_sets = {k: _outputs(fns, sets[k], eval_key, pcfg.batch_size) for k in ("pgd", "cw", "adaptive")}
    correct = per_m["correct"]
    for temp in pcfg.temperatures:
        d = dataclasses.replace(det, temperature=float(temp))
        sub = {"correct": correct, "clean": np.asarray(signed_score(d, jnp.asarray(z_clean), dcfg)),
               "val_clean": np.asarray(signed_score(d, jnp.asarray(zval_clean), dcfg)), "sets": {}}
        for kind, z in z_sets.items():
            sub["sets"][kind] = (per_m["sets"][kind][0], np.asarray(signed_score(d, jnp.asarray(z), dcfg)))
            rows.append({"temperature": float(temp), "attack": kind, **_metrics(sub, kind, correct, pcfg.fpr)})
    return rows
