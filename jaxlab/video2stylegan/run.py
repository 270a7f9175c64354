"""Actions of video2stylegan, one per command:

    jaxlab video2stylegan render --workdir runs/v2s            # procedural videos as <video>/<frame>.png
    jaxlab video2stylegan train-generator --workdir runs/v2s   # StyleGAN2 on procedural faces (fit)
    jaxlab video2stylegan import-generator --workdir runs/ffhq --config=paper --config.gan.weights=ffhq.npz
    jaxlab video2stylegan train-aux --workdir runs/v2s         # proc_landmarks, proc_3dmm, proc_id (fit)
    jaxlab video2stylegan train-encoder --workdir runs/v2s     # ViT encoder into W+ with temporal reuse (fit)
    jaxlab video2stylegan train-control --workdir runs/v2s     # pose/expression control in W+ (fit)
    jaxlab video2stylegan encode --workdir runs/v2s --config.video=runs/v2s/videos/video_000
    jaxlab video2stylegan evaluate --workdir runs/v2s          # per-frame vs reuse: MSE, SSIM, flicker, NME, fps
"""

from __future__ import annotations

import pathlib
import sys

import jax
import numpy as np

from jaxlab.core import actions
from jaxlab.core import train as train_lib
from jaxlab.core import workdir as workdir_lib
from jaxlab.video2stylegan import auxnets, control, convert, data, encoder, gan, metrics, report
from jaxlab.video2stylegan.configs import Video2StyleGANConfig

__all__ = ["render", "train_generator", "import_generator", "train_aux", "train_encoder", "train_control", "encode",
           "evaluate", "load", "ACTIONS"]

BATCHES = 0x6801


@actions.action
def render(config: Video2StyleGANConfig, workdir: pathlib.Path) -> dict:
    """Writes the procedural evaluation videos as WORKDIR/videos/<video>/<frame>.png with labels.json."""
    root = workdir / "videos"
    vids = data.eval_videos(config.seed, config.faces)
    for i, v in enumerate(vids):
        folder = root / f"video_{i:03d}"
        data.write_video(folder, report.to_rgb(v["image"]))
        workdir_lib.write_json(folder.parent / f"video_{i:03d}.labels.json", {
            k: np.asarray(v[k]).tolist() for k in ("landmarks", "ident", "expr", "pose")})
    results = {"videos": len(vids), "frames": config.faces.frames, "resolution": config.faces.resolution,
               "dir": "videos"}
    workdir_lib.update_summary(workdir, "render", results, config, seed=config.seed)
    return results


def _gan_state(config):
    return gan.init_state(config.gan, config.seed)


@actions.action(name="train-generator")
def train_generator(config: Video2StyleGANConfig, workdir: pathlib.Path) -> dict:
    """Trains StyleGAN2 (G, D, G-EMA in one state) on procedural face renders; resumes a killed run."""
    gc = config.gan
    stage = workdir_lib.stage_dir(workdir, "generator")
    images = data.train_images(config.seed, config.faces)["image"]

    def batch_fn(step):
        idx = np.random.default_rng([config.seed, BATCHES, step]).integers(0, len(images), gc.batch_size)
        return images[idx]

    aux = auxnets.load_aux(_aux_dir(workdir, config), gc.resolution) if auxnets.has_aux(_aux_dir(workdir, config)) \
        else None
    eval_fn = None
    if aux is not None and gc.loop.eval_every:  # an FD-proc curve over training
        fd = auxnets.make_fd_fn(config, aux)
        eval_fn = lambda st: {"fd_proc": fd(st.g_ema)}
    state, history = train_lib.fit(_gan_state(config), gan.make_gan_step(gc), batch_fn, loop=gc.loop,
                                   workdir=stage, seed=config.seed, desc="video2stylegan G/D", eval_fn=eval_fn)
    times = train_lib.run_times(stage)
    report.plot_samples(workdir, gan.samples(gc, state, config.seed), "samples")
    report.plot_training(stage, workdir, ("g_loss", "d_loss", "d_real", "d_fake"), "generator_training")
    last = history[-1] if history else {}
    segs = times["segments"]
    results = {"steps": int(jax.device_get(state.step)), "images_seen": int(state.step) * gc.batch_size,
               **{k: last.get(k) for k in ("g_loss", "d_loss", "d_real", "d_fake")},
               "train_time_s": times["train_time_s"], "first_step_s": segs[0]["first_step_s"] if segs else None,
               "g_params": sum(x.size for x in jax.tree.leaves(state.g.params)),
               "d_params": sum(x.size for x in jax.tree.leaves(state.d.params))}
    if aux is not None:  # FD-proc under the self-trained nets (not FID)
        results["fd_proc"] = auxnets.generator_fd(config, aux, state.g_ema)
    workdir_lib.update_summary(workdir, "generator", results, config, seed=config.seed)
    return results


