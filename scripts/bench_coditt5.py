"""Benchmark: jaxlab's Flax T5 vs `transformers`' `T5ForConditionalGeneration` and vs a lean
PyTorch T5 of the same shape (written the way `transformers`' `modeling_t5.py` computes it: ReLU
FF, RMSNorm, relative bias from layer 0, tied embeddings, without its generality), on the same
random batch: one AdamW training step (tokens/s), and greedy and beam-search decoding with a
key/value cache (jaxlab, the lean model and `transformers`' `generate`, all three with the same
weights and the same stopping rule). jaxlab's step is the engine's
`train.make_train_step` around `jaxlab.coditt5.training.make_loss_fn`, compiled as `jaxlab
coditt5` compiles it (the tied output layer and the loss through `training.head_token_loss`'s
hand-written VJP, the attention cores through `jaxlab.nn.attention.attention_with_vjp`'s); a
fourth training peer, left out with `--no-logits-head`, is the same step through the logits and
`training.token_loss`, and a fifth, left out with `--no-autodiff-attention`, the same step with
JAX differentiating the attention (`T5Shape(attention_vjp='autodiff')`). Its decoding:
`jaxlab.coditt5.decoding.greedy` and `beam_search` (`--beam` beams, scores `logp / length**alpha`);
the lean model's are Python loops written here with the same rules, `transformers`' are
`generate` (`num_beams`, `length_penalty=alpha`, `early_stopping="never"`: the bound jaxlab's
loop stops on). `--dropout RATE` trains all peers with dropout at the same places (embeddings,
attention weights, sublayer outputs, the feed-forward hidden layer, the final norms; default 0;
the configs train at 0.1).
Medians of alternating repeats, compile time apart, load average before and after, a
1-thread and an all-threads column per peer (`--threads both|1|all`, see
`jaxlab.core.benchmark`).

    python scripts/bench_coditt5.py --shape tiny --batch 16 --src 64 --tgt 64 --repeats 5
"""

from __future__ import annotations

import argparse
import dataclasses
import math

from jaxlab.core import benchmark, runtime

SETTING = benchmark.configure_threads()  # before jax and torch start their thread pools
ALLOCATOR = runtime.tune_host_allocator()  # as the `jaxlab` command does; PyTorch shares it
LOGITS = "jaxlab, logits head"
AUTO_ATTN = "jaxlab, autodiff attention"

import jax  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from jaxlab.coditt5 import convert, decoding, training  # noqa: E402
from jaxlab.coditt5.models import SHAPES, T5, T5Shape  # noqa: E402
from jaxlab.coditt5.tokenizer import EOS  # noqa: E402
from jaxlab.core import train as train_lib  # noqa: E402


