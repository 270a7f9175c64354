"""Actions of CoditT5: `pretrain`, `finetune`, `evaluate`, `generate`.

    jaxlab coditt5 pretrain --config smoke --workdir runs/codit
    jaxlab coditt5 finetune --config smoke --workdir runs/codit
    jaxlab coditt5 evaluate --workdir runs/codit
    jaxlab coditt5 generate --config smoke --config.input=edits.jsonl --config.init_from=runs/codit \
        --workdir runs/codit-gen
"""

from __future__ import annotations

import functools
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.coditt5 import data, report, rerank, training
from jaxlab.coditt5.configs import CoditConfig
from jaxlab.coditt5.metrics import corpus_metrics
from jaxlab.coditt5.models import T5
from jaxlab.core import actions
from jaxlab.core import train as train_lib
from jaxlab.core import workdir as workdir_lib

__all__ = ["pretrain", "finetune", "evaluate", "generate", "load", "ACTIONS"]


def _setup(config: CoditConfig, workdir: pathlib.Path):
    functions = functools.cache(lambda: training.load_functions(config))  # read only if needed
    tok = training.get_tokenizer(config, functions, workdir)
    return functions, tok, training.make_shape(config, len(tok))


def _fit(config: CoditConfig, stage_cfg, shape, train_pairs, valid_pairs, stage: pathlib.Path, init_params=None):
    buckets = data.Buckets(train_pairs, config.buckets, stage_cfg.batch_size)
    valid = data.Buckets(valid_pairs or train_pairs[:stage_cfg.batch_size], config.buckets, stage_cfg.batch_size)
    state = training.init_state(config, shape, stage_cfg)
    if init_params is not None:  # a copy: the train step donates its state's buffers
        params = jax.tree.map(jnp.copy, init_params)
        state = state.replace(params=params, opt_state=state.tx.init(params))
    step_fn = train_lib.make_train_step(training.make_loss_fn(shape), compiler_options=training.compiler_options())
    eval_fn = training.make_eval_fn(shape, valid)
    state, history = train_lib.fit(state, step_fn, lambda s: buckets.batch(s, config.seed), loop=stage_cfg.loop,
                                   workdir=stage, seed=config.seed, eval_fn=eval_fn, desc=stage.name)
    final = eval_fn(state)
    times = train_lib.run_times(stage)
    return state, {"valid_loss": final["loss"], "valid_token_accuracy": final["token_accuracy"],
                   "train_examples": len(buckets), "dropped_too_long": buckets.dropped,
                   "steps": int(jax.device_get(state.step)), "train_time_s": times["train_time_s"],
                   "first_step_s": times["segments"][0]["first_step_s"] if times["segments"] else None,
                   "wall_time_s": times["wall_time_s"]}


@actions.action
def pretrain(config: CoditConfig, workdir: pathlib.Path) -> dict:
    """Pretrains the T5 with edit-aware (CoditT5) or span (T5) corruption of code and comments."""
    functions, tok, shape = _setup(config, workdir)
    if config.pretrain_objective == "none":
        return workdir_lib.update_summary(workdir, "pretrain", {"objective": "none"}, config, seed=config.seed)
    pairs = training.stage_pairs(config, "pretrain", tok,
                                 lambda split: training.pretrain_pairs(config, functions(), tok, split))
    _, results = _fit(config, config.pretrain, shape, pairs["train"], pairs["valid"],
                      workdir_lib.stage_dir(workdir, "pretrain"))
    results.update(objective=config.pretrain_objective, vocab_size=len(tok))
    report.plot_training(workdir)
    return workdir_lib.update_summary(workdir, "pretrain", results, config, seed=config.seed)


def _pretrained_params(config: CoditConfig, workdir: pathlib.Path, shape):
    if config.pretrain_objective == "none":
        return None
    src = pathlib.Path(config.init_from) if config.init_from else workdir
    template = training.init_state(config, shape, config.pretrain)
    state, _ = train_lib.load_state(src / "pretrain", template, keep=config.pretrain.loop.keep)
    return state.params


