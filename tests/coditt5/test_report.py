"""Experiment tables pair runs by seed and objective."""

import json

from jaxlab.coditt5 import report


def _write(root, objective, seed, plan, plain):
    d = root / f"review-{objective}-s{seed}"
    d.mkdir()
    metrics = lambda x: {k: x for k in ("xmatch", "bleu", "sari", "gleu", "copy", "oracle_xmatch")}
    ev = {"test_examples": 10, "plan": metrics(plan), "plain": metrics(plain),
          "rerank_plan": metrics(plan + 1), "rerank_plain": metrics(plain + 1)}
    (d / "evaluation.json").write_text(json.dumps(ev))


def test_paired_differences_by_seed(tmp_path):
    # Written out of seed order; span is edit - 5 on every seed, plan - plain is 1, 2, 3.
    for seed, plan, plain in ((2, 30.0, 27.0), (0, 10.0, 9.0), (1, 20.0, 18.0)):
        _write(tmp_path, "edit", seed, plan, plain)
        _write(tmp_path, "span", seed, plan - 5, plain - 5)
    (tmp_path / "unrelated").mkdir()
    rows = report.collect_runs(tmp_path)
    assert sorted((r["objective"], r["seed"]) for r in rows) == [(o, s) for o in ("edit", "span") for s in (0, 1, 2)]
    table = report.experiment_tables(rows)
    # 2 +/- t(0.975, 2) * 1 / sqrt(3) = 2 +/- 2.48; an exact 5 has a zero-width interval.
    assert "| edit: plan - plain | 2.0 ± 2.5 |" in table
    assert "| plan: edit - span pretraining | 5.0 ± 0.0 |" in table
    assert "| edit | plan | 20.0 ± 24.8 |" in table  # mean 20, s.d. 10: 12.7 * 10 / sqrt(3)
    assert report.plot_experiments(rows, tmp_path).exists()
