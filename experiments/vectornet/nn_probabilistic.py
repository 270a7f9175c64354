"""The nearest-neighbour baseline with 6 guesses under the probabilistic metrics, on the scenes
of `baselines.sh` (smoke scenes, 512 training and 256 test scenes per seed): minFDE, p-minFDE,
brier-minFDE and p-miss with `baselines.guess_probs` against equal probabilities, and the
share of test scenes whose likeliest guess is also the min-FDE guess.

    python experiments/vectornet/nn_probabilistic.py [--seeds 0 1 2]
"""

import argparse

import numpy as np

from jaxlab.core.stats import fmt_ci, mean_ci
from jaxlab.vectornet import baselines, configs, data
from jaxlab.vectornet.metrics import numpy_metrics

KEYS = (("fde", "minFDE"), ("p_fde", "p-minFDE"), ("brier_fde", "brier-minFDE"), ("p_miss", "p-miss rate"))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = ap.parse_args()
    rows = {"distance softmax": [], "equal": []}
    top = []
    for seed in args.seeds:
        c = configs.get_config("smoke")
        c.seed, c.num_train, c.num_val, c.num_test = seed, 512, 128, 256
        train, test = data.split_arrays(c, "train"), data.split_arrays(c, "test")
        pred, probs = baselines.nearest_neighbour(train, test, c.scene.num_obs, k=6, return_probs=True)
        for name, p in (("distance softmax", probs), ("equal", np.ones_like(probs))):
            m = numpy_metrics(pred, test["future"], test["future_mask"], probs=p)
            rows[name].append({k: float(np.mean(m[k])) for k, _ in KEYS})
        fde = np.linalg.norm(pred[:, :, -1] - test["future"][:, None, -1], axis=-1)
        top.append(float(np.mean(np.argmax(probs, 1) == np.argmin(fde, 1))))
    print(f"{len(args.seeds)} seeds, mean ± 95% t-interval; 6 guesses per test scene\n")
    print("| probabilities | " + " | ".join(n for _, n in KEYS) + " |")
    print("|---|" + "---|" * len(KEYS))
    for name, rs in rows.items():
        print(f"| {name} | " + " | ".join(fmt_ci(*mean_ci([r[k] for r in rs])[:2], 2) for k, _ in KEYS) + " |")
    print(f"\nlikeliest guess = min-FDE guess: {fmt_ci(*mean_ci(top)[:2], 3)} of test scenes (chance 1/6)")


if __name__ == "__main__":
    main()
