"""The Flax T5: bucket function by hand, T5-base parameter count, shapes, dropout, cached decoding
against uncached decoding and against a plain Python greedy loop."""

import dataclasses
import importlib.util
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.coditt5 import decoding
from jaxlab.coditt5.models import SHAPES, T5, T5Shape, shifted_right
from jaxlab.nn.attention import relative_position_bucket


def test_relative_position_buckets_hand_worked():
    r = jnp.array([0, -1, 1, -7, -8, -20, -200, 200, 20])
    # bidirectional, 32 buckets (16 a side, 8 exact), max distance 128:
    # -20: 8 + floor(log(20/8) / log(128/8) * 8) = 8 + floor(2.64) = 10; 20 -> 16 + 10
    want = [0, 1, 17, 7, 8, 10, 15, 31, 26]
    assert relative_position_bucket(r, bidirectional=True).tolist() == want
    # causal: 32 buckets, 16 exact; -20: 16 + floor(log(20/16) / log(128/16) * 16) = 16 + 1; future -> 0
    rc = jnp.array([0, -1, -15, -16, -20, -127, -1000, 5])
    assert relative_position_bucket(rc, bidirectional=False).tolist() == [0, 1, 15, 16, 17, 31, 31, 0]


def _count(shape):
    abstract = jax.eval_shape(lambda: T5(shape).init(jax.random.key(0), jnp.ones((1, 4), jnp.int32),
                                                     jnp.ones((1, 4), jnp.int32)))
    return sum(int(np.prod(a.shape)) for a in jax.tree.leaves(abstract["params"]))


def test_base_shape_has_t5_base_parameter_count():
    # t5-base (vocabulary 32128, tied) has 222,903,552 parameters; CodeT5-base's 32,100 ids give 28 x 768 fewer
    assert _count(T5Shape(vocab_size=32128, **SHAPES["base"])) == 222_903_552
    assert _count(T5Shape(vocab_size=32100, **SHAPES["base"])) == 222_903_552 - 28 * 768


SHAPE = T5Shape(vocab_size=40, dropout_rate=0.1, **SHAPES["tiny"])
SRC = jnp.array([[5, 6, 7, 8, 9, 1, 0, 0], [9, 10, 11, 1, 0, 0, 0, 0], [12, 13, 14, 15, 16, 17, 18, 1]])


@pytest.fixture(scope="module")
def params():
    p = jax.jit(lambda: T5(SHAPE).init(jax.random.key(0), SRC, SRC)["params"])()
    # a peaked output layer so that decoding is not all near-ties
    return jax.tree.map(lambda a: a * 3.0 if a.ndim == 2 and a.shape[0] == 40 else a, p)


def test_shapes_and_dropout(params):
    tgt = jnp.array([[3, 4, 1], [5, 1, 0], [6, 7, 8]])
    fwd = jax.jit(lambda p, key, det: T5(SHAPE).apply({"params": p}, SRC, shifted_right(tgt), deterministic=det,
                                                      rngs={"dropout": key}), static_argnums=2)
    out = fwd(params, jax.random.key(1), True)
    assert out.shape == (3, 3, 40) and out.dtype == jnp.float32
    again = fwd(params, jax.random.key(2), True)
    dropped = fwd(params, jax.random.key(1), False)
    assert np.array_equal(out, again) and not np.allclose(out, dropped)


def test_gated_ff_and_untied_head_shapes():
    shape = dataclasses.replace(SHAPE, feed_forward="gated-gelu", tie_embeddings=False)
    p = jax.eval_shape(lambda: T5(shape).init(jax.random.key(0), SRC, SRC)["params"])
    assert set(p["decoder_0"]["ff"]) == {"wi_0", "wi_1", "wo"} and "lm_head" in p
    assert jax.eval_shape(lambda q: T5(shape).apply({"params": q}, SRC, SRC), p).shape == (3, 8, 40)