@actions.action
def finetune(config: CoditConfig, workdir: pathlib.Path) -> dict:
    """Fine-tunes the pretrained T5 on the task, once per output format (edit plan, plain target)."""
    functions, tok, shape = _setup(config, workdir)
    init = _pretrained_params(config, workdir, shape)
    examples = functools.cache(lambda split: training.task_examples(config, functions(), split))
    results = {}
    for fmt in config.formats:
        pairs = training.stage_pairs(config, f"finetune-{fmt}", tok,
                                     lambda split, fmt=fmt: training.task_pairs(examples(split), tok, fmt))
        _, results[fmt] = _fit(config, config.finetune, shape, pairs["train"], pairs["valid"],
                               workdir_lib.stage_dir(workdir, f"finetune-{fmt}"), init)
    report.plot_training(workdir)
    return workdir_lib.update_summary(workdir, "finetune", results, config, seed=config.seed)


def _stages(workdir: pathlib.Path) -> list[str]:
    return [s for s in ("pretrain", "finetune-plan", "finetune-plain") if (workdir / s / "checkpoints").is_dir()]


def load(workdir: str | pathlib.Path) -> actions.Loaded:
    """The config, model and newest intact states (a dict by stage) of a finished or interrupted run."""
    workdir = pathlib.Path(workdir)
    config = workdir_lib.load_config(workdir, CoditConfig)
    tok_path = workdir / "tokenizer.json"
    if not tok_path.exists():
        raise workdir_lib.WorkdirError(f"{tok_path} does not exist: the run has not started")
    from jaxlab.coditt5.tokenizer import load_tokenizer

    tok = load_tokenizer(tok_path)
    shape = training.make_shape(config, len(tok))
    states, step = {}, 0
    for s in _stages(workdir):  # stages with no finished checkpoint yet are left out
        stage_cfg = config.pretrain if s == "pretrain" else config.finetune
        state, at = train_lib.restore_latest(workdir / s, training.init_state(config, shape, stage_cfg),
                                             keep=stage_cfg.loop.keep)
        if at:
            states[s], step = state, at
    if not states:
        raise workdir_lib.WorkdirError(f"{workdir} holds no finished checkpoint of any stage")
    return actions.Loaded(config, T5(shape), states, step, {"tokenizer": tok, "shape": shape})


def _model_params(run: actions.Loaded, workdir: pathlib.Path, fmt: str, functions=None, select=None):
    """(params, step, selection) of the fine-tuned `fmt` model: the checkpoint `select` (default:
    config.select) names."""
    stage, c = f"finetune-{fmt}", run.config
    select = select or c.select
    if select == "last":
        return run.state[stage].params, int(jax.device_get(run.state[stage].step)), {"select": "last"}
    metric, mode = "eval_loss", "min"
    if select == "valid_bleu":
        valid = training.task_examples(c, functions or training.load_functions(c), "valid")[:c.eval_examples]
        metric, mode = rerank.bleu_scorer(run.extras["shape"], run.extras["tokenizer"], valid, fmt,
                                          src_len=c.buckets[-1][0], max_len=c.buckets[-1][1], beam_size=c.valid_beam,
                                          alpha=c.alpha, batch_size=c.eval_batch_size,
                                          comment=c.task == "comment"), "max"
    state, step, info = train_lib.restore_best(pathlib.Path(workdir) / stage, run.state[stage], metric,
                                               keep=c.finetune.loop.keep, mode=mode)
    return state.params, step, {"select": select, "candidates": info["candidates"], "fallback": info["fallback"]}


@actions.action(read_only=True, options=[actions.Option(
    "--select", choices=("valid_loss", "valid_bleu", "last"),
    help="checkpoint of each fine-tuned model (default: the run's config.select)")])
