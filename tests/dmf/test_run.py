"""The `jaxlab dmf` actions end to end on the smoke config (CLI entry point included):
files, strict JSON, divergence, resume after a kill, config checks and --help."""

import dataclasses
import json

import jax
import numpy as np
import pytest

from jaxlab import cli, dmf
from jaxlab.core import actions
from jaxlab.core import config as config_lib
from jaxlab.core.train import NonFiniteError
from jaxlab.dmf import configs, data, run, studies


def _strict_json(text):
    def refuse(name):
        raise ValueError(f"non-strict JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """The whole smoke pipeline through the CLI: spe, evaluate, sweep, escape, completion,
    stability, init_law."""
    root = tmp_path_factory.mktemp("dmf")
    for action in ("spe", "sweep", "escape", "completion", "stability", "init-law"):
        assert cli.main(["dmf", action, "--config", "smoke", "--workdir", str(root / action)]) == 0, action
    assert cli.main(["dmf", "evaluate", "--workdir", str(root / "spe")]) == 0
    return root


def test_cli_spe_and_evaluate(pipeline):
    wd = pipeline / "spe"
    res = _strict_json((wd / "summary.json").read_text())["results"]["spe"]
    # smoke: sigma* = (5, 2), init 1e-5: two separated stages, sigma_1 escapes first
    assert res["status"] == "ok" and res["num_stages"] == 2
    assert res["activations"][0] < res["activations"][1]
    for f in ["config.json", "metrics.jsonl", "trajectory.npz", "figures/staircase.png",
              "figures/staircase_evaluate.png"]:
        assert (wd / f).exists(), f
    ev = _strict_json((wd / "evaluation.json").read_text())
    assert ev["num_stages"] == 2 and ev["status"] == "ok" and ev["activations"] == res["activations"]
    loaded = dmf.load(wd)
    assert isinstance(loaded, actions.Loaded) and loaded.step == 800 and loaded.config.rank == 2
    traj = loaded.extras["trajectory"]
    assert traj.loss.shape == (160,) and len(loaded.state) == 2
    # the saved final factors multiply to (nearly) the target: an independent NumPy check
    w = loaded.state[1] @ loaded.state[0]
    target = loaded.extras["target"]
    assert np.linalg.norm(w - target) / np.linalg.norm(target) < 1e-3
    np.testing.assert_allclose(np.linalg.svd(target, compute_uv=False)[:2], [5.0, 2.0], rtol=1e-12)
    # lambda_min at the origin-like init of a depth-2 net is -sigma_1* (spectrum +-sigma_i*)
    np.testing.assert_allclose(res["hessian_min_eig_at_init"], -5.0, rtol=1e-3)
    # plateau levels: Eckart-Young 1/2 sum_{i>k} sigma_i*^2 of sigma* = (5, 2)
    np.testing.assert_allclose(res["plateau_levels"], [14.5, 2.0], rtol=1e-10)
    # escape from each strict saddle: the negative-curvature eigenvector, mapped to W, is the
    # next target pair; lambda_min there is -sigma*_{k+1}; the trajectory leaves the plateau
    # along that pair and along curvature close to lambda_min
    for dip, sig in zip(res["dips"], (5.0, 2.0)):
        np.testing.assert_allclose(dip["lambda_min"], -sig, rtol=0.02)
        assert dip["hessian_alignment"] > 0.999, dip
        assert dip["exit_alignment"] > 0.9 and dip["hessian_exit_alignment"] > 0.9, dip
        assert 0.8 < dip["exit_curvature_ratio"] <= 1.0 + 1e-6, dip
    # end point: the global minimum (W = M*), a second-order critical point; the largest
    # Hessian eigenvalue of balanced depth-2 factors there is 2 sigma_1* = 10
    end = res["end_point"]
    assert end["second_order_critical"] and end["loss"] < 1e-8 and end["grad_norm"] < 1e-4, end
    np.testing.assert_allclose(end["lambda_max"], 10.0, rtol=1e-3)


def test_sweep_escape_and_completion_actions(pipeline):
    sweep = _strict_json((pipeline / "sweep" / "summary.json").read_text())["results"]["sweep"]
    # smoke: rank 1 and 2 targets at depth 2; the small init separates both stages
    assert sweep["claim_success"]["depth2"] == {"R1": 1.0, "R2": 1.0}
    assert sweep["num_runs"] == 2 * 2 * 2 and sweep["devices"] == 8
    cells = _strict_json((pipeline / "sweep" / "cells.json").read_text())
    big = [c for c in cells if c["rank"] == 2 and c["init_scale"] == 0.1]
    assert big[0]["success_rate"] < 1.0  # a large init merges the stages
    assert (pipeline / "sweep" / "figures" / "phase_diagram.png").exists()
    rows = _strict_json((pipeline / "escape" / "escape.json").read_text())
    gd = [r for r in rows if r["optimizer"] == "gd"]
    assert [r["lr"] for r in gd] == pytest.approx([0.005, 0.01, 0.02])
    # GD follows the gradient flow: escape step x lr is the same at every lr (within 10%)
    for k in range(2):
        t = np.array([r["escape_steps_x_lr"][k] for r in gd])
        assert t.max() / t.min() < 1.1, t
    assert all(r["escape_steps"][0] < r["escape_steps"][1] for r in gd)
    res = _strict_json((pipeline / "completion" / "summary.json").read_text())["results"]["completion"]
    assert {r["method"] for r in res["rows"]} == {"DMF", "nuclear norm"}
    assert all(np.isfinite(r["test_error"]) for r in res["rows"])
    assert sorted(r["seed"] for r in res["rows"] if r["method"] == "DMF") == [0, 1]
    assert "| 80 | DMF | 2 |" in res["table"]
    assert res["curve_table"].splitlines()[0] == "| observed entries | nuclear norm | depth 2 |"
    assert "(stop " in res["curve_table"] and (pipeline / "completion" / "figures" / "completion_curve.png").exists()


def test_stability_and_init_law_actions(pipeline):
    units = _strict_json((pipeline / "stability" / "stability.json").read_text())
    # depth 2, sigma* = (5, 2): lambda_max along the run peaks at the minimum, 2 sigma_1* = 10,
    # so the measured limit 2 / lambda_max is 1 / sigma_1* = 0.2
    assert units[0]["limit"]["lr_limit"] == pytest.approx(0.2, rel=0.02)
    half, over = units
    assert half["fraction_of_limit"] == 0.5 and over["fraction_of_limit"] == 1.1
    assert all(r["status"] == "ok" and r["end_point"]["second_order_critical"] for r in half["runs"])
    # above the limit no run settles at a minimum: GD cannot stay at any global minimum there
    assert not any(r["finite"] and r["end_point"]["second_order_critical"] for r in over["runs"])
    law = _strict_json((pipeline / "init-law" / "init_law.json").read_text())
    d2 = next(u for u in law["units"] if u["depth"] == 2)
    # depth 2: the no-fit prediction from the initial factors within 10% of the measurement
    m = np.array(d2["escape_steps"], float)
    p = np.array(d2["predicted_steps"], float)
    assert np.all(np.abs(m / p - 1) < 0.1), (m, p)
    # depth 3: a smaller init escapes later; the fitted exponent is negative, near -1/3
    fit = next(f for f in law["fits"] if f["depth"] == 3 and f["mode"] == 1)
    assert -0.5 < fit["exponent"] < -0.2, fit


def test_every_json_file_of_the_smoke_pipeline_is_strict(pipeline):
    files = sorted(pipeline.rglob("*.json"))
    assert len(files) >= 15
    for path in files:
        _strict_json(path.read_text())
    for line in (pipeline / "spe" / "metrics.jsonl").read_text().splitlines():
        _strict_json(line)


def test_diverging_spe_stops_with_nonfinite_error(tmp_path, capsys):
    wd = tmp_path / "div"
    assert cli.main(["dmf", "spe", "--config", "smoke", "--workdir", str(wd), "--config.lr=10"]) == 1
    err = capsys.readouterr().err
    assert "stopped" in err and "non-finite loss" in err
    assert not (wd / "summary.json").exists()
    with pytest.raises(NonFiniteError) as e:
        run.spe(dataclasses.replace(configs.get_config("smoke"), lr=10.0, hessian_points=0), tmp_path / "py")
    assert e.value.metric == "loss" and e.value.step > 0


def test_diverging_lr_in_a_sweep_is_a_finding_with_strict_json(tmp_path):
    cfg = dataclasses.replace(configs.get_config("smoke"), ranks=(1,), sweep_lrs=(10.0,), seeds=1, sweep_steps=200)
    res = run.sweep(cfg, tmp_path / "sweep")
    assert res["claim_success"]["depth2"]["R1"] == 0.0
    cells = _strict_json((tmp_path / "sweep" / "cells.json").read_text())
    assert all(c["status_counts"] == {"diverged": 1} for c in cells)
    cfg = dataclasses.replace(cfg, completion_lr=1e4, completion_optimizer="gd", completion_steps=100)
    res = run.completion(cfg, tmp_path / "completion")
    dmf_rows = [r for r in res["rows"] if r["method"] == "DMF"]
    assert not dmf_rows[0]["finite_loss"]
    for path in (tmp_path / "completion").rglob("*.json"):
        _strict_json(path.read_text())


def _kill_last(wd, folder, pattern):
    """What a SIGKILL during the last unit leaves: every earlier unit, no outputs."""
    last = sorted((wd / folder).glob(pattern))[-1]
    last.unlink()
    for name in ("summary.json", "trajectory.npz", "metrics.jsonl", "cells.json"):
        (wd / name).unlink(missing_ok=True)


def test_killed_spe_resumes_to_the_same_result_and_reruns_are_stable(tmp_path):
    cfg = configs.get_config("smoke")
    wd = tmp_path / "spe"
    full = run.spe(cfg, wd)
    factors = run.load(wd).state
    # a rerun of the finished run leaves its results exactly as they were, times included
    assert run.spe(cfg, wd) == full
    assert _strict_json((wd / "summary.json").read_text())["results"]["spe"] == full
    _kill_last(wd, "spe_segments", "segment_*.npz")
    resumed = run.spe(cfg, wd)
    for a, b in zip(factors, run.load(wd).state):
        np.testing.assert_array_equal(a, b)
    assert {k: v for k, v in resumed.items() if k != "train_wall_time_s"} == \
        {k: v for k, v in full.items() if k != "train_wall_time_s"}
    assert len((wd / "metrics.jsonl").read_text().splitlines()) == 160  # rewritten, not appended


def test_killed_sweep_resumes_to_the_same_result(tmp_path):
    cfg = dataclasses.replace(configs.get_config("smoke"), sweep_steps=400)
    wd = tmp_path / "sweep"
    full = run.sweep(cfg, wd)
    cells = _strict_json((wd / "cells.json").read_text())
    assert run.sweep(cfg, wd) == full
    _kill_last(wd, "sweep_cells", "*.json")
    resumed = run.sweep(cfg, wd)
    strip = lambda cs: [{k: v for k, v in c.items() if k != "sweep_wall_time_s"} for c in cs]
    assert strip(_strict_json((wd / "cells.json").read_text())) == strip(cells)
    assert resumed["claim_success"] == full["claim_success"]


def test_config_checks(tmp_path, capsys):
    wd = str(tmp_path / "x")
    assert cli.main(["dmf", "spe", "--config", "smoke", "--workdir", wd, "--config.nope=1"]) == 2
    assert cli.main(["dmf", "spe", "--config", "smoke", "--workdir", wd, "--config.observation=sensin"]) == 2
    assert "observation" in capsys.readouterr().err
    assert cli.main(["dmf", "spe", "--config", "nope", "--workdir", wd]) == 2
    assert cli.main(["dmf", "sweep", "--config", "smoke", "--workdir", wd, "--config.sweep_lrs=1e-2,1e-2"]) == 2
    assert "sweep_lrs" in capsys.readouterr().err
    with pytest.raises(config_lib.ConfigError, match="lr"):
        config_lib.override(configs.get_config("smoke"), ["lr=-1"])
    for variant in ("smoke", "default", "paper"):
        config_lib.validate(configs.get_config(variant))
    assert not (tmp_path / "x" / "summary.json").exists()


def test_problem_streams_are_distinct():
    cfg = configs.get_config("smoke")
    streams = [v for k, v in vars(data).items() if k.endswith("_STREAM")]
    assert len(streams) == len(set(streams)) >= 5
    with jax.enable_x64(True):
        target, mask, meas = data.problem(dataclasses.replace(cfg, observation="completion", num_observations=20),
                                          jax.random.key(0))
        assert meas is None and float(mask.sum()) == 20 and target.shape == (8, 8)


def test_entries_readers(tmp_path):
    csv = tmp_path / "e.csv"
    csv.write_text("row,col,value\n0,1,2.5\n2,0,-1\n")
    r, c, v = data.load_entries(csv)
    m, mask = data.entries_to_matrix(r, c, v)
    assert m.shape == (3, 2) and m[0, 1] == 2.5 and mask.sum() == 2
    ml = tmp_path / "u.data"
    ml.write_text("1\t2\t5\t881250949\n3\t1\t3\t891717742\n")
    r, c, v = data.load_entries(ml)
    np.testing.assert_array_equal(r, [0, 2])
    np.testing.assert_array_equal(c, [1, 0])
    bad = tmp_path / "bad.csv"
    bad.write_text("0,1,2\n0,x,3\n")
    with pytest.raises(ValueError, match="bad.csv:2"):
        data.load_entries(bad)


def test_sweep_cells_with_rank_two_and_three_separate_and_large_init_merges():
    """R >= 2 cells of the phase diagram at depth 3 (the claim is about R > 1): from a small
    init every seed shows R separated stages at the L_k levels; from init 1e-1 none does."""
    cfg = dataclasses.replace(configs.get_config("smoke"), n=10, ranks=(2, 3), depths=(3,), sweep_lrs=(1e-2,),
                              sweep_init_scales=(1e-4, 1e-1), claim_init_scales=(1e-4,), seeds=3, sweep_steps=2500,
                              sweep_log_every=5, singular_values=())
    with jax.enable_x64(True):
        for rank in (2, 3):
            small, large = studies.phase_cell(cfg, 3, 1e-2, rank)
            assert small["success_rate"] == 1.0 and small["mean_stages"] == rank, small
            assert large["success_rate"] == 0.0, large


def test_completion_depth_beats_the_nuclear_norm(tmp_path):
    """Arora et al.'s finding at a CPU-test scale: 20x20 rank 2, 160 observed entries
    (about 2x the 76 degrees of freedom): depth-3 DMF from a small init recovers the
    matrix, nuclear-norm minimisation does not (errors measured on all entries)."""
    cfg = dataclasses.replace(configs.get_config("smoke"), completion_n=20, completion_rank=2,
                              completion_observations=(160,), completion_depths=(3,), completion_init_scales=(1e-3,),
                              completion_lr=1e-2, completion_steps=3000, completion_seeds=2)
    res = run.completion(cfg, tmp_path / "completion")
    nuclear = next(r for r in res["rows"] if r["method"] == "nuclear norm")
    deep = [r for r in res["rows"] if r["method"] == "DMF"]
    # the baseline is solved: feasible, and its nuclear norm certified optimal to a relative gap of 1e-6
    assert nuclear["train_loss"] < 1e-20 and nuclear["converged"] and nuclear["rel_gap"] <= 1e-6
    assert nuclear["dual_bound"] <= nuclear["nuclear_norm"]
    assert nuclear["test_error"] > 0.2
    assert all(r["test_error"] < 0.05 * nuclear["test_error"] for r in deep), (deep, nuclear)
    assert all(r["effective_rank"] < nuclear["effective_rank"] for r in deep)


def test_paper_sweep_config_is_valid_and_builds_its_largest_target():
    """The accelerator sweep (not run on the CPU): n = 100..1000, R up to 20, 100 seeds;
    its largest target has the configured spectrum (sigma*_20 = 10 * 0.8^19)."""
    cfg = configs.get_config("paper")
    config_lib.validate(cfg)
    assert min(cfg.sweep_sizes) == 100 and max(cfg.sweep_sizes) == 1000
    assert max(cfg.ranks) == 20 and cfg.seeds == 100
    with jax.enable_x64(True):
        sig = data.spectrum(cfg.singular_values, 20, cfg.spectrum_ratio)
        from jaxlab.dmf import models

        t = np.asarray(models.low_rank_target(jax.random.key(0), 1000, 20, sig))
    s = np.linalg.svd(t, compute_uv=False)
    np.testing.assert_allclose(s[:20], 10 * 0.8 ** np.arange(20), rtol=1e-10)
    assert s[20] < 1e-10
    bad = dataclasses.replace(cfg, ranks=(1, 200))
    with pytest.raises(config_lib.ConfigError, match="ranks"):
        config_lib.validate(bad)
