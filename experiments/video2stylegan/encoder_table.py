"""Experiments 2 and 3's table: `evaluate` of encoder runs over seeds, grouped by loss
(`jaxlab.video2stylegan.report.encoder_table`).

    python experiments/video2stylegan/encoder_table.py lmk=RUN,RUN,RUN l2id=RUN,RUN,RUN
    python experiments/video2stylegan/encoder_table.py --cross reuse=RUN,RUN,RUN per_frame=RUN,RUN,RUN

`--cross` adds the first group used with reuse minus each other group used per frame.
"""

import sys

from jaxlab.video2stylegan.report import encoder_table

if __name__ == "__main__":
    args = sys.argv[1:]
    cross = "--cross" in args
    args = [a for a in args if a != "--cross"]
    if not args or not all("=" in a for a in args):
        raise SystemExit(__doc__)
    print(encoder_table({a.split("=", 1)[0]: a.split("=", 1)[1].split(",") for a in args}, cross=cross))
