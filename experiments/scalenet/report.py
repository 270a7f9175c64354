"""Markdown tables of experiments/scalenet/README.md from the run directories.

    python experiments/scalenet/report.py [RUNS]                 # RUNS defaults to runs/scalenet
    python experiments/scalenet/report.py --protocol [RUNS]      # the search protocol (run_protocol.sh)

Writes the figures into experiments/scalenet/figures/ (the code: `jaxlab.scalenet.report`).
"""

import pathlib
import sys

from jaxlab.scalenet.report import main

if __name__ == "__main__":
    here = str(pathlib.Path(__file__).resolve().parent)
    args = sys.argv[1:]
    if args and args[0] == "--protocol":
        raise SystemExit(main(["--protocol", args[1] if len(args) > 1 else "runs/scalenet_protocol", here]))
    raise SystemExit(main([args[0] if args else "runs/scalenet", here]))
