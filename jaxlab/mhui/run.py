"""`jaxlab mhui train | attack | evaluate`.

    train     trains the multi-exit network (all heads jointly), the deep ensemble and
              the reverse-KL Prior Network into WORKDIR/nets/{mhui,ensemble,prior_net}/.
    attack    white-box attacks on the test set against each network's own classifier
              (MH-UI's final head, the ensemble mean, the Prior Network's mean) and the
              adaptive attack on MH-UI; writes WORKDIR/attacks.npz.
    evaluate  detection AUROC/AUPR of every method (all attacked inputs and successful
              attacks only), ablations over heads / estimator / score; writes
              WORKDIR/tables.md, figures/*.png and summary.json.

Protocol: only test inputs that the attacked classifier gets right are used; the clean
versions are the negatives, their adversarial versions the positives ("all"), or only
those whose prediction the attack changed ("succ"). Attacks other than `adaptive`
target the classifier only (non-adaptive).
"""

from __future__ import annotations

import functools
import itertools
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxlab.core import checkpoint as ckpt_lib
from jaxlab.core import workdir as workdir_lib
from jaxlab.mhui import attacks as A
from jaxlab.mhui import configs, detect, models
from jaxlab.mhui import data as data_lib
from jaxlab.mhui import metrics as M
from jaxlab.mhui import train as T

__all__ = ["ACTIONS", "train", "attack", "evaluate", "load", "load_nets", "attack_sets"]

LINF_ATTACKS = ("fgsm", "bim", "pgd_linf")


# ----------------------------------------------------------------------------- training

def _net_dirs(workdir) -> dict[str, pathlib.Path]:
    root = pathlib.Path(workdir) / "nets"
    return {"mhui": root / "mhui", "ensemble": root / "ensemble", "prior_net": root / "prior_net"}


def _first(tree):
    return jax.tree.map(lambda a: a[0], tree)


def load_nets(cfg, workdir, data=None, *, train_missing: bool = True, progress: bool = True) -> dict:
    """The trained networks of a run: `{name: (model, params, extra)}`.

    Trains (or resumes) whatever is unfinished when `train_missing`; otherwise a
    missing network is an error. `ensemble` params carry a leading member axis.
    """
    data = data if data is not None else data_lib.load_dataset(cfg.data)
    dirs = _net_dirs(workdir)
    wanted = {"mhui": cfg.train.num_steps}
    if cfg.baselines.ensemble_size:
        wanted["ensemble"] = cfg.train.num_steps
    if cfg.baselines.prior_net:
        wanted["prior_net"] = cfg.baselines.rkl_num_steps or cfg.train.num_steps
    if not train_missing:
        for name, steps in wanted.items():
            ckdir = dirs[name] / "checkpoints"
            latest = ckpt_lib.CheckpointManager(ckdir).latest_step() if ckdir.exists() else None
            if latest != steps:
                raise FileNotFoundError(
                    f"{dirs[name]}: network '{name}' is not trained to {steps} steps (latest checkpoint: "
                    f"{latest}); run `jaxlab mhui train --workdir {workdir}` first")
    nets, histories = {}, {}
    model, p, e, histories["mhui"] = T.train_multi_exit(cfg, data, dirs["mhui"], members=1, seed=cfg.seed,
                                                        progress=progress)
    nets["mhui"] = (model, _first(p), _first(e))
    if "ensemble" in wanted:
        model, p, e, histories["ensemble"] = T.train_multi_exit(
            cfg, data, dirs["ensemble"], members=cfg.baselines.ensemble_size, seed=cfg.seed + 1, progress=progress)
        nets["ensemble"] = (model, p, e)
    if "prior_net" in wanted:
        model, p, e, histories["prior_net"] = T.train_prior_net(cfg, data, dirs["prior_net"], seed=cfg.seed + 2,
                                                                progress=progress)
        nets["prior_net"] = (model, p, e)
    return nets, histories