def _python_greedy(params, src, max_len, shape=SHAPE):
    """Uncached reference: rerun the whole model on the prefix each step and take the argmax."""
    fwd = jax.jit(lambda p, s, t: T5(shape).apply({"params": p}, s, t))
    out = np.zeros((src.shape[0], max_len), np.int32)
    done = np.zeros(src.shape[0], bool)
    for i in range(max_len):
        logits = np.array(fwd(params, src, shifted_right(jnp.asarray(out))))[:, i]
        logits[:, 0] = -np.inf
        tok = np.where(done, 0, logits.argmax(-1))
        out[:, i] = tok
        done |= tok == 1
    return out


def test_cached_greedy_equals_python_greedy_loop(params):
    tokens, scores = decoding.greedy(params, SRC, shape=SHAPE, max_len=10)
    assert np.array_equal(np.asarray(tokens), _python_greedy(params, SRC, 10))
    # the score is the sum of the chosen tokens' log-probabilities: the independent teacher-forced
    # scorer's mean times the number of tokens (EOS included, the pads after it not)
    n = np.sum(np.asarray(tokens) != 0, axis=1)
    mean = decoding.sequence_scores(params, SRC, tokens, shape=SHAPE)
    np.testing.assert_allclose(np.asarray(scores), np.asarray(mean) * n, rtol=1e-5, atol=1e-4)
    u_tokens, u_scores = decoding.greedy(params, SRC, shape=SHAPE, max_len=10, use_cache=False)
    assert np.array_equal(np.asarray(u_tokens), np.asarray(tokens))
    np.testing.assert_allclose(np.asarray(u_scores), np.asarray(scores), atol=1e-5)