@actions.action(name="import-generator")
def import_generator(config: Video2StyleGANConfig, workdir: pathlib.Path) -> dict:
    """Makes `gan.weights` (a stylegan2-ada-pytorch generator, `convert.import_state`) this run's generator."""
    gc = config.gan
    state, conv = convert.import_state(gc, config.seed)
    stage, step = workdir_lib.stage_dir(workdir, "generator"), int(state.step)
    train_lib.save_state(stage, state, step, keep=gc.loop.keep, meta={"imported_from": gc.weights})
    report.plot_samples(workdir, gan.samples(gc, state, config.seed), "samples")
    results = {"steps": step, "imported_from": gc.weights, **conv.gan}
    workdir_lib.update_summary(workdir, "generator", results, config, seed=config.seed)
    return results


def _generator(workdir: pathlib.Path, config) -> tuple[gan.GanState, int]:
    return train_lib.load_state(workdir / "generator", _gan_state(config), keep=config.gan.loop.keep)


@actions.action(name="train-aux")
def train_aux(config: Video2StyleGANConfig, workdir: pathlib.Path) -> dict:
    """Trains proc_landmarks, proc_3dmm and proc_id on procedural renders (WORKDIR/aux/<net>/); resumes."""
    results = auxnets.train_all(config, workdir)
    workdir_lib.update_summary(workdir, "aux", results, config, seed=config.seed)
    return results


def _aux_dir(workdir: pathlib.Path, config) -> pathlib.Path:
    return pathlib.Path(config.encoder.aux_from) if config.encoder.aux_from else workdir


@actions.action(name="train-encoder")
def train_encoder(config: Video2StyleGANConfig, workdir: pathlib.Path) -> dict:
    """Trains the ViT encoder into W+ on clips of procedural videos against the frozen G-EMA (and the
    frozen auxiliary nets of encoder.aux_from when a landmark/mesh/identity weight is set); resumes."""
    g_state, _ = _generator(workdir, config)
    aux = (auxnets.load_aux(_aux_dir(workdir, config), config.gan.resolution) if encoder.uses_aux(config)
           else None)
    stage = workdir_lib.stage_dir(workdir, "encoder")
    vids = np.stack([v["image"] for v in data.clip_videos(config.seed, config.faces)])
    loss_fn = encoder.make_loss_fn(config, g_state.g_ema, g_state.w_avg, aux)
    state, history = train_lib.fit(encoder.init_encoder_state(config), train_lib.make_train_step(loss_fn),
                                   lambda s: encoder.clip_batch(config, vids, s), loop=config.encoder.loop,
                                   workdir=stage, seed=config.seed, desc="video2stylegan encoder")
    times = train_lib.run_times(stage)
    report.plot_training(stage, workdir, ("loss", "mse_key", "mse_frame"), "encoder_training")
    last = history[-1] if history else {}
    results = {"steps": int(jax.device_get(state.step)), "reuse": config.encoder.reuse,
               "loss": last.get("loss"), "train_time_s": times["train_time_s"]}
    if aux is not None:
        results["aux_steps"] = aux.steps
        results.update({k: last.get(k) for k in ("landmark_loss", "mesh_loss", "identity_loss") if k in last})
    workdir_lib.update_summary(workdir, "encoder", results, config, seed=config.seed)
    return results


@actions.action(name="train-control")
def train_control(config: Video2StyleGANConfig, workdir: pathlib.Path) -> dict:
    """Trains the pose/expression control network in W+ against the frozen G-EMA and the proc_3dmm and
    proc_id of encoder.aux_from (or this workdir); resumes; control.judge_from's nets judge the edits."""
    g_state, _ = _generator(workdir, config)
    aux = auxnets.load_aux(_aux_dir(workdir, config), config.gan.resolution)
    results = control.train(config, workdir, g_state, aux)
    workdir_lib.update_summary(workdir, "control", results, config, seed=config.seed)
    return results


def load(workdir: str | pathlib.Path) -> actions.Loaded:
    """The config, models, the GAN state (G, D, G-EMA) of the newest intact checkpoint and, in
    `extras["encoder"]`, the encoder's `(state, step)` when an encoder was trained; in
    `extras["aux"]` the frozen `auxnets.AuxNets` of `encoder.aux_from` (or this workdir) when trained."""
    workdir = pathlib.Path(workdir)
    config = workdir_lib.load_config(workdir, Video2StyleGANConfig)
    state, step = _generator(workdir, config)
    extras = {}
    if (workdir / "encoder" / "checkpoints").exists():
        extras["encoder"] = train_lib.load_state(workdir / "encoder", encoder.init_encoder_state(config),
                                                 keep=config.encoder.loop.keep)
    if auxnets.has_aux(_aux_dir(workdir, config)):
        try:
            extras["aux"] = auxnets.load_aux(_aux_dir(workdir, config), config.gan.resolution)
        except workdir_lib.WorkdirError as e:  # an interrupted train-aux: evaluate without them
            print(f"warning: auxiliary networks not used: {e}", file=sys.stderr)
    g, d = gan.make_models(config.gan)
    return actions.Loaded(config, {"generator": g, "discriminator": d, "encoder": encoder.make_encoder(config)},
                          state, step, extras)