def load(workdir) -> dict:
    """`{"config", "data", "nets"}` of a finished `jaxlab mhui train` run in `workdir`."""
    cfg = workdir_lib.load_config(workdir, configs.MhuiConfig)
    data = data_lib.load_dataset(cfg.data)
    nets, _ = load_nets(cfg, workdir, data, train_missing=False, progress=False)
    return {"config": cfg, "data": data, "nets": nets}


def _summary_update(workdir, cfg, section: str, results: dict) -> None:
    path = pathlib.Path(workdir) / "summary.json"
    old = workdir_lib.read_summary(workdir)["results"] if path.exists() else {}
    old[section] = results
    workdir_lib.write_summary(workdir, old, cfg, seed=cfg.seed)


def train(cfg, workdir) -> dict:
    """Trains all networks; reports every head's test accuracy."""
    workdir = pathlib.Path(workdir)
    data = data_lib.load_dataset(cfg.data)
    t0 = time.perf_counter()
    nets, _ = load_nets(cfg, workdir, data, train_missing=True)
    res = {"train_seconds": time.perf_counter() - t0}
    model, p, e = nets["mhui"]
    res["mhui_head_test_acc"] = [float(a) for a in T.head_accuracies(model, p, e, data["x_test"], data["y_test"])]
    if "ensemble" in nets:
        model, p, e = nets["ensemble"]
        accs = [T.head_accuracies(model, jax.tree.map(lambda a: a[m], p), jax.tree.map(lambda a: a[m], e),
                                  data["x_test"], data["y_test"])[-1] for m in range(cfg.baselines.ensemble_size)]
        res["ensemble_member_test_acc"] = [float(a) for a in accs]
        logits = _target_logits("ensemble", nets)(nets["ensemble"][1:], jnp.asarray(data["x_test"]))
        res["ensemble_test_acc"] = float(np.mean(np.argmax(np.asarray(logits), -1) == data["y_test"]))
    if "prior_net" in nets:
        logits = _target_logits("prior_net", nets)(nets["prior_net"][1:], jnp.asarray(data["x_test"]))
        res["prior_net_test_acc"] = float(np.mean(np.argmax(np.asarray(logits), -1) == data["y_test"]))
    _summary_update(workdir, cfg, "train", res)
    return res


# ----------------------------------------------------------------------------- attacks

def _target_logits(name: str, nets: dict):
    """`fn((params, extra), x) -> [B, K]` logits of the classifier that `name` attacks."""
    model = nets[name][0]
    if name == "mhui":
        return lambda pe, x: models.forward(model, pe[0], pe[1], x)[0][-1]
    if name == "ensemble":
        def ens(pe, x):
            z = jax.vmap(lambda p, e: models.forward(model, p, e, x)[0][-1])(pe[0], pe[1])
            return jax.nn.logsumexp(jax.nn.log_softmax(z, -1), axis=0) - jnp.log(z.shape[0])
        return ens
    if name == "prior_net":
        return lambda pe, x: models.forward(model, pe[0], pe[1], x)[0]
    raise ValueError(name)


def _adaptive_score(dcfg):
    """Differentiable MH-UI detector term for the adaptive attack: (pe, logits [H,B,K]) -> [B]."""
    def s(logits):
        alpha = detect.D.dirichlet_moment_match(
            jax.nn.softmax(detect.select_heads(logits, dcfg.heads) / dcfg.head_temperature, -1),
            combine=dcfg.combine, var_floor=dcfg.var_floor, min_precision=dcfg.min_precision)
        if dcfg.score in ("precision", "epkl"):
            return -jnp.log(jnp.sum(alpha, -1))
        return detect.D.dirichlet_scores(alpha)[dcfg.score]
    return s