def torch_t5(shape: T5Shape):
    import torch
    from torch import nn

    d, h, dk, ff = shape.d_model, shape.num_heads, shape.d_kv, shape.d_ff

    def bucket(rel, bidirectional, nb=shape.num_buckets, md=shape.max_distance):
        ret = torch.zeros_like(rel)
        if bidirectional:
            nb //= 2
            ret += (rel > 0).long() * nb
            n = rel.abs()
        else:
            n = (-rel).clamp(min=0)
        me = nb // 2
        large = me + (torch.log(n.float().clamp(min=1) / me) / math.log(md / me) * (nb - me)).long()
        return ret + torch.where(n < me, n, large.clamp(max=nb - 1))

    class RMS(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(d))

        def forward(self, x):
            return self.weight * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)

    class Attn(nn.Module):
        def __init__(self):
            super().__init__()
            self.q, self.k, self.v = (nn.Linear(d, h * dk, bias=False) for _ in range(3))
            self.o = nn.Linear(h * dk, d, bias=False)
            self.drop = nn.Dropout(shape.dropout_rate)

        def forward(self, x, kv, bias=None, mask=None, past=None):
            b = x.shape[0]
            sp = lambda t: t.view(b, -1, h, dk).transpose(1, 2)
            q, k, v = sp(self.q(x)), sp(self.k(kv)), sp(self.v(kv))
            if past is not None:
                k, v = torch.cat([past[0], k], 2), torch.cat([past[1], v], 2)
            s = q @ k.transpose(-1, -2) / math.sqrt(dk)
            if bias is not None:
                s = s + bias
            if mask is not None:
                s = s.masked_fill(~mask, torch.finfo(s.dtype).min)
            out = (self.drop(s.softmax(-1)) @ v).transpose(1, 2).reshape(b, -1, h * dk)
            return self.o(out), (k, v)

    class Layer(nn.Module):
        def __init__(self, cross):
            super().__init__()
            self.n1, self.sa = RMS(), Attn()
            self.cross = cross
            if cross:
                self.n2, self.ca = RMS(), Attn()
            self.n3 = RMS()
            self.wi, self.wo = nn.Linear(d, ff, bias=False), nn.Linear(ff, d, bias=False)
            self.drop = nn.Dropout(shape.dropout_rate)

        def forward(self, x, enc=None, bias=None, mask=None, cmask=None, past=None):
            y = self.n1(x)
            a, kv = self.sa(y, y, bias, mask, past)
            x = x + self.drop(a)
            if self.cross:
                x = x + self.drop(self.ca(self.n2(x), enc, None, cmask)[0])
            return x + self.drop(self.wo(self.drop(torch.relu(self.wi(self.n3(x)))))), kv

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.shared = nn.Embedding(shape.vocab_size, d)
            self.eb, self.db = nn.Embedding(shape.num_buckets, h), nn.Embedding(shape.num_buckets, h)
            self.enc = nn.ModuleList(Layer(False) for _ in range(shape.num_encoder_layers))
            self.dec = nn.ModuleList(Layer(True) for _ in range(shape.num_decoder_layers))
            self.en, self.dn = RMS(), RMS()
            self.drop = nn.Dropout(shape.dropout_rate)

        def encode(self, src):
            t = src.shape[1]
            pos = torch.arange(t)
            bias = self.eb(bucket(pos[None] - pos[:, None], True)).permute(2, 0, 1)[None]
            mask = (src > 0)[:, None, None]
            x = self.drop(self.shared(src))
            for layer in self.enc:
                x = layer(x, bias=bias, mask=mask)[0]
            return self.drop(self.en(x))

        def decode(self, tgt, enc, src, past=None, offset=0):
            t = tgt.shape[1]
            k = offset + t
            rel = torch.arange(k)[None] - (torch.arange(t)[:, None] + offset)
            bias = self.db(bucket(rel, False)).permute(2, 0, 1)[None]
            mask = (rel <= 0)[None, None]
            x, new = self.drop(self.shared(tgt)), []
            for i, layer in enumerate(self.dec):
                x, kv = layer(x, enc, bias, mask, (src > 0)[:, None, None], None if past is None else past[i])
                new.append(kv)
            return (self.drop(self.dn(x)) * d ** -0.5) @ self.shared.weight.T, new

    return Model()


def torch_state_dict(params, shape: T5Shape) -> dict:
    """jaxlab T5 parameters as a state dict of `torch_t5(shape)` (Dense kernels transposed)."""
    import torch

    t = lambda a: torch.from_numpy(np.array(a, np.float32))
    sd = {"shared.weight": t(params["shared"]["embedding"]),
          "eb.weight": t(params["encoder_relative_bias"]["rel_embedding"]),
          "db.weight": t(params["decoder_relative_bias"]["bias"]["rel_embedding"]),
          "en.weight": t(params["encoder_final_norm"]["scale"]), "dn.weight": t(params["decoder_final_norm"]["scale"])}
    for stack, n in (("enc", shape.num_encoder_layers), ("dec", shape.num_decoder_layers)):
        for i in range(n):
            q = params[f"{'encoder' if stack == 'enc' else 'decoder'}_{i}"]
            pre = f"{stack}.{i}."
            names = [("sa", "self_attention")] + ([("ca", "cross_attention")] if stack == "dec" else [])
            for tn, fn in names:
                for a, b in (("q", "query"), ("k", "key"), ("v", "value"), ("o", "out")):
                    sd[f"{pre}{tn}.{a}.weight"] = t(q[fn][b]["kernel"]).T
            sd[pre + "n1.weight"] = t(q["norm_self"]["scale"])
            sd[pre + "n3.weight"] = t(q["norm_ff"]["scale"])
            if stack == "dec":
                sd[pre + "n2.weight"] = t(q["norm_cross"]["scale"])
            sd[pre + "wi.weight"] = t(q["ff"]["fc1"]["kernel"]).T
            sd[pre + "wo.weight"] = t(q["ff"]["fc2"]["kernel"]).T
    return sd


