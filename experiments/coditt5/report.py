"""Tables and figure of experiments 1-3 from the runs of `run_experiments.sh`.

    python experiments/coditt5/report.py OUT        # prints the tables, writes OUT/tables.md
                                                    # and experiments/coditt5/figures/experiments.png
    python experiments/coditt5/report.py OUT --task bugfix   # results-bugfix.json, experiments-bugfix.png
"""

from __future__ import annotations

import argparse
import json
import pathlib

from jaxlab.coditt5 import report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=pathlib.Path, help="the OUT folder given to run_experiments.sh")
    parser.add_argument("--task", default="review",
                        help="the TASK of run_experiments.sh; other than review, the results and the "
                             "figure carry its name")
    args = parser.parse_args()
    suffix = "" if args.task == "review" else f"-{args.task}"
    rows = report.collect_runs(args.out)
    if not rows:
        raise SystemExit(f"no evaluated run in {args.out}: run experiments/coditt5/run_experiments.sh first")
    tables = report.experiment_tables(rows)
    print(tables)
    (args.out / "tables.md").write_text(tables + "\n")
    here = pathlib.Path(__file__).parent
    (here / f"results{suffix}.json").write_text(json.dumps(rows, indent=1) + "\n")
    print(report.plot_experiments(rows, here, f"experiments{suffix}"))


if __name__ == "__main__":
    main()