def attack_sets(cfg) -> list[tuple[str, str, float]]:
    """(target, attack, eps) triples of a config; C&W has eps 0 (it minimises the L2 size)."""
    out = []
    targets = ["mhui"] + (["ensemble"] if cfg.baselines.ensemble_size else []) + \
        (["prior_net"] if cfg.baselines.prior_net else [])
    for t in targets:
        for a in cfg.attack.attacks:
            if a in LINF_ATTACKS:
                out += [(t, a, float(e)) for e in cfg.attack.eps_linf]
            elif a == "pgd_l2":
                out += [(t, a, float(e)) for e in cfg.attack.eps_l2]
            elif a == "cw_l2":
                out.append((t, a, 0.0))
            else:
                raise ValueError(f"config field 'attack.attacks': unknown attack {a!r}; expected "
                                 "fgsm, bim, pgd_linf, pgd_l2 or cw_l2")
    return out


def _key(target, attack_name, eps, weight=None):
    return f"{target}__{attack_name}__{eps:g}" + ("" if weight is None else f"__w{weight:g}")


def _batched(fn, x, y, key, batch_size):
    """Runs `fn(x, y, key)` over fixed-size batches (last batch padded, one compile)."""
    n = x.shape[0]
    bs = min(batch_size, n)
    pad = (-n) % bs
    xp = np.concatenate([x, x[:pad]]) if pad else x
    yp = np.concatenate([y, y[:pad]]) if pad else y
    outs = [np.asarray(fn(jnp.asarray(xp[i:i + bs]), jnp.asarray(yp[i:i + bs]), jax.random.fold_in(key, i)))
            for i in range(0, len(xp), bs)]
    return np.concatenate(outs)[:n]


def _make_attack_fn(name, acfg, logits_fn, loss_fn):
    """jitted `(pe, x, y, key, eps) -> x_adv` (eps traced: one compile per attack)."""
    def run(pe, x, y, key, eps):
        lf = functools.partial(loss_fn, pe)
        step = acfg.rel_step_size * eps / max(acfg.num_steps, 1)
        if name == "fgsm":
            return A.fgsm(lf, x, y, eps)
        if name == "bim":
            return A.bim(lf, x, y, eps=eps, step_size=step, num_steps=acfg.num_steps)
        if name in ("pgd_linf", "pgd_l2"):
            return A.pgd(lf, x, y, key, eps=eps, step_size=step, num_steps=acfg.num_steps, norm=name[4:])
        if name == "cw_l2":
            return A.cw_l2(functools.partial(logits_fn, pe), x, y, initial_c=acfg.cw_initial_c,
                           binary_steps=acfg.cw_binary_steps, num_steps=acfg.cw_steps,
                           learning_rate=acfg.cw_lr, kappa=acfg.cw_kappa)
        raise ValueError(name)
    return jax.jit(run)