def hf_state_dict(params, shape: T5Shape) -> dict:
    """jaxlab T5 parameters as a `T5ForConditionalGeneration` state dict (`convert.hf_t5_names`
    read backwards; `W_q` divided by `sqrt(d_kv)`, since T5 does not scale its attention logits)."""
    import torch

    sd = {}
    for name, path, transpose in convert.hf_t5_names(shape):
        a = params
        for key in path:
            a = a[key]
        a = np.array(a, np.float32)
        if path[-2:] == ("query", "kernel") and shape.attention_scale == "sqrt":
            a = a / math.sqrt(shape.d_kv)
        sd[name] = torch.from_numpy(a.T.copy() if transpose else a)
    for alias in ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "lm_head.weight"):
        sd[alias] = sd["shared.weight"]
    return sd


def torch_beam_search(model, src, beam_size: int, max_len: int, alpha: float):
    """Beam search over the lean model by the rules of `jaxlab.coditt5.decoding.beam_search`:
    `K` live and `K` finished hypotheses per input, the top `2K` of `K * V` candidates per step,
    scores `logp / length**alpha`, pad never generated, a stop once no live beam can beat the worst
    finished one at `max_len`. Returns `(tokens [B, K, max_len], scores [B, K])`, best first."""
    import torch
    import torch.nn.functional as F

    with torch.no_grad():
        neg = decoding.NEG
        b, k, n = src.shape[0], beam_size, max_len
        enc = model.encode(src).repeat_interleave(k, 0)
        src_k = src.repeat_interleave(k, 0)
        logp = torch.full((b, k), neg)
        logp[:, 0] = 0.0
        seqs = torch.zeros(b, k, 0, dtype=torch.long)
        fin_seqs, fin_scores = torch.zeros(b, k, n, dtype=torch.long), torch.full((b, k), neg)
        rows = torch.arange(b)[:, None] * k
        cur, past, i = torch.zeros(b * k, 1, dtype=torch.long), None, 0
        while i < n and bool(((logp / n ** alpha).amax(1) > fin_scores.amin(1)).any()):
            logits, past = model.decode(cur, enc, src_k, past, offset=i)
            logp_tok = logits[:, -1].float().log_softmax(-1)
            logp_tok[:, 0] = neg
            v = logp_tok.shape[-1]
            top_lp, top_idx = (logp[:, :, None] + logp_tok.view(b, k, v)).view(b, k * v).topk(2 * k, dim=1)
            beam, tok = top_idx // v, top_idx % v
            cand = torch.cat([seqs.gather(1, beam[:, :, None].expand(-1, -1, i)), tok[:, :, None]], 2)
            is_eos = tok == EOS
            scores = torch.cat([fin_scores, torch.where(is_eos, top_lp / (i + 1) ** alpha, neg)], 1)
            fin_scores, idx = scores.topk(k, dim=1)
            fin_seqs = torch.cat([fin_seqs, F.pad(cand, (0, n - i - 1))], 1)
            fin_seqs = fin_seqs.gather(1, idx[:, :, None].expand(-1, -1, n))
            logp, idx = torch.where(is_eos, neg, top_lp).topk(k, dim=1)
            seqs = cand.gather(1, idx[:, :, None].expand(-1, -1, i + 1))
            flat = (beam.gather(1, idx) + rows).view(-1)
            past = [(pk[flat], pv[flat]) for pk, pv in past]
            cur, i = seqs[:, :, -1].reshape(-1, 1), i + 1
        live = torch.where(logp > neg / 2, logp / max(i, 1) ** alpha, neg)
        scores, idx = torch.cat([fin_scores, live], 1).topk(k, dim=1)
        every = torch.cat([fin_seqs, F.pad(seqs, (0, n - i))], 1)
        return every.gather(1, idx[:, :, None].expand(-1, -1, n)).numpy(), scores.numpy()


