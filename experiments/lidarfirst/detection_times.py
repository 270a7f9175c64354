"""Experiment 2: time from the frame start to each correct cluster-first detection, by crop rank, by
distance and by the object's true R^3 class, beside the full-frame latency (from `compare` runs).

    python experiments/lidarfirst/detection_times.py runs/lidarfirst-compare/seed*
"""

from __future__ import annotations

import json
import pathlib
import sys

import numpy as np

from jaxlab.lidarfirst import compare, report


def main() -> None:
    pts, full = [], []
    for wd in sys.argv[1:]:
        saved = json.loads((pathlib.Path(wd) / "compare.json").read_text())
        res = saved["results"]
        pts += report.detection_times(saved["frames"]["cluster_first"]["test"], res["cluster_first"]["threshold"])
        full.append(res["full_frame"]["total_s_per_frame"])
    print(f"{len(pts)} correct cluster-first detections from {len(sys.argv) - 1} runs; "
          f"full-frame mean latency {1e3 * np.mean(full):.1f} ms (per-run means {[round(1e3 * f, 1) for f in full]})")
    print("| group | detections | median ms | 90th pct ms |")
    print("|---|---|---|---|")
    groups = [(f"rank {lo}-{hi}", lambda p, lo=lo, hi=hi: lo <= p["rank"] <= hi) for lo, hi in ((0, 0), (1, 2), (3, 5),
                                                                                              (6, 99))]
    groups += [(f"distance {lo}-{hi} m", lambda p, lo=lo, hi=hi: lo <= p["distance"] < hi)
               for lo, hi in ((0, 10), (10, 20), (20, 80))]
    groups += [(f"true R^3 {name}", lambda p, c=c: p["gt_risk"] == c) for c, name in enumerate(compare.RISK_NAMES)]
    for name, keep in groups:
        t = [1e3 * p["time_s"] for p in pts if keep(p)]
        if t:
            print(f"| {name} | {len(t)} | {np.median(t):.1f} | {np.percentile(t, 90):.1f} |")


if __name__ == "__main__":
    main()