def attack(cfg, workdir) -> dict:
    """Crafts every (target, attack, eps) adversarial set and the adaptive sets."""
    workdir = pathlib.Path(workdir)
    data = data_lib.load_dataset(cfg.data)
    nets, _ = load_nets(cfg, workdir, data, train_missing=False, progress=False)
    x, y = data["x_test"], data["y_test"]
    acfg = cfg.attack
    key = jax.random.key(acfg.seed)
    out, res, fns = {}, {}, {}
    logit_fns = {}
    for target, name, eps in attack_sets(cfg):
        if target not in logit_fns:
            logit_fns[target] = _target_logits(target, nets)
            logit_fns[target + "_jit"] = jax.jit(logit_fns[target])
        logits_fn = logit_fns[target]
        pe = nets[target][1:]
        if (target, name) not in fns:
            ce = lambda pe_, xx, yy, lf=logits_fn: optax.softmax_cross_entropy_with_integer_labels(lf(pe_, xx), yy)
            fns[(target, name)] = _make_attack_fn(name, acfg, logits_fn, ce)
        fn = fns[(target, name)]
        t0 = time.perf_counter()
        adv = _batched(lambda xb, yb, k: fn(pe, xb, yb, k, jnp.float32(eps)), x, y,
                       jax.random.fold_in(key, len(out)), acfg.batch_size)
        k = _key(target, name, eps)
        out[k] = adv.astype(np.float32)
        pred = np.asarray(logit_fns[target + "_jit"](pe, jnp.asarray(adv))).argmax(-1)
        res[k] = {"acc_under_attack": float(np.mean(pred == y)), "seconds": time.perf_counter() - t0,
                  "mean_linf": float(np.abs(adv - x).reshape(len(x), -1).max(1).mean()),
                  "mean_l2": float(np.linalg.norm((adv - x).reshape(len(x), -1), axis=1).mean())}
        print(f"attack {k}: accuracy under attack {res[k]['acc_under_attack']:.3f} ({res[k]['seconds']:.1f}s)")
    # adaptive attack against MH-UI: PGD-Linf on CE(final head) - w * s(x)
    model, p, e = nets["mhui"]
    s = _adaptive_score(cfg.detect)

    def adaptive(pe, xb, yb, k, eps, w):
        def loss(xx, yy):
            logits = models.forward(model, pe[0], pe[1], xx)[0]
            return optax.softmax_cross_entropy_with_integer_labels(logits[-1], yy) - w * s(logits)
        return A.pgd(loss, xb, yb, k, eps=eps, step_size=acfg.rel_step_size * eps / max(acfg.num_steps, 1),
                     num_steps=acfg.num_steps, norm="linf")

    adaptive = jax.jit(adaptive)
    final = jax.jit(lambda pe, xx: models.forward(model, pe[0], pe[1], xx)[0][-1])
    for eps, w in itertools.product(acfg.adaptive_eps, acfg.adaptive_weights):
        t0 = time.perf_counter()
        adv = _batched(lambda xb, yb, k: adaptive((p, e), xb, yb, k, jnp.float32(eps), jnp.float32(w)), x, y,
                       jax.random.fold_in(key, 10_000 + len(out)), acfg.batch_size)
        k = _key("mhui", "adaptive", float(eps), float(w))
        out[k] = adv.astype(np.float32)
        pred = np.asarray(final((p, e), jnp.asarray(adv))).argmax(-1)
        res[k] = {"acc_under_attack": float(np.mean(pred == y)), "seconds": time.perf_counter() - t0}
        print(f"attack {k}: accuracy under attack {res[k]['acc_under_attack']:.3f}")
    np.savez_compressed(workdir / "attacks.npz", **out)
    _summary_update(workdir, cfg, "attack", res)
    return res


attack.read_only = True  # takes the run's own config.json unless --config is given


# ----------------------------------------------------------------------------- evaluation

def _make_outputs(cfg, nets):
    """`outputs(x [N, ...], key) -> {name: array}`: every network output the detectors need."""
    model, p, e = nets["mhui"]
    fns = {"mhui_logits": (jax.jit(lambda pe, xx, k: models.forward(model, pe[0], pe[1], xx)[0]), (p, e))}
    if cfg.detect.mc_samples >= 2 and cfg.model.dropout_rate > 0:
        fns["mc_logits"] = (jax.jit(lambda pe, xx, k: models.mc_forward(
            model, pe[0], pe[1], xx, k, cfg.detect.mc_samples)[:, -1]), (p, e))
    if "ensemble" in nets:
        member = _member_logits(nets)
        fns["ens_logits"] = (jax.jit(lambda pe, xx, k: member(pe, xx)), nets["ensemble"][1:])
    if "prior_net" in nets:
        pn = _target_logits("prior_net", nets)
        fns["pn_logits"] = (jax.jit(lambda pe, xx, k: pn(pe, xx)), nets["prior_net"][1:])

    def outputs(x, key):
        xj = jnp.asarray(x)
        return {name: np.asarray(fn(pe, xj, key)) for name, (fn, pe) in fns.items()}

    return outputs


def _member_logits(nets):
    model = nets["ensemble"][0]
    return lambda pe, x: jax.vmap(lambda p, e: models.forward(model, p, e, x)[0][-1])(pe[0], pe[1])


