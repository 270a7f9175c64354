"""Markdown tables of experiments/scalenet/README.md from the run directories.

    python experiments/scalenet/report.py [RUNS]      # RUNS defaults to runs/scalenet

Writes the figures into experiments/scalenet/figures/ (the code: `jaxlab.scalenet.report`).
"""

import pathlib
import sys

from jaxlab.scalenet.report import main

if __name__ == "__main__":
    runs = sys.argv[1] if len(sys.argv) > 1 else "runs/scalenet"
    raise SystemExit(main([runs, str(pathlib.Path(__file__).resolve().parent)]))
