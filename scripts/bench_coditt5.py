"""Benchmark: jaxlab's Flax T5 vs `transformers`' `T5ForConditionalGeneration` and vs a lean
PyTorch T5 of the same shape (written the way `transformers`' `modeling_t5.py` computes it: ReLU
FF, RMSNorm, relative bias from layer 0, tied embeddings, without its generality), on the same
random batch: one AdamW training step (tokens/s) and greedy decoding with a key/value cache
(generated tokens/s; jaxlab and the lean model, same weights). jaxlab's step is the engine's
`train.make_train_step` around `jaxlab.coditt5.training.make_loss_fn`, compiled as `jaxlab
coditt5` compiles it (the tied output layer and the loss through `training.head_token_loss`'s
hand-written VJP, the attention cores through `jaxlab.nn.attention.attention_with_vjp`'s); a
fourth training peer, left out with `--no-logits-head`, is the same step through the logits and
`training.token_loss`, and a fifth, left out with `--no-autodiff-attention`, the same step with
JAX differentiating the attention (`T5Shape(attention_vjp='autodiff')`). Its decoding:
`jaxlab.coditt5.decoding.greedy`.
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

from jaxlab.coditt5 import decoding, training  # noqa: E402
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
            out = (s.softmax(-1) @ v).transpose(1, 2).reshape(b, -1, h * dk)
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

        def encode(self, src):
            t = src.shape[1]
            pos = torch.arange(t)
            bias = self.eb(bucket(pos[None] - pos[:, None], True)).permute(2, 0, 1)[None]
            mask = (src > 0)[:, None, None]
            x = self.shared(src)
            for layer in self.enc:
                x = layer(x, bias=bias, mask=mask)[0]
            return self.en(x)

        def decode(self, tgt, enc, src, past=None, offset=0):
            t = tgt.shape[1]
            k = offset + t
            rel = torch.arange(k)[None] - (torch.arange(t)[:, None] + offset)
            bias = self.db(bucket(rel, False)).permute(2, 0, 1)[None]
            mask = (rel <= 0)[None, None]
            x, new = self.shared(tgt), []
            for i, layer in enumerate(self.dec):
                x, kv = layer(x, enc, bias, mask, (src > 0)[:, None, None], None if past is None else past[i])
                new.append(kv)
            return (self.dn(x) * d ** -0.5) @ self.shared.weight.T, new

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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="tiny", choices=sorted(SHAPES))
    ap.add_argument("--vocab", type=int, default=4000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--src", type=int, default=64)
    ap.add_argument("--tgt", type=int, default=64)
    ap.add_argument("--decode-len", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-logits-head", dest="logits_head", action="store_false",
                    help="leave out the fourth training peer: jaxlab's step through the logits and token_loss "
                         "(make_loss_fn(fused_head=False)) instead of head_token_loss")
    ap.add_argument("--no-autodiff-attention", dest="autodiff_attention", action="store_false",
                    help="leave out the fifth training peer: jaxlab's step with autodiff through the attention "
                         "(T5Shape(attention_vjp='autodiff')) instead of attention_with_vjp")
    benchmark.add_threads_argument(ap)
    args = ap.parse_args()
    shape = T5Shape(vocab_size=args.vocab, dropout_rate=0.0, **SHAPES[args.shape])
    rng = np.random.default_rng(0)
    src = rng.integers(4, args.vocab, (args.batch, args.src)).astype(np.int32)
    labels = rng.integers(4, args.vocab, (args.batch, args.tgt)).astype(np.int32)

    # jaxlab: the engine's train step around the method's loss (no pads here, dropout 0)
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

    def _ended(row):  # tokens up to and including the first EOS
        hits = np.flatnonzero(np.asarray(row) == EOS)
        return int(hits[0]) + 1 if hits.size else len(row)
    compile_dec = benchmark.time_call(greedy)

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
        dropout_rate=0.0, feed_forward_proj="relu", tie_word_embeddings=True, pad_token_id=0, eos_token_id=EOS,
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

    with benchmark.torch_threads(benchmark.peer_threads(SETTING)):
        print(benchmark.device_line())
        print(benchmark.allocator_line(ALLOCATOR))
        train_t = benchmark.alternate({**train_peers, "PyTorch": trun, "transformers": hfrun}, args.repeats)
        dm.load_state_dict(torch_state_dict(box["state"].params, shape), strict=True)
        ours = np.asarray(greedy()[0])
        theirs = tdec()
        steps = theirs.shape[1]
        same = float(np.mean([np.array_equal(ours[r, :_ended(ours[r])], theirs[r, :_ended(theirs[r])])
                              for r in range(args.batch)]))
        dec_t = benchmark.alternate({"jaxlab": greedy, "PyTorch": tdec}, args.repeats)

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
    res.note("PyTorch: the lean T5 above; transformers: T5ForConditionalGeneration of the same shape (its "
             "default attention, dropout 0, the loss it computes from `labels`), trained only.")
    res.note(f"Decoding: both peers decode with the same weights (jaxlab's after the training repeats) and the "
             f"same rule (at most {args.decode_len} steps, stop once every row has emitted EOS); the PyTorch loop "
             f"ran {steps} steps, and {100 * same:.0f}% of rows decoded identical tokens.")
    return res


if __name__ == "__main__":
    benchmark.run(main)