def test_greedy_stops_rows_at_their_eos():
    """Rows that end at different steps: pads after each row's EOS, the others run to max_len,
    scores still the independent rescoring (an untied head whose EOS column copies token 11's,
    slightly larger, so that EOS wins exactly where token 11 would)."""
    shape = dataclasses.replace(SHAPE, tie_embeddings=False)
    p = jax.jit(lambda: T5(shape).init(jax.random.key(0), SRC, SRC)["params"])()
    p = jax.tree.map(lambda a: a * 3.0 if a.ndim == 2 and 40 in a.shape else a, p)
    w = p["lm_head"]["kernel"]
    p = {**p, "lm_head": {"kernel": w.at[:, 1].set(w[:, 11] * 1.02)}}
    tokens, scores = decoding.greedy(p, SRC, shape=shape, max_len=10)
    tokens = np.asarray(tokens)
    assert np.array_equal(tokens, _python_greedy(p, SRC, 10, shape))
    ended = (tokens == 1).any(axis=1)
    assert ended.any() and not ended.all()  # the case this test is for
    for row in tokens[ended]:
        stop = int(np.argmax(row == 1))
        assert stop < 9 and np.all(row[stop + 1:] == 0)
    n = np.sum(tokens != 0, axis=1)
    mean = decoding.sequence_scores(p, SRC, jnp.asarray(tokens), shape=shape)
    np.testing.assert_allclose(np.asarray(scores), np.asarray(mean) * n, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("shape,k,chunk", [((4, 10000), 10, None), ((2, 3, 997), 4, 16), ((5, 640), 3, 8),
                                           ((3, 50), 5, None)])
def test_chunked_top_k_equals_lax_top_k(shape, k, chunk):
    """Values and indices equal `jax.lax.top_k`'s, ties included (to the lower index): duplicated
    maxima in two chunks, a row of one repeated value, -inf entries, a length with no divisor (the
    padded path) and a row too short to chunk."""
    rng = np.random.default_rng(sum(shape))
    x = rng.normal(size=shape).astype(np.float32)
    n = shape[-1]
    x[..., 3], x[..., n - 2] = 8.0, 9.0  # the last chunk's maximum ranks first
    kth = np.sort(x, axis=-1)[..., -k]
    x[..., 1] = x[..., n - 1] = kth  # a tie at the k-th place: index 1 wins, though its chunk ranks later
    x[..., n // 2] = x[..., n // 2 + 1] = 9.0  # and a tie at the top
    x.reshape(-1, n)[0] = 1.5  # every entry equal
    x.reshape(-1, n)[-1, : n // 3] = -np.inf
    want_v, want_i = jax.lax.top_k(jnp.asarray(x), k)
    got_v, got_i = jax.jit(lambda a: decoding.top_k(a, k, chunk))(x)
    np.testing.assert_array_equal(np.asarray(got_v), np.asarray(want_v))
    np.testing.assert_array_equal(np.asarray(got_i), np.asarray(want_i))


def test_cached_beam_equals_uncached_beam(params):
    a_tok, a_sc = decoding.beam_search(params, SRC, shape=SHAPE, beam_size=3, max_len=10)
    b_tok, b_sc = decoding.beam_search(params, SRC, shape=SHAPE, beam_size=3, max_len=10, use_cache=False)
    assert np.array_equal(np.asarray(a_tok), np.asarray(b_tok))
    np.testing.assert_allclose(a_sc, b_sc, atol=1e-5)
    assert np.all(np.diff(np.asarray(a_sc), axis=1) <= 1e-6)  # best first
    # each returned score is the mean log-likelihood of its tokens (alpha = 1), rescored independently
    for k in range(3):
        lab = np.asarray(a_tok[:, k])
        ends = (lab == 1).any(axis=1)
        rescored = decoding.sequence_scores(params, SRC, jnp.asarray(lab), shape=SHAPE)
        np.testing.assert_allclose(np.asarray(rescored)[ends], np.asarray(a_sc[:, k])[ends], atol=1e-4)


def _bench_module():
    """`scripts/bench_coditt5.py` as a module (its PyTorch T5 and beam search are the references)."""
    path = pathlib.Path(__file__).resolve().parents[2] / "scripts" / "bench_coditt5.py"
    spec = importlib.util.spec_from_file_location("bench_coditt5", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_forward_equals_the_pytorch_t5_of_the_benchmark():
    """The Flax T5 against the benchmark's independent PyTorch T5 (HF `modeling_t5.py` style) with the
    same weights: logits within 1e-4 (skipped without torch, which is in the bench extra)."""
    torch = pytest.importorskip("torch")
    bench = _bench_module()
    shape = dataclasses.replace(SHAPE, dropout_rate=0.0)
    p = jax.jit(lambda: T5(shape).init(jax.random.key(3), SRC, SRC)["params"])()
    tm = bench.torch_t5(shape).eval()
    sd = bench.torch_state_dict(p, shape)
    tm.load_state_dict(sd, strict=True)
    tgt_in = jnp.array([[0, 3, 4, 5, 6], [0, 7, 1, 0, 0], [0, 8, 9, 10, 11]])
    ours = jax.jit(lambda q: T5(shape).apply({"params": q}, SRC, tgt_in))(p)
    with torch.no_grad():
        ts = torch.from_numpy(np.array(SRC)).long()
        theirs = tm.decode(torch.from_numpy(np.array(tgt_in)).long(), tm.encode(ts), ts)[0].numpy()
    np.testing.assert_allclose(np.asarray(ours), theirs, atol=1e-4, rtol=1e-4)


def test_beam_search_equals_the_pytorch_loop_of_the_benchmark(params):
    """`beam_search` against the benchmark's beam search over its PyTorch T5, written separately
    with the same rules (top 2K of K V, K finished, the max_len bound): every hypothesis, in
    order, and its score (skipped without torch)."""
    torch = pytest.importorskip("torch")
    bench = _bench_module()
    shape = dataclasses.replace(SHAPE, dropout_rate=0.0)
    # EOS's embedding (also the tied head's row) copies that of a token the beams emit, slightly
    # larger, so that hypotheses end at different steps
    plain = np.asarray(decoding.beam_search(params, SRC, shape=shape, beam_size=3, max_len=7)[0])
    t = int(np.argmax(np.bincount(plain[:, 0, 2:].ravel(), minlength=40)[2:])) + 2
    emb = params["shared"]["embedding"]
    p = {**params, "shared": {"embedding": emb.at[1].set(emb[t] * 1.02)}}
    tm = bench.torch_t5(shape).eval()
    tm.load_state_dict(bench.torch_state_dict(p, shape), strict=True)
    for k, alpha in ((3, 1.0), (4, 0.5), (4, 0.0)):
        ours, ours_s = decoding.beam_search(p, SRC, shape=shape, beam_size=k, max_len=7, alpha=alpha)
        theirs, theirs_s = bench.torch_beam_search(tm, torch.from_numpy(np.array(SRC)).long(), k, 7, alpha)
        ended = (np.asarray(ours) == 1).any(axis=-1)
        assert ended.any() and not ended.all()  # finished and unfinished hypotheses both compete
        np.testing.assert_array_equal(np.asarray(ours), theirs)
        np.testing.assert_allclose(np.asarray(ours_s), theirs_s, rtol=1e-5, atol=1e-5)


def test_token_loss_against_log_softmax_and_argmax():
    """The CPU-friendly head (iota pick, max comparison, compiled with YNNPACK reductions)
    against a float64 NumPy log-softmax and arg-max, pads excluded, values and gradient."""
    from jaxlab.coditt5 import training

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 7, 50)).astype(np.float32) * 3
    labels = rng.integers(1, 50, (3, 7)).astype(np.int32)
    labels[1, 4:] = 0  # pads
    labels[2, 0] = int(np.argmax(logits[2, 0]))  # at least one correct token
    f = jax.jit(training.token_loss, compiler_options=training.compiler_options())
    total, correct, n = (float(v) for v in f(logits, labels))
    x = logits.astype(np.float64)
    logp = x - x.max(-1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
    valid = labels != 0
    ce = -np.take_along_axis(logp, labels[..., None], -1)[..., 0]
    assert n == valid.sum()
    np.testing.assert_allclose(total, ce[valid].sum(), rtol=1e-5)
    assert correct == ((x.argmax(-1) == labels) & valid).sum() >= 1
    grad = jax.grad(lambda lg: training.token_loss(lg, labels)[0])(logits)
    expected = (np.exp(logp) - np.eye(50)[labels]) * valid[..., None]
    np.testing.assert_allclose(np.asarray(grad), expected, atol=1e-5)


def test_fused_head_loss_equals_token_loss_of_the_logits():
    """`head_token_loss`'s hand-written VJP against autodiff of `token_loss(features @ head.T)`:
    sums, the correct-token count, and the gradients of features and head, pads included."""
    from jaxlab.coditt5 import training

    rng = np.random.default_rng(1)
    features = jnp.asarray(rng.normal(size=(3, 7, 16)), jnp.float32)
    head = jnp.asarray(rng.normal(size=(50, 16)), jnp.float32)
    labels = rng.integers(1, 50, (3, 7)).astype(np.int32)
    labels[1, 4:] = 0
    labels[2, 0] = int(np.argmax(np.asarray(features[2, 0] @ head.T)))
    labels = jnp.asarray(labels)
    fused = training.head_token_loss(features, head, labels)
    plain = training.token_loss(features @ head.T, labels)
    np.testing.assert_allclose(fused[0], plain[0], rtol=1e-6)
    assert float(fused[1]) == float(plain[1]) >= 1 and float(fused[2]) == float(plain[2]) == 18
    g_fused = jax.grad(lambda f, h: 0.7 * training.head_token_loss(f, h, labels)[0], argnums=(0, 1))(features, head)
    g_plain = jax.grad(lambda f, h: 0.7 * training.token_loss(f @ h.T, labels)[0], argnums=(0, 1))(features, head)
    for a, b in zip(g_fused, g_plain, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert np.all(np.asarray(g_fused[0])[1, 4:] == 0)  # pads pass no gradient


def test_fused_head_training_loss_equals_the_logits_path(params):
    # the whole loss of a step, dropout on: same value and gradients either way
    from jaxlab.coditt5 import training

    labels = jnp.array([[3, 4, 1, 0], [5, 6, 7, 1], [8, 1, 0, 0]])
    batch = {"src": SRC, "labels": labels}
    key = jax.random.key(3)

    def value_and_grad(fused):
        loss_fn = training.make_loss_fn(SHAPE, fused_head=fused)
        return jax.jit(jax.value_and_grad(lambda p: loss_fn(p, None, batch, key)[0]))(params)

    (v_fused, g_fused), (v_plain, g_plain) = value_and_grad(True), value_and_grad(False)
    np.testing.assert_allclose(v_fused, v_plain, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(g_fused), jax.tree.leaves(g_plain), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="tied head"):
        T5(dataclasses.replace(SHAPE, tie_embeddings=False)).init(jax.random.key(0), SRC, SRC,
                                                                  method=T5.head_features)
