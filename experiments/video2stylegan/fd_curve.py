"""Experiment 1's FD-proc over generator training and seeds: a table of each run's curve and
final reference points, and `figures/fd_proc_curve.png` in OUT
(`jaxlab.video2stylegan.report.plot_fd_curves`).

    python experiments/video2stylegan/fd_curve.py OUT RUN [RUN ...]
"""

import json
import pathlib
import sys

from jaxlab.core.metrics import merge_by_step, read_metrics
from jaxlab.video2stylegan.report import plot_fd_curves

if __name__ == "__main__":
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    out, runs = sys.argv[1], sys.argv[2:]
    print("| run | seed | FD-proc by step | final | untrained G | real vs real |")
    print("|---|---|---|---|---|---|")
    for d in map(pathlib.Path, runs):
        s = json.loads((d / "summary.json").read_text())
        fd = s["results"]["generator"]["fd_proc"]
        curve = ", ".join(f"{r['step']}: {r['eval_fd_proc']:.1f}" for r in merge_by_step(read_metrics(d / "generator"))
                          if "eval_fd_proc" in r)
        print(f"| {d.name} | {s['config']['seed']} | {curve or '-'} | {fd['generator']:.1f} | "
              f"{fd['untrained_generator']:.1f} | {fd['real_vs_real']:.2f} |")
    print("\n" + str(plot_fd_curves(runs, out)))