def _method_scores(cfg, outs: dict, target: str) -> dict[str, dict[str, np.ndarray]]:
    """`{method: {score: [N]}}` of the detectors that share the classifier `target`."""
    d = cfg.detect
    res = {}
    if target == "mhui":
        res["MH-UI"] = detect.mhui_scores(jnp.asarray(outs["mhui_logits"]), d)
        res["MSP"] = detect.msp_scores(jnp.asarray(outs["mhui_logits"][-1]))
        if "mc_logits" in outs:
            res["MC dropout"], res["MCD + Dirichlet"] = detect.sample_method_scores(jnp.asarray(outs["mc_logits"]), d)
    elif target == "ensemble" and "ens_logits" in outs:
        res["Ensemble"], res["Ensemble + Dirichlet"] = detect.sample_method_scores(jnp.asarray(outs["ens_logits"]), d)
    elif target == "prior_net" and "pn_logits" in outs:
        res["RKL Prior Net"] = detect.prior_net_scores(jnp.asarray(outs["pn_logits"]))
    return {m: {k: np.asarray(v) for k, v in s.items()} for m, s in res.items()}


PRIMARY = {"MSP": "max_prob", "MC dropout": "mutual_info", "Ensemble": "mutual_info"}


def _primary(method: str, cfg) -> str:
    return PRIMARY.get(method, cfg.detect.score)


def _target_pred(outs, target):
    if target == "mhui":
        return outs["mhui_logits"][-1].argmax(-1)
    if target == "ensemble":
        z = outs["ens_logits"]
        return np.asarray(jax.nn.logsumexp(jax.nn.log_softmax(jnp.asarray(z), -1), 0)).argmax(-1)
    return outs["pn_logits"].argmax(-1)


def _head_subsets(num_heads: int) -> list[tuple[int, ...]]:
    subs = []
    for r in range(2, num_heads + 1):
        subs += list(itertools.combinations(range(num_heads), r))
    return subs


def evaluate(cfg, workdir) -> dict:
    """Detection tables (attacks x eps x methods), ablations and figures."""
    workdir = pathlib.Path(workdir)
    path = workdir / "attacks.npz"
    if not path.exists():
        attack(cfg, workdir)
    data = data_lib.load_dataset(cfg.data)
    nets, _ = load_nets(cfg, workdir, data, train_missing=False, progress=False)
    advs = dict(np.load(path))
    x, y = data["x_test"], data["y_test"]
    key = jax.random.key(cfg.seed + 7)
    outputs = _make_outputs(cfg, nets)
    clean = outputs(x, key)
    clean_scores = {t: _method_scores(cfg, clean, t) for t in ("mhui", "ensemble", "prior_net")}
    rows, ablation_rows, adaptive_rows = [], [], []
    num_heads = clean["mhui_logits"].shape[0]
    subsets = _head_subsets(num_heads) if num_heads <= 6 else [tuple(range(num_heads))]
    hist = {}
    for k, adv in advs.items():
        parts = k.split("__")
        target, name, eps = parts[0], parts[1], float(parts[2])
        weight = float(parts[3][1:]) if len(parts) > 3 else None
        outs = outputs(adv, key)
        correct = _target_pred(clean, target) == y
        success = (_target_pred(outs, target) != y)[correct]
        adv_scores = _method_scores(cfg, outs, target)
        base = {"target": target, "attack": name, "eps": eps, "n": int(correct.sum()),
                "success_rate": float(success.mean())}
        for method, scores in adv_scores.items():
            for score, s_adv in scores.items():
                s_clean = clean_scores[target][method][score][correct]
                met = M.detection_metrics(s_clean, s_adv[correct], success)
                row = {**base, "method": method, "score": score, **met}
                if weight is not None:
                    adaptive_rows.append({**row, "weight": weight})
                else:
                    rows.append(row)
        if target == "mhui" and weight is None:
            hist[k] = (clean_scores["mhui"]["MH-UI"]["precision"][correct], adv_scores["MH-UI"]["precision"][correct])
            # ablation: head subsets x estimator, MH-UI's configured score
            for heads in subsets:
                for combine in ("pooled", "minka_log"):
                    dc = _replace(cfg.detect, heads=heads, combine=combine)
                    sc = np.asarray(detect.mhui_scores(jnp.asarray(clean["mhui_logits"]), dc)[cfg.detect.score])
                    sa = np.asarray(detect.mhui_scores(jnp.asarray(outs["mhui_logits"]), dc)[cfg.detect.score])
                    met = M.detection_metrics(sc[correct], sa[correct], success)
                    ablation_rows.append({**base, "heads": list(heads), "combine": combine, **met})
    results = {"rows": rows, "ablation_heads": ablation_rows, "adaptive": adaptive_rows,
               "clean_head_acc": [float(a) for a in (clean["mhui_logits"].argmax(-1) == y[None]).mean(-1)],
               "clean_precision_quantiles": np.quantile(
                   -clean_scores["mhui"]["MH-UI"]["precision"], [0.1, 0.5, 0.9]).tolist()}
    tables = format_tables(cfg, results)
    (workdir / "tables.md").write_text(tables)
    print(tables)
    _figures(cfg, workdir, results, hist)
    _summary_update(workdir, cfg, "evaluate", results)
    return {"tables": str(workdir / "tables.md")}


