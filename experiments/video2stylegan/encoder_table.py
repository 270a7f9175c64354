"""Experiments 2 and 3's table: `evaluate` of encoder runs over seeds, grouped by loss
(`jaxlab.video2stylegan.report.encoder_table`).

    python experiments/video2stylegan/encoder_table.py lmk=RUN,RUN,RUN l2id=RUN,RUN,RUN
"""

import sys

from jaxlab.video2stylegan.report import encoder_table

if __name__ == "__main__":
    if len(sys.argv) < 2 or not all("=" in a for a in sys.argv[1:]):
        raise SystemExit(__doc__)
    print(encoder_table({a.split("=", 1)[0]: a.split("=", 1)[1].split(",") for a in sys.argv[1:]}))