def _encode_both(run: actions.Loaded, frames: np.ndarray, fns) -> dict:
    if "encoder" not in run.extras:
        raise workdir_lib.WorkdirError("no trained encoder in this workdir: run `jaxlab video2stylegan "
                                       "train-encoder` on it first")
    return encoder.encode_both(fns, run.extras["encoder"][0].params, run.state.g_ema, run.state.w_avg, frames)


@actions.action
def encode(config: Video2StyleGANConfig, workdir: pathlib.Path) -> dict:
    """Encodes config.video (frame folder(s); default: the procedural evaluation videos) per frame and
    with reuse; writes WORKDIR/encoded/<video>/{per_frame,reuse}/ frames and a strip figure; with
    auxiliary nets, also their landmark and identity agreement between input and reconstruction."""
    run = load(workdir)
    r = run.config.gan.resolution
    if config.video:
        videos = {n: data.to_unit(v) for n, v in data.read_videos(config.video).items()}
    else:
        videos = {f"video_{i:03d}": v["image"] for i, v in enumerate(data.eval_videos(config.seed, config.faces))}
    fns = encoder.make_encode_fn(run.config)
    aux_fns = auxnets.jit_fns(run.extras["aux"]) if "aux" in run.extras else None
    results = {}
    for name, frames in videos.items():
        if frames.shape[1:3] != (r, r):
            raise data.DataFormatError(f"{config.video}/{name}: frames are {frames.shape[2]}x{frames.shape[1]}, "
                                       f"the generator is {r}x{r}")
        out = _encode_both(run, frames, fns)
        for mode, (_, rec) in out.items():
            data.write_video(workdir / "encoded" / name / mode, report.to_rgb(rec))
        report.plot_strip(workdir, f"strip_{name}", frames, out["per_frame"][1], out["reuse"][1])
        results[name] = metrics.video_metrics(frames, out, run.config.encoder.reuse_start)
        for mode, (_, rec) in out.items():  # no ground truth: agreement of the nets on input and output
            if aux_fns is not None:
                results[name][mode].update(auxnets.consistency_metrics(aux_fns, rec, frames))
    workdir_lib.update_summary(workdir, "encode", results, config, seed=config.seed)
    return results


@actions.action(read_only=True, options=[actions.Option(
    "--judge", metavar="DIR", help="run directory whose aux/ nets score the encodings (default: the "
    "encoder's encoder.aux_from); give another seed's train-aux run to judge independently")])
def evaluate(config: Video2StyleGANConfig, workdir: pathlib.Path, judge: str | None = None) -> dict:
    """Per-frame encoding vs temporal reuse on the procedural evaluation videos: MSE, SSIM, flicker,
    encoder+generator frames/s and, with trained auxiliary nets, landmark NME (to the exact
    landmarks), identity similarity under proc_id and mesh vertex RMSE (evaluation.json)."""
    run = load(workdir)
    c = run.config
    fns = encoder.make_encode_fn(c)
    judge_aux = auxnets.load_aux(judge, c.gan.resolution) if judge else run.extras.get("aux")
    aux_fns = auxnets.jit_fns(judge_aux) if judge_aux is not None else None
    rows = []
    vids = data.eval_videos(c.seed, c.faces)
    for i, v in enumerate(vids):
        out = _encode_both(run, v["image"], fns)
        rows.append(metrics.video_metrics(v["image"], out, c.encoder.reuse_start))
        if aux_fns is not None:  # the nets on the input frames: the floor of their errors
            rows[-1]["input"] = auxnets.frame_metrics(aux_fns, v["image"], v)
            for mode, (_, rec) in out.items():
                rows[-1][mode].update(auxnets.frame_metrics(aux_fns, rec, v))
        if i == 0:
            report.plot_strip(workdir, "strip_eval", v["image"], out["per_frame"][1], out["reuse"][1])
            report.plot_flicker(workdir, v["image"], out["per_frame"][1], out["reuse"][1])
    results = {m: {k: float(np.mean([r[m][k] for r in rows])) for k in rows[0][m]} for m in rows[0]}
    speed = encoder.throughput(fns, run.extras["encoder"][0].params, run.state.g_ema, run.state.w_avg,
                               vids[0]["image"])
    for mode in speed:
        results[mode].update(speed[mode])
    results.update({"videos": len(vids), "frames": c.faces.frames, "generator_step": run.step,
                    "encoder_step": run.extras["encoder"][1], "device": jax.devices()[0].device_kind})
    if aux_fns is not None:
        results["aux_steps"] = judge_aux.steps
        results["judge"] = str(judge) if judge else str(_aux_dir(workdir, c))
    workdir_lib.write_json(workdir / "evaluation.json", results)
    return results


ACTIONS = actions.collect(render, train_generator, import_generator, train_aux, train_encoder, train_control, encode,
                          evaluate)