evaluate.read_only = True


def _replace(dc, **kw):
    import dataclasses
    return dataclasses.replace(dc, **kw)


# ----------------------------------------------------------------------------- reporting

def _fmt(v):
    return "-" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.3f}"


def _attack_label(r):
    return f"{r['attack']} {r['eps']:g}" if r["attack"] != "cw_l2" else "cw_l2"


def format_tables(cfg, results) -> str:
    """Markdown: main table (primary scores), score ablation, head/estimator ablation, adaptive."""
    rows = results["rows"]
    methods = ["MH-UI", "MSP", "MC dropout", "MCD + Dirichlet", "Ensemble", "Ensemble + Dirichlet", "RKL Prior Net"]
    methods = [m for m in methods if any(r["method"] == m for r in rows)]
    attacks = sorted({(r["attack"], r["eps"]) for r in rows}, key=lambda a: (cfg.attack.attacks.index(a[0]), a[1]))
    lines = ["Clean test accuracy per head (MH-UI network): "
             + ", ".join(f"{a:.3f}" for a in results["clean_head_acc"]), ""]
    lines += [f"### Detection AUROC, all attacked / successful only (MH-UI and Dirichlet baselines: "
              f"score `{cfg.detect.score}`; MSP: max prob; MC dropout, Ensemble: mutual information)", ""]
    head = "| attack | eps | " + " | ".join(f"{m} (succ. rate)" if False else m for m in methods) + " |"
    lines += [head, "|" + "---|" * (len(methods) + 2)]
    for a, e in attacks:
        cells = []
        for m in methods:
            r = [r for r in rows if r["attack"] == a and r["eps"] == e and r["method"] == m
                 and r["score"] == _primary(m, cfg)]
            cells.append(f"{_fmt(r[0]['auroc'])} / {_fmt(r[0]['auroc_success'])} ({r[0]['success_rate']:.2f})"
                         if r else "-")
        lines.append(f"| {a} | {e:g} | " + " | ".join(cells) + " |")
    lines += ["", "Cells: AUROC over all attacked inputs / over successful attacks only "
              "(fraction of successful attacks against that method's classifier).", ""]
    lines += ["### AUPR (adversarial = positive), all / successful only", ""]
    lines += [head, "|" + "---|" * (len(methods) + 2)]
    for a, e in attacks:
        cells = []
        for m in methods:
            r = [r for r in rows if r["attack"] == a and r["eps"] == e and r["method"] == m
                 and r["score"] == _primary(m, cfg)]
            cells.append(f"{_fmt(r[0]['aupr'])} / {_fmt(r[0]['aupr_success'])}" if r else "-")
        lines.append(f"| {a} | {e:g} | " + " | ".join(cells) + " |")
    # score ablation (MH-UI)
    from jaxlab.mhui.dirichlet import SCORES
    lines += ["", "### MH-UI: choice of score (AUROC, all attacked inputs)", "",
              "| attack | eps | " + " | ".join(SCORES) + " |", "|" + "---|" * (len(SCORES) + 2)]
    for a, e in attacks:
        r = {r["score"]: r for r in rows if r["attack"] == a and r["eps"] == e and r["method"] == "MH-UI"}
        if r:
            lines.append(f"| {a} | {e:g} | " + " | ".join(_fmt(r[s]["auroc"]) if s in r else "-" for s in SCORES) + " |")
    # heads ablation
    abl = results["ablation_heads"]
    if abl:
        subsets = []
        for r in abl:
            if (tuple(r["heads"]), r["combine"]) not in subsets:
                subsets.append((tuple(r["heads"]), r["combine"]))
        lines += ["", f"### MH-UI: heads used and estimator (score `{cfg.detect.score}`, AUROC all attacked)", "",
                  "| heads | estimator | " + " | ".join(f"{a} {e:g}" if a != "cw_l2" else a for a, e in attacks) + " |",
                  "|" + "---|" * (len(attacks) + 2)]
        for hs, comb in subsets:
            cells = []
            for a, e in attacks:
                r = [r for r in abl if tuple(r["heads"]) == hs and r["combine"] == comb and r["attack"] == a
                     and r["eps"] == e]
                cells.append(_fmt(r[0]["auroc"]) if r else "-")
            lines.append(f"| {','.join(map(str, hs))} | {comb} | " + " | ".join(cells) + " |")
    # adaptive
    ad = results["adaptive"]
    if ad:
        lines += ["", f"### Adaptive PGD-Linf against MH-UI: loss CE(final head) - w * s(x), s = MH-UI "
                  f"`{cfg.detect.score}` detector term (AUROC all / successful only)", "",
                  "| eps | w | success rate | MH-UI | MSP | MC dropout | MCD + Dirichlet |", "|---|---|---|---|---|---|---|"]
        for eps, w in sorted({(r["eps"], r["weight"]) for r in ad}):
            cells = []
            for m in ["MH-UI", "MSP", "MC dropout", "MCD + Dirichlet"]:
                r = [r for r in ad if r["eps"] == eps and r["weight"] == w and r["method"] == m
                     and r["score"] == _primary(m, cfg)]
                cells.append(f"{_fmt(r[0]['auroc'])} / {_fmt(r[0]['auroc_success'])}" if r else "-")
            sr = [r for r in ad if r["eps"] == eps and r["weight"] == w][0]["success_rate"]
            lines.append(f"| {eps:g} | {w:g} | {sr:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _figures(cfg, workdir, results, hist) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if hist:
        keys = list(hist)[:6]
        fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 2.8), squeeze=False)
        for ax, k in zip(axes[0], keys):
            c, a = hist[k]
            lc, la = np.log10(-c), np.log10(-a)
            bins = np.linspace(min(lc.min(), la.min()), max(lc.max(), la.max()), 30)
            ax.hist(lc, bins, alpha=0.6, label="clean")
            ax.hist(la, bins, alpha=0.6, label="adversarial")
            ax.set_title(k.replace("mhui__", ""), fontsize=8)
            ax.set_xlabel("log10 alpha_0 (MH-UI)")
        axes[0][0].legend(fontsize=7)
        workdir_lib.save_figure(fig, workdir, "precision_hist")
    rows = [r for r in results["rows"] if r["attack"] == "pgd_linf"]
    if rows:
        fig, ax = plt.subplots(figsize=(4.5, 3.2))
        for m in sorted({r["method"] for r in rows}):
            rr = sorted([r for r in rows if r["method"] == m and r["score"] == _primary(m, cfg)], key=lambda r: r["eps"])
            ax.plot([r["eps"] for r in rr], [r["auroc"] for r in rr], marker="o", label=m)
        ax.set_xlabel("eps (L-inf)")
        ax.set_ylabel("AUROC (all attacked)")
        ax.set_title("PGD-Linf detection")
        ax.legend(fontsize=7)
        workdir_lib.save_figure(fig, workdir, "auroc_pgd_linf")


ACTIONS = {"train": train, "attack": attack, "evaluate": evaluate}
