"""Experiment 4 on the encoder's latents of video frames: the control network F of a
`train-control` run edits the W+ that a trained encoder gives to the held-out procedural
evaluation frames (per-frame encoding), instead of mapped latents, judged by auxiliary nets of
another seed. Each (control run, encoder run) pair must share the generator; the table pairs
them in the order given.

    python experiments/video2stylegan/control_on_encoded.py OUT --judge JUDGE_RUN \\
        --pair CONTROL_RUN ENCODER_RUN [--pair CONTROL_RUN ENCODER_RUN ...]

Writes OUT/pair-<i>/summary.json (the control section as `train-control` writes it) and prints
`report.control_table` of the pairs.
"""

import argparse
import pathlib

import jax
import numpy as np

from jaxlab.core import train as train_lib
from jaxlab.core import workdir as workdir_lib
from jaxlab.video2stylegan import auxnets, control, data, encoder, run
from jaxlab.video2stylegan.report import control_table


def evaluate_pair(control_run: pathlib.Path, encoder_run: pathlib.Path, judge_run: str) -> dict:
    ctl, enc = run.load(control_run), run.load(encoder_run)
    for a, b in zip(jax.tree.leaves(ctl.state.g_ema), jax.tree.leaves(enc.state.g_ema), strict=True):
        if not np.array_equal(np.asarray(a), np.asarray(b)):
            raise SystemExit(f"{control_run} and {encoder_run} hold different generators")
    c = ctl.config
    aux = ctl.extras["aux"]  # the nets F was trained against (its encoder.aux_from)
    judge = auxnets.load_aux(judge_run, c.gan.resolution)
    state, _ = train_lib.load_state(control_run / "control", control.init_state(c), keep=c.control.loop.keep)
    fns = encoder.make_encode_fn(enc.config)
    frames = np.concatenate([v["image"] for v in data.eval_videos(enc.config.seed, enc.config.faces)])
    ws, _ = encoder.encode_frames(fns, enc.extras["encoder"][0].params, enc.state.g_ema, enc.state.w_avg, frames,
                                  reuse=False)
    latents, generate = control.generator_fns(c, ctl.state)
    res = control.evaluate_edits(c, state.params, latents, generate, aux, judge, ws=ws)
    res.pop("images")
    return dict(res, frames=len(frames), control_run=str(control_run), encoder_run=str(encoder_run))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--judge", required=True)
    ap.add_argument("--pair", nargs=2, action="append", required=True, metavar=("CONTROL_RUN", "ENCODER_RUN"))
    args = ap.parse_args()
    dirs = []
    for i, (c, e) in enumerate(args.pair):
        d = pathlib.Path(args.out) / f"pair-{i}"
        d.mkdir(parents=True, exist_ok=True)
        workdir_lib.write_json(d / "summary.json", {"results": {"control": evaluate_pair(
            pathlib.Path(c), pathlib.Path(e), args.judge)}})
        dirs.append(d)
    print(control_table(dirs))


if __name__ == "__main__":
    main()
