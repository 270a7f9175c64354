"""The actions of ScaleNet on the smoke config: the whole pipeline, fresh workdirs,
resumption after a kill, reruns, the command line's stdout and help."""

import dataclasses
import json
import shutil

import jax
import numpy as np
import pytest

from jaxlab import cli
from jaxlab.core import config as config_lib
from jaxlab.core import train as train_lib
from jaxlab.core import workdir as workdir_lib
from jaxlab.scalenet import configs, report, run, search, supernet
from jaxlab.scalenet import retrain as retrain_lib
from jaxlab.scalenet.space import Space

TIME_KEYS = {"train_time_s", "wall_time_s", "search_seconds"}


def _results(workdir):
    return json.loads((workdir / "summary.json").read_text())["results"]


def _untimed(x):
    """`x` without timing fields (which differ between two runs of the same work)."""
    if isinstance(x, dict):
        return {k: _untimed(v) for k, v in x.items() if k not in TIME_KEYS}
    if isinstance(x, list):
        return [_untimed(v) for v in x]
    return x


def _assert_trees_equal(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _drop_newest_checkpoint(workdir):
    """What a SIGKILL right after the previous checkpoint leaves: the newest step and the
    segment rows gone (a killed `fit` writes no segment row)."""
    steps = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
    shutil.rmtree(workdir / "checkpoints" / str(steps[-1]))
    (workdir / "segments.jsonl").unlink()
    return steps[-2]


def _pipeline(wd):
    """The smoke pipeline called from Python on a fresh workdir (no manual prepare)."""
    cfg = configs.get_config("smoke")
    out = {}
    for name in ("train-supernet", "search", "retrain"):
        out[name] = run.ACTIONS[name](cfg, wd)
        assert (wd / "config.json").exists(), name
        loaded = run.load(wd)
        assert loaded.config == cfg and loaded.step == cfg.supernet.loop.num_steps, name
    out["evaluate"] = run.evaluate(None, wd)
    return cfg, wd, out


def test_smoke_pipeline(tmp_path, capsys):
    """One test (the pipeline is built once, whatever the xdist split): results, reruns,
    resumption after a kill, fresh workdirs."""
    pipeline = _pipeline(tmp_path / "run")
    _check_results(pipeline)
    _check_rerun_keeps_the_summary(pipeline, capsys)
    _check_supernet_resumes_after_a_kill(pipeline, tmp_path / "resumed")
    _check_retrain_resumes_on_a_fresh_workdir(pipeline, tmp_path / "rt")
    _check_search_on_a_fresh_workdir(pipeline, tmp_path / "s")
    _check_baseline_searches(pipeline, tmp_path)


def _check_results(pipeline):
    cfg, wd, out = pipeline
    sn = out["train-supernet"]
    assert sn["steps"] == cfg.supernet.loop.num_steps and np.isfinite(sn["final_loss"])
    assert set(sn["inherited_accuracy"]) == {"stage0", "stage1", "stage2"}
    assert sn["train_time_s"] > 0 and sn["segments"] == 1
    fam = out["search"]
    assert [r["stage"] for r in fam["family"]] == list(range(cfg.search.extrapolate_to + 1))
    assert [r["extrapolated"] for r in fam["family"]] == [False, False, False, True]
    assert fam["mode"] == "joint" and fam["arch_evaluations"] > fam["ga_evaluations"] > 0
    assert (wd / "search" / "mcea.json").exists() and (wd / "family.json").exists()
    rows = out["retrain"]["rows"]
    assert [(r["family"], r["stage"]) for r in rows] == [("searched", 3), ("compound", 3)]
    for r in rows:
        assert r["steps"] == cfg.retrain.loop.num_steps and 0 <= r["test_accuracy"] <= 1
        assert (wd / "retrain" / f"{r['family']}_s{r['stage']}" / "checkpoints").is_dir()
        # accuracies are counts over the test split
        assert r["test_accuracy"] * cfg.data.num_test == pytest.approx(round(r["test_accuracy"] * cfg.data.num_test))
    ev = out["evaluate"]
    assert ev["inherited_accuracy"] == sn["inherited_accuracy"]  # same checkpoint, same draws
    assert ev["family"] == fam["family"]
    assert [r["test_accuracy"] for r in ev["retrain"]] == [r["test_accuracy"] for r in rows]
    summary = _results(wd)
    assert set(summary) == {"train-supernet", "search", "retrain"}
    for name in ("supernet_loss", "family_accuracy"):
        assert (wd / "figures" / f"{name}.png").exists()
    loaded = run.load(wd)
    assert loaded.extras["family"]["base"] == fam["base"] and len(loaded.extras["retrain"]) == 2


def _check_rerun_keeps_the_summary(pipeline, capsys):
    cfg, wd, _ = pipeline
    before = _results(wd)
    run.train_supernet(cfg, wd)
    run.retrain(cfg, wd)
    capsys.readouterr()
    assert cli.main(["scalenet", "search", "--config", "smoke", "--workdir", str(wd)]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["base"] == before["search"]["base"]  # stdout holds only the result
    assert "scalenet search:" in captured.err
    assert _results(wd) == before


def _check_supernet_resumes_after_a_kill(pipeline, wd2):
    cfg, wd, out = pipeline
    shutil.copytree(wd, wd2, ignore=lambda d, names: [n for n in names if d == str(wd) and (
        n.endswith(".json") or n in ("search", "retrain", "figures"))])
    assert _drop_newest_checkpoint(wd2) == cfg.supernet.loop.checkpoint_every
    resumed = run.train_supernet(cfg, wd2)
    assert _untimed(resumed) == _untimed(out["train-supernet"])
    segments = train_lib.run_times(wd2)["segments"]
    assert [(s["start_step"], s["end_step"]) for s in segments] == [(3, 6)]
    assert resumed["train_time_s"] > segments[0]["train_time_s"]  # the killed segment's time is kept
    space = Space(cfg.space)
    _assert_trees_equal(supernet.load(cfg, space, wd2)[1].params, supernet.load(cfg, space, wd)[1].params)


def _check_retrain_resumes_on_a_fresh_workdir(pipeline, wd3):
    cfg, wd, out = pipeline
    cfg3 = config_lib.override(cfg, [f"retrain.search_dir={wd}", "retrain.stages=3", "retrain.compound=false"])
    member = {"family": "searched", "stage": 3}
    shutil.copytree(retrain_lib.member_dir(wd, member), wd3 / "retrain" / "searched_s3")
    _drop_newest_checkpoint(wd3 / "retrain" / "searched_s3")
    res = run.retrain(cfg3, wd3)
    assert (wd3 / "config.json").exists()
    loaded = run.load(wd3)
    assert loaded.state is None and loaded.extras["retrain"] == res["rows"]
    assert _untimed(res["rows"]) == _untimed(out["retrain"]["rows"][:1])
    space = Space(cfg.space)
    fam = json.loads((wd / "family.json").read_text())
    m = retrain_lib.members(cfg3, space, fam)[0]
    deep = space.with_depth(m["d"])  # the extrapolated S3 (d > max_mult) keeps all its layers
    arch = deep.scale(np.asarray(fam["base"]), m["d"], m["w"])
    from jaxlab.scalenet.models import subnet_from_arch

    model = subnet_from_arch(deep, arch)
    fresh = retrain_lib.init_state(cfg, model, m["r"])
    a, _ = train_lib.load_state(retrain_lib.member_dir(wd3, m), fresh)
    b, _ = train_lib.load_state(retrain_lib.member_dir(wd, m), fresh)
    _assert_trees_equal(a.state_dict(), b.state_dict())


def _check_search_on_a_fresh_workdir(pipeline, wd4):
    cfg, wd, out = pipeline
    cfg2 = config_lib.override(cfg, [f"search.supernet_dir={wd}"])
    res = run.search(cfg2, wd4)
    assert (wd4 / "config.json").exists()
    assert run.load(wd4).step == cfg.supernet.loop.num_steps  # the supernet of supernet_dir
    assert _untimed(res) == _untimed(out["search"])


def _check_baseline_searches(pipeline, tmp):
    """The random-search and one-shot-per-budget baselines on the smoke supernet: the
    random one spends the GA's number of genomes; per budget writes a base per member
    that `retrain` reads."""
    cfg, wd, out = pipeline
    rnd = run.search(config_lib.override(cfg, [f"search.supernet_dir={wd}", "search.proposal=random"]), tmp / "rnd")
    assert rnd["ga_evaluations"] == out["search"]["ga_evaluations"]
    pb_cfg = config_lib.override(cfg, [f"search.supernet_dir={wd}", "search.mode=per_budget"])
    pb = run.search(pb_cfg, tmp / "pb")
    fam = json.loads((tmp / "pb" / "family.json").read_text())
    assert [m["stage"] for m in fam["members"]] == [0, 1, 2] and pb["arch_evaluations"] > 0
    space = Space(cfg.space)
    for m, row in zip(fam["members"], fam["family"]):
        assert row["macs"] == search.scaled_macs(space, np.array(m["base"]), m["d"], m["w"], m["r"])
    assert _untimed(run.search(pb_cfg, tmp / "pb")) == _untimed(pb)  # a rerun evaluates nothing new
    members = retrain_lib.members(config_lib.override(cfg, ["retrain.stages=2"]), space, fam)
    assert members[0]["base"] == fam["members"][2]["base"]


def test_workdir_without_results_is_a_clear_error(tmp_path):
    cfg = configs.get_config("smoke")
    workdir_lib.prepare(tmp_path, cfg)
    with pytest.raises(workdir_lib.WorkdirError, match="no supernet"):
        run.load(tmp_path)
    with pytest.raises(workdir_lib.WorkdirError, match="family.json"):
        run.retrain(cfg, tmp_path)


def test_configs_and_actions():
    assert set(run.ACTIONS) == {"train-supernet", "search", "retrain", "rank", "evaluate"}
    assert run.ACTIONS["evaluate"].read_only and not run.ACTIONS["search"].read_only
    for v in ("smoke", "default", "paper"):
        cfg = config_lib.validate(configs.get_config(v))
        assert Space(cfg.space).num_layers > 0
    paper = Space(configs.get_config("paper").space)
    # spec 2.2: ceil(1.64 n_max) layers per stage (4 -> 7, 1 -> 2)
    assert list(paper.n_super) == [2, 7, 7, 7, 7, 7, 2]
    from jaxlab.scalenet.sampler import stage_probabilities

    np.testing.assert_allclose(stage_probabilities(paper), np.array([1, 4, 5, 7]) / 17)


def test_config_fields_are_typed_and_checked():
    cfg = configs.get_config("smoke")
    cfg.seed = 3  # configs are mutable, like every method's
    assert config_lib.override(cfg, ["retrain.stages=0,2"]).retrain.stages == (0, 2)
    assert config_lib.override(cfg, ["supernet.loop.num_steps=9"]).supernet.loop.num_steps == 9
    bad = [["search.nope=1"], ["supernet.sampler=bogus"], ["search.mode=both"], ["space.coupling=cyclic"],
           ["supernet.loop.num_devices=2"], ["retrain.stages=0,0"], ["retrain.stages=7"],
           ["search.eval_batch=100000"], ["data.num_classes=3"], ["search.pop_size=0"]]
    for override in bad:
        with pytest.raises(config_lib.ConfigError):
            config_lib.override(cfg, override)
    with pytest.raises(config_lib.ConfigError, match="unknown config variant"):
        configs.get_config("huge")
    # a config.json round trip gives back the typed (nested tuple) fields
    back = config_lib.from_dict(configs.ScaleNetConfig, config_lib.to_dict(cfg))
    assert back == cfg and isinstance(back.space.stages[0], tuple)
    with pytest.raises(config_lib.ConfigError, match="space.kernels"):
        config_lib.validate(dataclasses.replace(cfg, space=dataclasses.replace(cfg.space, kernels=(3, 4))))


def test_members_of_a_family():
    cfg = config_lib.override(configs.get_config("smoke"), ["retrain.stages=0,2"])
    space = Space(cfg.space)
    fam = {"base": [1, 2, 1], "scaling": {"1": [1.2, 1.2, 8.0], "2": [1.4, 1.5, 8.0]},
           "extrapolated": {"3": [1.6, 1.7, 9.0]}}
    m = retrain_lib.members(cfg, space, fam)
    assert [(x["family"], x["stage"]) for x in m] == [("searched", 0), ("searched", 2), ("compound", 2)]
    assert (m[0]["d"], m[0]["w"], m[0]["r"]) == (1.0, 1.0, 8) and (m[1]["d"], m[1]["w"]) == (1.4, 1.5)
    # the compound member follows d = alpha^phi, w = beta^phi for one phi
    phi = np.log(m[2]["d"]) / np.log(cfg.retrain.compound_alpha)
    assert m[2]["w"] == pytest.approx(cfg.retrain.compound_beta ** phi)
    with pytest.raises(config_lib.ConfigError, match="retrain.stages"):
        retrain_lib.members(config_lib.override(cfg, ["retrain.stages=3,4", "retrain.search_dir=x"]), space, fam)


def test_family_figure_ticks_do_not_overlap(tmp_path):
    # the README's retrained family (MMACs 0.125 .. 1.97)
    macs = {("searched", 0): 0.125, ("searched", 1): 0.286, ("compound", 1): 0.268, ("searched", 2): 0.406,
            ("compound", 2): 0.494, ("searched", 3): 0.865, ("compound", 3): 0.881, ("searched", 4): 1.386,
            ("compound", 4): 1.967}
    rows = [{"family": f, "stage": s, "macs": v * 1e6, "test_accuracy": 0.6 + 0.03 * s} for (f, s), v in macs.items()]
    fig, ax = report.plotting.subplots(figsize=(5, 3.5))
    report.plot_family(ax, rows, annotate=True)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    labels = [t for t in ax.get_xticklabels(which="both") if t.get_visible() and t.get_text()]
    assert len(labels) >= 3
    boxes = [t.get_window_extent(renderer) for t in labels]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert not a.overlaps(b)
    assert fig.get_layout_engine() is not None
    assert report.plot_family_accuracy(tmp_path, rows).exists()


def test_rank_statistics_hand_values():
    from jaxlab.scalenet.ranking import rank_statistics

    # pairs of (1, 2, 3, 4) against (1, 3, 2, 4): 5 concordant, 1 discordant -> tau = 4 / 6
    st = rank_statistics([1, 2, 3, 4], [1, 3, 2, 4], [1, 3, 2, 4], bootstrap=200)
    assert st["tau_inherited"] == pytest.approx(2 / 3) and st["tau_macs"] == pytest.approx(1.0)
    assert st["tau_difference"] == pytest.approx(-1 / 3)
    lo, hi = st["tau_macs_ci"]
    assert lo == hi == pytest.approx(1.0)  # every resample of a perfect ranking is perfect (or has no pairs)
    assert st["tau_inherited_ci"][0] < 2 / 3 < st["tau_inherited_ci"][1] + 1e-9
    reverse = rank_statistics([4, 3, 2, 1], [1, 2, 3, 4], [1, 2, 3, 4], bootstrap=50)
    assert reverse["tau_inherited"] == pytest.approx(-1.0)
    with pytest.raises(ValueError, match=">= 3 architectures"):
        rank_statistics([1, 2], [1, 2], [1, 2])


def test_rank_action_scores_and_retrains_the_drawn_subnets(tmp_path):
    from jaxlab.scalenet import ranking
    from jaxlab.scalenet.data import Data
    from jaxlab.scalenet.models import extract_subnet

    cfg = configs.get_config("smoke")
    wd = tmp_path / "run"
    run.train_supernet(cfg, wd)
    res = run.rank(cfg, wd)
    study = json.loads((wd / "rank.json").read_text())
    assert res["num_archs"] == cfg.rank.num_archs == len(study["rows"])
    assert (wd / "figures" / "rank.png").exists() and "rank" in _results(wd)
    # inherited accuracy, recomputed with the extracted standalone nets (left + right logits)
    space = Space(cfg.space)
    loaded = run.load(wd)
    archs, res_r, _ = ranking.probe_archs(cfg, space)
    data = Data(cfg.data)
    for i, row in enumerate(study["rows"]):
        arch = {k: np.asarray(v[i]) for k, v in archs.items()}
        x, y = data.get("val", int(res_r[i]))
        x, y = x[: cfg.search.eval_batch], y[: cfg.search.eval_batch]
        logits = 0
        for side in ("left", "right"):
            model, variables = extract_subnet(space, loaded.state.params, arch, side)
            logits = logits + model.apply(variables, x, train=True, mutable=["batch_stats"])[0]
        assert row["inherited_accuracy"] == pytest.approx(float(np.mean(np.argmax(logits, -1) == y)))
        assert row["r"] == int(res_r[i]) and row["retrain_steps"] == cfg.retrain.loop.num_steps
        assert (wd / "rank" / f"arch{i:02d}" / "checkpoints").is_dir()
    # a rerun reads the finished retrainings back: the same study
    again = run.rank(cfg, wd)
    assert _untimed(again) == _untimed(res)


def test_members_above_per_budget_and_compound_at_matched_macs():
    cfg = config_lib.override(configs.get_config("default"), ["retrain.stages=0,1,2,3", "retrain.search_dir=x",
                                                              "retrain.compound_target=family"])
    space = Space(cfg.space)
    base = [1, 2, 2, 1, 2, 2]
    fam = {"base": base, "scaling": {"1": [1.04, 1.16, 13.0], "2": [1.36, 1.2, 15.0]}, "extrapolated": {},
           "searched_above": {"3": [1.4, 1.64, 17.0]}}
    m = retrain_lib.members(cfg, space, fam)
    assert [(x["family"], x["stage"]) for x in m] == [("searched", 0), ("searched", 1), ("searched", 2),
                                                      ("above", 3), ("compound", 1), ("compound", 2)]
    # compound members matched to the searched member's MACs, not to the 2^s ladder
    for s in (1, 2):
        searched = next(x for x in m if x["family"] == "searched" and x["stage"] == s)
        comp = next(x for x in m if x["family"] == "compound" and x["stage"] == s)
        f = [search.scaled_macs(space, np.array(base), x["d"], x["w"], x["r"]) for x in (searched, comp)]
        assert abs(f[1] / f[0] - 1) < 0.05, (s, f)
    # a one-shot-per-budget family: its own base per member
    pb = {"members": [{"stage": s, "base": [1, 1, s % 3, 1, 1, 0], "d": 1.0 + 0.1 * s, "w": 1.0, "r": 12}
                      for s in range(4)]}
    m = retrain_lib.members(cfg, space, pb)
    assert [x["family"] for x in m] == ["per_budget"] * 4 and m[2]["base"] == [1, 1, 2, 1, 1, 0]
    with pytest.raises(config_lib.ConfigError, match="retrain.stages"):
        retrain_lib.members(config_lib.override(cfg, ["retrain.stages=4"]), space, pb)


def test_protocol_report_pairs_seeds_and_matches_hand_values(tmp_path):
    """The protocol tables from run directories written by hand: GA - random paired by
    search seed, families paired by retraining seed against the joint searched member."""
    def fam(fitness, base):
        return {"fitness": fitness, "base": base, "ga_evaluations": 84, "arch_evaluations": 500,
                "search_seconds": 10.0, "searched_above_evaluations": 7}

    for s, (fj, fr) in enumerate([(0.50, 0.47), (0.52, 0.48), (0.49, 0.47)]):
        for name, f in (("decoupled", fj), ("random", fr)):
            (tmp_path / f"{name}_{s}").mkdir()
            (tmp_path / f"{name}_{s}" / "family.json").write_text(json.dumps(fam(f, [1, 2])))
    accs = {"searched": [0.70, 0.72, 0.74], "compound": [0.71, 0.75, 0.74]}
    for s in range(3):
        d = tmp_path / f"rt_joint_0_{s}"
        d.mkdir()
        rows = [{"family": f, "stage": 1, "macs": 2e5 if f == "searched" else 2.1e5, "test_accuracy": a[s]}
                for f, a in accs.items()]
        (d / "retrain.json").write_text(json.dumps(rows))
    md = report.protocol_report(tmp_path, tmp_path / "out")
    assert "| GA - random, paired over 3 seeds | 3.0 ± " in md  # (3 + 4 + 2) / 3 points
    # compound - searched per seed: +1, +3, 0 -> +1.3 points; t(0.975, 2) * sd / sqrt(3) = 3.8
    line = next(l for l in md.splitlines() if "| compound | S1 |" in l)
    assert "+1.3 ± 3.8" in line and "| 1.050 |" in line
    assert "| decoupled (GA), seed 0 | 507 | 84 |" in md
    assert (tmp_path / "out" / "figures" / "protocol_families.png").exists()