def evaluate(config: CoditConfig, workdir: pathlib.Path, select: str | None = None) -> dict:
    """Beam-searches the test split with each fine-tuned model; xMatch/BLEU/SARI/COPY%, top-k oracle, reranking."""
    run = load(workdir)
    functions = training.load_functions(run.config)
    tok, shape = run.extras["tokenizer"], run.extras["shape"]
    test = training.task_examples(run.config, functions, "test")[:config.eval_examples]
    src_len, tgt_len = config.buckets[-1]
    kw = dict(src_len=src_len, batch_size=config.eval_batch_size)
    sources, refs = [ex["source"] for ex in test], [ex["target"] for ex in test]
    results, hyps, own, chosen = {"test_examples": len(test), "beam_size": config.beam_size}, {}, {}, {}
    for fmt in config.formats:
        if f"finetune-{fmt}" not in run.state:
            continue
        params, at, selection = _model_params(run, workdir, fmt, functions, select)
        h, sc = rerank.decode_examples(params, shape, tok, test, fmt, max_len=tgt_len, beam_size=config.beam_size,
                                       alpha=config.alpha, **kw)
        hyps[fmt] = [b[:config.num_return] for b in h]
        own[fmt] = sc[:, :config.num_return]
        r = corpus_metrics(sources, [b[0] for b in h], refs, comment=config.task == "comment")
        r["oracle_xmatch"] = 100 * float(np.mean([any(y == ref for y in b) for b, ref in zip(hyps[fmt], refs)]))
        results[fmt] = dict(r, checkpoint_step=at, selection=selection)
        chosen[fmt] = params
    if len(hyps) == 2 and test:
        for fmt, other in (("plan", "plain"), ("plain", "plan")):
            s_self = rerank.score_targets(chosen[fmt], shape, tok, test, hyps[fmt], fmt, tgt_len=tgt_len, **kw)
            s_other = rerank.score_targets(chosen[other], shape, tok, test, hyps[fmt], other, tgt_len=tgt_len, **kw)
            best = np.argmax(s_self + s_other, axis=1)
            results[f"rerank_{fmt}"] = corpus_metrics(sources, [b[i] for b, i in zip(hyps[fmt], best)], refs,
                                                      comment=config.task == "comment")
    results["step"] = run.step
    workdir_lib.write_json(workdir / "evaluation.json", results)
    workdir_lib.update_summary(workdir, "evaluate", results)
    return results


@actions.action
def generate(config: CoditConfig, workdir: pathlib.Path) -> dict:
    """Edits each {source, context} line of --config.input with the model of run --config.init_from (top-k, scores)."""
    if not config.init_from:
        raise workdir_lib.WorkdirError("generate needs --config.init_from=RUN (a fine-tuned run's workdir)")
    run = load(config.init_from)
    fmt = next((f for f in config.formats if f"finetune-{f}" in run.state), None)
    if fmt is None:
        raise workdir_lib.WorkdirError(f"{config.init_from} holds no fine-tuned model: run `finetune` first")
    if not config.input:
        raise workdir_lib.WorkdirError("generate needs --config.input=FILE (JSON lines with 'source', 'context')")
    exs = data.read_jsonl_examples(config.input, need_target=False)
    src_len, tgt_len = config.buckets[-1]
    params, _, _ = _model_params(run, config.init_from, fmt)
    h, sc = rerank.decode_examples(params, run.extras["shape"], run.extras["tokenizer"],
                                   exs, fmt, src_len=src_len, max_len=tgt_len, beam_size=config.beam_size,
                                   alpha=config.alpha, batch_size=config.eval_batch_size)
    out = [{"source": " ".join(ex["source"]), "outputs": [" ".join(y) for y in b[:config.num_return]],
            "scores": [float(s) for s in row[:config.num_return]]} for ex, b, row in zip(exs, h, sc)]
    workdir_lib.write_json(workdir / "generations.json", out)
    return {"format": fmt, "count": len(out), "generations": out}


ACTIONS = actions.collect(pretrain, finetune, evaluate, generate)
