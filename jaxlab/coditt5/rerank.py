"""Decoding a test set and reranking (spec section 2.4).

For each input the edit model A and the generation model B each give `k` beam hypotheses; a
hypothesis y is scored by both models as the mean token log-likelihood s(y) (`decoding.sequence_scores`;
for the edit model y is first written as `plan(x -> y) <s> y`), and the reranked prediction is
`argmax_y s_A(y) + s_B(y)` over the hypotheses of the model being reranked.
"""

from __future__ import annotations

import numpy as np

from jaxlab.coditt5 import data, decoding, editplan
from jaxlab.coditt5.tokenizer import EOS, PAD, Tokenizer

__all__ = ["decode_examples", "score_targets", "targets_of", "bleu_scorer"]


def _src_array(tok: Tokenizer, examples: list[dict], length: int) -> np.ndarray:
    src = np.full((len(examples), length), PAD, np.int32)
    for r, ex in enumerate(examples):
        ids, _ = data.encode_example(tok, ex["source"], ex.get("context", []), [])
        ids = ids[:length - 1] + [EOS] if len(ids) > length else ids
        src[r, :len(ids)] = ids
    return src


def targets_of(tok: Tokenizer, ids: np.ndarray, fmt: str) -> list[str]:
    """The target tokens of one decoded id row (after the plan for the 'plan' format)."""
    tokens = tok.decode(ids)
    return editplan.split_output(tokens)[1] if fmt == "plan" else tokens


def decode_examples(params, shape, tok: Tokenizer, examples: list[dict], fmt: str, *, src_len: int,
                    max_len: int, beam_size: int, alpha: float, batch_size: int) -> tuple[list, np.ndarray]:
    """Beam search over `examples` in fixed-size batches (one compile): `(targets [N][K] token lists,
    scores [N, K])`."""
    hyps, scores = [], []
    for i in range(0, len(examples), batch_size):
        chunk = examples[i:i + batch_size]
        src = _src_array(tok, chunk + [chunk[0]] * (batch_size - len(chunk)), src_len)
        seqs, sc = decoding.beam_search(params, src, shape=shape, beam_size=beam_size, max_len=max_len,
                                        alpha=alpha)
        seqs, sc = np.asarray(seqs)[:len(chunk)], np.asarray(sc)[:len(chunk)]
        hyps += [[targets_of(tok, row, fmt) for row in beams] for beams in seqs]
        scores.append(sc)
    return hyps, np.concatenate(scores) if scores else np.zeros((0, beam_size))


def score_targets(params, shape, tok: Tokenizer, examples: list[dict], hyps: list[list], fmt: str, *,
                  src_len: int, tgt_len: int, batch_size: int) -> np.ndarray:
    """Mean token log-likelihood `[N, K]` of each hypothesis target under a model of format `fmt`."""
    rows, labels = [], []
    for ex, beams in zip(examples, hyps):
        for y in beams:
            out = editplan.build_output(ex["source"], y) if fmt == "plan" else y
            _, ids = data.encode_example(tok, [], [], out)
            ids = ids[:tgt_len]
            lab = np.full(tgt_len, PAD, np.int32)
            lab[:len(ids)] = ids
            rows.append(ex)
            labels.append(lab)
    out = np.zeros(len(rows), np.float32)
    for i in range(0, len(rows), batch_size):
        chunk = rows[i:i + batch_size]
        lab = np.stack(labels[i:i + batch_size])
        pad = batch_size - len(chunk)
        src = _src_array(tok, chunk + [chunk[0]] * pad, src_len)
        lab = np.concatenate([lab, np.tile(lab[:1], (pad, 1))]) if pad else lab
        out[i:i + len(chunk)] = np.asarray(decoding.sequence_scores(params, src, lab, shape=shape))[:len(chunk)]
    k = len(hyps[0]) if hyps else 0
    return out.reshape(len(hyps), k)


def bleu_scorer(shape, tok: Tokenizer, examples: list[dict], fmt: str, *, src_len: int, max_len: int,
                beam_size: int, alpha: float, batch_size: int, comment: bool = False):
    """`state -> BLEU` (x100, sentence-level averaged, of the top beam's target) on `examples`: the
    score of `core.train.restore_best` for selection on validation BLEU (spec 2.3: early stopping
    on validation BLEU with beam 5; the released code scores the whole output, plan included, we
    score the target, which is what the test metrics see; `comment`: of subtokenised comments)."""
    from jaxlab.coditt5.metrics import corpus_metrics

    sources, refs = [ex["source"] for ex in examples], [ex["target"] for ex in examples]

    def valid_bleu(state) -> float:
        h, _ = decode_examples(state.params, shape, tok, examples, fmt, src_len=src_len, max_len=max_len,
                               beam_size=beam_size, alpha=alpha, batch_size=batch_size)
        return corpus_metrics(sources, [b[0] for b in h], refs, comment=comment)["bleu"]

    return valid_bleu
