"""Attacks: epsilon balls, the [0, 1] range, loss increase, FGSM's closed form, C&W, adaptive."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxlab.mhui import attacks, configs, rng

B, K = 32, 10


def _params(seed=0):
    r = np.random.default_rng(seed)
    return {"w1": jnp.asarray(r.normal(size=(64, 32)) / 4.0, jnp.float32),
            "w2": jnp.asarray(r.normal(size=(32, K)) / 2.0, jnp.float32)}


def _logits(params, x):
    h = jnp.tanh(x.reshape(x.shape[0], -1) @ params["w1"])
    return h @ params["w2"]


def _loss(params, x, y):
    return optax.softmax_cross_entropy_with_integer_labels(_logits(params, x), y)


@pytest.fixture(scope="module")
def data():
    x = jnp.asarray(np.random.default_rng(1).uniform(size=(B, 8, 8, 1)), jnp.float32)
    params = _params()
    y = jnp.argmax(_logits(params, x), -1)  # attack the model's own predictions
    return params, x, y


def test_fgsm_is_eps_sign_grad_on_interior_points(data):
    params, _, y = data
    x = jnp.asarray(np.random.default_rng(2).uniform(0.3, 0.7, size=(B, 8, 8, 1)), jnp.float32)
    eps = 0.1
    adv = jax.jit(lambda p, x, y: attacks.fgsm(functools.partial(_loss, p), x, y, eps))(params, x, y)
    g = jax.grad(lambda xx: _loss(params, xx, y).sum())(x)
    np.testing.assert_allclose(np.asarray(adv - x), eps * np.sign(np.asarray(g)), atol=1e-6)
    assert np.mean(np.asarray(g) != 0) > 0.99


def test_fgsm_clips_to_unit_range(data):
    params, x, y = data
    adv = attacks.fgsm(functools.partial(_loss, params), x, y, 0.3)
    assert float(adv.min()) >= 0.0 and float(adv.max()) <= 1.0


@pytest.mark.parametrize("name,eps", [("fgsm", 0.05), ("bim", 0.05), ("pgd_linf", 0.05), ("pgd_l2", 0.5)])
def test_attacks_respect_eps_range_and_raise_loss(data, name, eps):
    params, x, y = data
    attack = attacks.make_attack(name, eps=eps, num_steps=10)
    run = jax.jit(lambda p, x, y, k: attack(functools.partial(_loss, p), x, y, k))
    adv = run(params, x, y, rng.key(3))
    d = np.asarray(adv - x).reshape(B, -1)
    if name == "pgd_l2":
        assert np.linalg.norm(d, axis=1).max() <= eps + 1e-5
    else:
        assert np.abs(d).max() <= eps + 1e-6
    assert float(adv.min()) >= 0.0 and float(adv.max()) <= 1.0
    clean, attacked = np.asarray(_loss(params, x, y)), np.asarray(_loss(params, adv, y))
    assert attacked.mean() > clean.mean() + 0.1
    assert np.mean(attacked > clean) > 0.9


def test_pgd_stronger_than_fgsm_and_random_start_differs(data):
    params, x, y = data
    f = functools.partial(_loss, params)
    l_fgsm = _loss(params, attacks.fgsm(f, x, y, 0.05), y).mean()
    l_pgd = _loss(params, attacks.pgd(f, x, y, rng.key(0), eps=0.05, step_size=0.0125, num_steps=20), y).mean()
    assert float(l_pgd) >= float(l_fgsm) - 1e-4
    a = attacks.pgd(f, x, y, rng.key(0), eps=0.05, step_size=0.01, num_steps=0)
    b = attacks.pgd(f, x, y, rng.key(1), eps=0.05, step_size=0.01, num_steps=0)
    assert np.abs(np.asarray(a - x)).max() <= 0.05 + 1e-6 and not np.allclose(a, b)
    with pytest.raises(ValueError, match="key"):
        attacks.pgd(f, x, y, None, eps=0.05, step_size=0.01, num_steps=1)
    with pytest.raises(ValueError, match="norm"):
        attacks.pgd(f, x, y, None, eps=0.05, step_size=0.01, num_steps=1, norm="l1", random_start=False)


def test_cw_l2_finds_small_misclassifying_perturbations(data):
    params, x, y = data
    run = jax.jit(lambda p, x, y: attacks.cw_l2(functools.partial(_logits, p), x, y, binary_steps=4,
                                          num_steps=50, learning_rate=0.05))
    adv = run(params, x, y)
    assert float(adv.min()) >= 0.0 and float(adv.max()) <= 1.0
    pred = np.asarray(jnp.argmax(_logits(params, adv), -1))
    changed = np.any(np.asarray(adv != x).reshape(B, -1), axis=1)
    # every changed input is misclassified; unchanged ones are failures left as they were
    assert np.all(pred[changed] != np.asarray(y)[changed])
    assert changed.mean() > 0.8
    # C&W perturbations are smaller than the L2 size of a successful FGSM at eps 0.1
    l2_cw = np.linalg.norm(np.asarray(adv - x).reshape(B, -1), axis=1)[changed]
    assert np.median(l2_cw) < 0.1 * 8


def test_adaptive_attack_lowers_detector_score(data):
    params, x, y = data

    def score(p, xx):  # a toy detector: entropy of the prediction (high = adversarial)
        pr = jax.nn.softmax(_logits(p, xx))
        return -jnp.sum(pr * jnp.log(pr + 1e-12), -1)

    def run(weight):
        loss = attacks.adaptive_loss(functools.partial(_loss, params), functools.partial(score, params), weight)
        return attacks.pgd(loss, x, y, rng.key(0), eps=0.1, step_size=0.02, num_steps=20)

    plain, adaptive = run(0.0), run(5.0)
    assert float(score(params, adaptive).mean()) < float(score(params, plain).mean())


def test_attack_sets_and_set_keys():
    cfg = configs.get_config("default")
    sets = attacks.attack_sets(cfg)
    assert ("mhui", "pgd_l2", 2.0) in sets and ("prior_net", "cw_l2", 0.0) in sets
    # 3 networks x (3 L-inf attacks x 3 eps + PGD-L2 x 3 eps + C&W)
    assert len(sets) == 3 * (3 * 3 + 3 + 1)
    cfg.baselines.ensemble_size, cfg.baselines.prior_net = 0, False
    assert {t for t, _, _ in attacks.attack_sets(cfg)} == {"mhui"}
    for args in [("mhui", "fgsm", 0.05, None), ("ensemble", "cw_l2", 0.0, None), ("mhui", "adaptive", 0.1, 10.0)]:
        assert attacks.parse_set_key(attacks.set_key(*args)) == args
    assert attacks.set_key("mhui", "adaptive", 0.1, 10.0) == "mhui__adaptive__0.1__w10"


def test_batched_attack_pads_the_last_batch_and_keys_each_batch():
    x = np.arange(10, dtype=np.float32).reshape(10, 1)
    y = np.arange(10, dtype=np.int32)
    seen = []

    def fn(xb, yb, key):
        seen.append((xb.shape, int(jax.random.randint(key, (), 0, 1 << 30))))
        return xb * 2.0 + yb[:, None]

    out = attacks._batched(fn, x, y, jax.random.key(0), batch_size=4)
    np.testing.assert_array_equal(out, x * 2.0 + y[:, None])  # padding rows dropped, order kept
    assert [s for s, _ in seen] == [(4, 1)] * 3  # one shape: one compile
    assert len({k for _, k in seen}) == 3  # every batch has its own key