def _ended(row) -> int:
    """The length of a row's tokens up to and including its first EOS."""
    hits = np.flatnonzero(np.asarray(row) == EOS)
    return int(hits[0]) + 1 if hits.size else len(row)


def agreement(ours, theirs) -> float:
    """The fraction of rows whose tokens up to their EOS are identical."""
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    return float(np.mean([np.array_equal(o[:_ended(o)], t[:_ended(t)]) for o, t in zip(ours, theirs)]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="tiny", choices=sorted(SHAPES))
    ap.add_argument("--vocab", type=int, default=4000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--src", type=int, default=64)
    ap.add_argument("--tgt", type=int, default=64)
    ap.add_argument("--decode-len", type=int, default=32)
    ap.add_argument("--beam", type=int, default=5, help="beams of the beam-search measurement (0: leave it out)")
    ap.add_argument("--alpha", type=float, default=1.0, help="beam search's length normalisation exponent")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--dropout", type=float, default=0.0,
                    help="dropout rate of the training steps (the configs train at 0.1, T5's rate)")
    ap.add_argument("--no-logits-head", dest="logits_head", action="store_false",
                    help="leave out the fourth training peer: jaxlab's step through the logits and token_loss "
                         "(make_loss_fn(fused_head=False)) instead of head_token_loss")
    ap.add_argument("--no-autodiff-attention", dest="autodiff_attention", action="store_false",
                    help="leave out the fifth training peer: jaxlab's step with autodiff through the attention "
                         "(T5Shape(attention_vjp='autodiff')) instead of attention_with_vjp")
    benchmark.add_threads_argument(ap)
    args = ap.parse_args()
    shape = T5Shape(vocab_size=args.vocab, dropout_rate=args.dropout, **SHAPES[args.shape])
    rng = np.random.default_rng(0)
    src = rng.integers(4, args.vocab, (args.batch, args.src)).astype(np.int32)
    labels = rng.integers(4, args.vocab, (args.batch, args.tgt)).astype(np.int32)

    # jaxlab: the engine's train step around the method's loss (no pads here)
    model = T5(shape)
    params = jax.jit(lambda: model.init(jax.random.key(0), src[:1], labels[:1]))()["params"]
    params_copy = jax.tree.map(np.array, params)  # the first step donates `params`
    state = train_lib.TrainState.create(params=params, tx=optax.adamw(1e-4))
    jstep = train_lib.make_train_step(training.make_loss_fn(shape), compiler_options=training.compiler_options())
    box = {"state": state}
    batch = {"src": src, "labels": labels}

    def jrun():
        box["state"], m = jstep(box["state"], batch, jax.random.key(0))
        jax.block_until_ready(m["loss"])

    compile_train = benchmark.time_call(jrun)
    train_peers = {"jaxlab": jrun}
    if args.logits_head:  # the same step with JAX differentiating token_loss of the logits
        lstep = train_lib.make_train_step(training.make_loss_fn(shape, fused_head=False),
                                          compiler_options=training.compiler_options())
        box["logits"] = train_lib.TrainState.create(params=params_copy, tx=optax.adamw(1e-4))

        def lrun():
            box["logits"], m = lstep(box["logits"], batch, jax.random.key(0))
            jax.block_until_ready(m["loss"])

        benchmark.time_call(lrun)
        train_peers[LOGITS] = lrun
    if args.autodiff_attention:  # the same step with JAX differentiating the attention cores
        ashape = dataclasses.replace(shape, attention_vjp="autodiff")
        astep = train_lib.make_train_step(training.make_loss_fn(ashape), compiler_options=training.compiler_options())
        box["auto"] = train_lib.TrainState.create(params=jax.tree.map(np.array, params_copy), tx=optax.adamw(1e-4))

        def arun():
            box["auto"], m = astep(box["auto"], batch, jax.random.key(0))
            jax.block_until_ready(m["loss"])

        benchmark.time_call(arun)
        train_peers[AUTO_ATTN] = arun
    greedy = lambda: jax.block_until_ready(decoding.greedy(box["state"].params, src, shape=shape,
                                                           max_len=args.decode_len))
    beam = lambda: jax.block_until_ready(decoding.beam_search(box["state"].params, src, shape=shape,
                                                              beam_size=args.beam, max_len=args.decode_len,
                                                              alpha=args.alpha))
    compile_dec = benchmark.time_call(greedy)
    compile_beam = benchmark.time_call(beam) if args.beam else None

    # PyTorch
    import torch

    tm = torch_t5(shape)
    opt = torch.optim.AdamW(tm.parameters(), lr=1e-4)
    ts, ty = torch.from_numpy(src).long(), torch.from_numpy(labels).long()
    ty_in = torch.cat([torch.zeros_like(ty[:, :1]), ty[:, :-1]], 1)

    from transformers import T5Config, T5ForConditionalGeneration

    hf = T5ForConditionalGeneration(T5Config(
        vocab_size=shape.vocab_size, d_model=shape.d_model, d_kv=shape.d_kv, d_ff=shape.d_ff,
        num_layers=shape.num_encoder_layers, num_decoder_layers=shape.num_decoder_layers, num_heads=shape.num_heads,
        relative_attention_num_buckets=shape.num_buckets, relative_attention_max_distance=shape.max_distance,
        dropout_rate=args.dropout, feed_forward_proj="relu", tie_word_embeddings=True, pad_token_id=0, eos_token_id=EOS,
        decoder_start_token_id=0)).train()
    hf_opt = torch.optim.AdamW(hf.parameters(), lr=1e-4)
    hf_mask = ts > 0

    def hfrun():
        hf_opt.zero_grad()
        hf(input_ids=ts, attention_mask=hf_mask, labels=ty).loss.backward()
        hf_opt.step()

    def trun():
        opt.zero_grad()
        enc = tm.encode(ts)
        logits, _ = tm.decode(ty_in, enc, ts)
        torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), ty.reshape(-1)).backward()
        opt.step()

    dm = torch_t5(shape).eval()  # decodes with jaxlab's weights, so both decode the same tokens

    @torch.no_grad()
    def tdec():
        # the stopping rule of jaxlab's greedy: pad never chosen; stop once every row has ended
        enc = dm.encode(ts)
        cur = torch.zeros(args.batch, 1, dtype=torch.long)
        past, out = None, []
        done = torch.zeros(args.batch, dtype=torch.bool)
        for i in range(args.decode_len):
            logits, past = dm.decode(cur, enc, ts, past, offset=i)
            logits[:, -1, 0] = -float("inf")
            cur = logits[:, -1].argmax(-1, keepdim=True)
            out.append(cur[:, 0])
            done |= cur[:, 0] == EOS
            if bool(done.all()):
                break
        return torch.stack(out, 1).numpy()

    # transformers' generate with jaxlab's weights and jaxlab's rules (pad never generated; beams
    # stop on the max_len bound); `max_length` counts the decoder start token
    hf_dec = T5ForConditionalGeneration(hf.config).eval()
    gen = dict(attention_mask=hf_mask, max_length=args.decode_len + 1, do_sample=False, suppress_tokens=[0])
    hf_greedy = torch.no_grad()(lambda: hf_dec.generate(ts, num_beams=1, **gen))
    hf_beam = torch.no_grad()(lambda: hf_dec.generate(ts, num_beams=args.beam, num_return_sequences=args.beam,
                                                      length_penalty=args.alpha, early_stopping="never", **gen))

    with benchmark.torch_threads(benchmark.peer_threads(SETTING)):
        print(benchmark.device_line())
        print(benchmark.allocator_line(ALLOCATOR))
        train_t = benchmark.alternate({**train_peers, "PyTorch": trun, "transformers": hfrun}, args.repeats)
        dm.load_state_dict(torch_state_dict(box["state"].params, shape), strict=True)
        hf_dec.load_state_dict(hf_state_dict(box["state"].params, shape), strict=False)
        ours = np.asarray(greedy()[0])
        theirs = tdec()
        steps = theirs.shape[1]
        same = {"PyTorch": agreement(ours, theirs), "transformers": agreement(ours, hf_greedy()[:, 1:])}
        dec_t = benchmark.alternate({"jaxlab": greedy, "PyTorch": tdec, "transformers": hf_greedy}, args.repeats)
        if args.beam:
            tbeam = lambda: torch_beam_search(dm, ts, args.beam, args.decode_len, args.alpha)
            ours_b, ours_s = (np.asarray(a) for a in beam())
            theirs_b, theirs_s = tbeam()
            hf_b = hf_beam()[:, 1:].numpy().reshape(args.batch, args.beam, -1)
            same_b = {"PyTorch": agreement(ours_b[:, 0], theirs_b[:, 0]),
                      "transformers": agreement(ours_b[:, 0], hf_b[:, 0])}
            score_gap = float(np.max(np.abs(ours_s - theirs_s)))
            beam_t = benchmark.alternate({"jaxlab": beam, "PyTorch": tbeam, "transformers": hf_beam}, args.repeats)

    print(f"shape {args.shape} (d {shape.d_model}, {shape.num_encoder_layers}+{shape.num_decoder_layers} layers), "
          f"vocab {args.vocab}, batch {args.batch}, src {args.src}, tgt {args.tgt}, decode {args.decode_len}")
    res = benchmark.Results()
    t = res.table("T5 training step and greedy decoding",
                  ["jaxlab", "PyTorch", "transformers"] + ([LOGITS] if args.logits_head else [])
                  + ([AUTO_ATTN] if args.autodiff_attention else []), unit="ms",
                  extras=["jaxlab compile (s)"])
    t.add(f"train step, AdamW ({args.batch * args.tgt} tokens)", train_t,
          **{"jaxlab compile (s)": f"{compile_train:.1f}"})
    t.add(f"greedy decode, KV cache (at most {args.batch * args.decode_len} tokens)", dec_t,
          **{"jaxlab compile (s)": f"{compile_dec:.1f}"})
    if args.beam:
        t.add(f"beam search, {args.beam} beams, KV cache ({args.batch} x {args.beam} rows, at most "
              f"{args.decode_len} steps)", beam_t, **{"jaxlab compile (s)": f"{compile_beam:.1f}"})
    res.note("PyTorch: the lean T5 above; transformers: T5ForConditionalGeneration of the same shape (its "
             f"default attention, the loss it computes from `labels`; `generate` for decoding). Dropout rate "
             f"{args.dropout:g} while training, at the same places in all three models (embeddings, attention "
             f"weights, each sublayer's output, the feed-forward hidden layer, the final norms); none while decoding.")
    res.note(f"Decoding: every peer decodes with the same weights (jaxlab's after the training repeats) and the "
             f"same rule (at most {args.decode_len} steps, pad never generated, stop once every row has emitted "
             f"EOS); the PyTorch loop ran {steps} steps; rows with tokens identical to jaxlab's: "
             + ", ".join(f"{k} {100 * v:.0f}%" for k, v in same.items()) + ".")
    if args.beam:
        res.note(f"Beam search: {args.beam} beams, scores logp / length**{args.alpha:g}, stop once no live beam can "
                 f"beat the worst finished one; top beams identical to jaxlab's: "
                 + ", ".join(f"{k} {100 * v:.0f}%" for k, v in same_b.items())
                 + f"; largest score difference to the lean PyTorch loop {score_gap:.1e}.")
    return res


if __name__ == "__main__":
    benchmark.run(main)
