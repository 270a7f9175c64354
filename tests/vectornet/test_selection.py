"""Checkpoint selection on the validation split (`config.select`, `evaluate --select`)."""

import dataclasses
import json
import shutil

import numpy as np
import pytest

from jaxlab import cli
from jaxlab.core import metrics as metrics_lib
from jaxlab.vectornet import run, selection


def _copy(multi_target_run, tmp_path):
    c, wd, result = multi_target_run
    dst = tmp_path / "run"
    shutil.copytree(wd, dst)
    return c, dst, result


def _kept(wd):
    return sorted(int(p.name) for p in (wd / "checkpoints").iterdir() if p.name.isdigit())


def _rewrite_val(wd, values):
    """Sets the logged validation ADE of the given steps (other rows untouched)."""
    path = wd / "metrics.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for r in rows:
        if "eval_ade" in r and r["step"] in values:
            r["eval_ade"] = values[r["step"]]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_best_val_is_the_argmin_of_the_logged_validation_ade_among_kept_checkpoints(multi_target_run, tmp_path):
    c, wd, result = _copy(multi_target_run, tmp_path)
    assert c.select == "best_val" and _kept(wd) == [4, 6]  # keep=2: step 2's checkpoint is gone
    logged = {r["step"]: r["eval_ade"] for r in metrics_lib.read_metrics(wd / "metrics.jsonl") if "eval_ade" in r}
    assert sorted(logged) == [2, 4, 6]
    assert run.load(wd).step == min(_kept(wd), key=lambda s: (logged[s], s))
    # best != last, and the best logged value of all (step 2) is not a kept checkpoint
    _rewrite_val(wd, {2: 0.01, 4: 0.5, 6: 0.9})
    ev = run.evaluate(None, wd)
    assert ev["step"] == 4 and ev["selection"]["step"] == 4 and ev["selection"]["latest_step"] == 6
    assert ev["selection"]["candidates"] == {"4": 0.5, "6": 0.9} and ev["selection"]["val_ade"] == 0.5
    assert json.loads((wd / "evaluation.json").read_text())["step"] == 4
    assert int(run.load(wd).state.step) == 4  # the restored state is that checkpoint's
    assert ev["test"]["ade"] != result["test"]["ade"]
    assert ev["test"]["all_targets"]["num_targets"] == result["test"]["all_targets"]["num_targets"]


def test_select_last_keeps_the_newest_checkpoint(multi_target_run, tmp_path, capsys):
    c, wd, result = _copy(multi_target_run, tmp_path)
    _rewrite_val(wd, {4: 0.5, 6: 0.9})
    last = run.evaluate(dataclasses.replace(c, select="last"), wd)
    assert last["step"] == 6 and last["selection"] == {"select": "last", "step": 6}
    assert last["test"] == result["test"]  # the final state, as train scored it
    capsys.readouterr()
    assert cli.main(["vectornet", "evaluate", "--workdir", str(wd), "--select", "last"]) == 0
    assert json.loads(capsys.readouterr().out)["test"] == result["test"]


def test_corrupt_best_and_no_scores_fall_back_with_warnings(multi_target_run, tmp_path):
    c, wd, _ = _copy(multi_target_run, tmp_path)
    _rewrite_val(wd, {4: 0.5, 6: 0.9})
    state = run.training.init_state(c)
    victim = next(p for p in sorted((wd / "checkpoints" / "4").rglob("*")) if p.is_file() and p.stat().st_size > 64)
    victim.write_bytes(b"\0" * victim.stat().st_size)
    with pytest.warns(RuntimeWarning, match="step 4.*not a selection candidate"):
        _, step, chosen = selection.restore_selected(wd, state, "best_val", keep=c.loop.keep)
    assert step == 6 and chosen["candidates"] == {"6": 0.9}
    _rewrite_val(wd, {4: float("nan"), 6: float("nan")})
    with pytest.warns(RuntimeWarning) as caught:
        _, step, chosen = selection.restore_selected(wd, state, "best_val", keep=c.loop.keep)
    assert step == 6 and chosen["fallback"] == "last"
    assert any("no intact kept checkpoint" in str(w.message) for w in caught)
    with pytest.raises(ValueError, match="select"):
        selection.restore_selected(wd, state, "best", keep=c.loop.keep)


def test_schedule_without_a_score_at_every_checkpoint_warns(small_config):
    c = small_config(1)
    c.loop = dataclasses.replace(c.loop, eval_every=3, checkpoint_every=2)
    with pytest.warns(RuntimeWarning, match="not a multiple"):
        selection.check_schedule(c)
    selection.check_schedule(dataclasses.replace(c, select="last"))  # no warning needed
    np.testing.assert_equal(c.select, "best_val")
