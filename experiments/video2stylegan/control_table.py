"""Experiment 4's table: `train-control` over seeds (`jaxlab.video2stylegan.report.control_table`).

    python experiments/video2stylegan/control_table.py RUN [RUN ...]
"""

import sys

from jaxlab.video2stylegan.report import control_table

if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    print(control_table(sys.argv[1:]))
