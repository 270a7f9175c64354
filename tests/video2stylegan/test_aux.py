import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from jaxlab.core import train as train_lib
from jaxlab.video2stylegan import auxnets, configs, encoder, faces, gan, metrics, run


def test_landmark_nme_on_hand_made_landmarks():
    k = len(faces.LANDMARK_NAMES)
    r_out, l_out = metrics.EYE_OUTER
    target = np.zeros((2, k, 2))
    target[0, r_out], target[0, l_out] = (10.0, 20.0), (20.0, 20.0)  # inter-ocular distance 10
    target[1, r_out], target[1, l_out] = (0.0, 0.0), (3.0, 4.0)  # inter-ocular distance 5
    pred = target.copy()
    pred[0] += (3.0, 4.0)  # every landmark 5 px off: NME 5 / 10
    pred[1, 0] += (0.0, 10.0)  # one landmark 10 px off: NME 10 / K / 5
    np.testing.assert_allclose(metrics.landmark_nme(pred, target), (0.5 + 2.0 / k) / 2, rtol=1e-12)
    with pytest.raises(ValueError, match="K, 2"):
        metrics.landmark_nme(pred[:, :3], target)


def test_identity_similarity_and_pair_auc():
    a = np.array([[1.0, 0.0], [0.0, 2.0]])
    b = np.array([[3.0, 3.0], [0.0, -1.0]])
    np.testing.assert_allclose(metrics.identity_similarity(a, b), (2 ** -0.5 - 1) / 2, rtol=1e-12)
    rng = np.random.default_rng(0)
    emb = np.round(rng.normal(size=(30, 3)), 1)  # rounding makes ties
    labels = rng.integers(0, 5, 30)
    i, j = np.triu_indices(30, 1)
    e = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    expect = roc_auc_score(labels[i] == labels[j], np.sum(e[i] * e[j], 1))
    np.testing.assert_allclose(metrics.pair_auc(emb, labels), expect, rtol=1e-12)


def test_margin_softmax_loss_against_numpy():
    rng = np.random.default_rng(1)
    emb = rng.normal(size=(5, 4))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    centres, labels = rng.normal(size=(3, 4)), np.array([0, 2, 1, 1, 0])
    cos = emb @ (centres / np.linalg.norm(centres, axis=1, keepdims=True)).T
    m, s = 0.3, 8.0
    logits = s * cos
    logits[np.arange(5), labels] = s * np.cos(np.arccos(cos[np.arange(5), labels]) + m)
    ce = np.log(np.exp(logits).sum(1)) - logits[np.arange(5), labels]
    loss, acc = auxnets.margin_softmax_loss(jnp.asarray(emb), jnp.asarray(centres), jnp.asarray(labels), m, s)
    np.testing.assert_allclose(loss, ce.mean(), rtol=1e-5)
    np.testing.assert_allclose(acc, np.mean(cos.argmax(1) == labels))


def _cfg():
    cfg = configs.get_config("smoke")
    cfg.aux.train_images, cfg.aux.num_identities, cfg.aux.eval_identities = 320, 24, 12
    return cfg


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    wd = tmp_path_factory.mktemp("v2s_aux") / "run"
    cfg = _cfg()
    res = run.train_aux(cfg, wd)
    ev = auxnets.aux_images(cfg.seed, cfg.faces, cfg.aux, "eval")
    return cfg, wd, res, ev


def test_trained_aux_nets_beat_trivial_predictors_on_held_out_identities(trained):
    cfg, wd, res, ev = trained
    assert json.loads((wd / "summary.json").read_text())["results"]["aux"]["proc_id"]["steps"] == 300
    aux = auxnets.load_aux(wd, 16)
    assert aux.steps == {n: 300 for n in auxnets.NETS}
    x = jnp.asarray(ev["image"])
    # proc_landmarks: well below the NME of predicting the mean training landmarks for every frame
    nme = metrics.landmark_nme(np.asarray(aux.landmarks(x)), ev["landmarks"])
    np.testing.assert_allclose(nme, res["proc_landmarks"]["landmark_nme"], rtol=1e-4)
    assert nme < 0.6 * res["proc_landmarks"]["mean_landmark_nme"], res["proc_landmarks"]
    # proc_3dmm: pose error well below that of predicting the mean pose
    _, _, pose = aux.face_params(x)
    mae, mae_mean = np.abs(np.asarray(pose) - ev["pose"]).mean(), np.abs(ev["pose"] - ev["pose"].mean(0)).mean()
    assert mae < 0.5 * mae_mean, (mae, mae_mean)
    # proc_id: same-identity pairs rank above different-identity pairs far more often than chance (0.5)
    auc = metrics.pair_auc(np.asarray(aux.embed(x)), ev["id_index"])
    assert auc > 0.75, auc
    shuffled = metrics.pair_auc(np.asarray(aux.embed(x)), np.random.default_rng(0).permutation(ev["id_index"]))
    assert abs(shuffled - 0.5) < 0.15


@pytest.mark.slow  # CI runs the same kill / resume check of train-aux (scripts/check_resume.sh video2stylegan-aux)
def test_train_aux_killed_and_resumed_equals_uninterrupted(trained, tmp_path):
    cfg, wd, _, _ = trained
    resumed = tmp_path / "resumed"
    shutil.copytree(wd, resumed)
    shutil.rmtree(resumed / "aux" / "proc_3dmm" / "checkpoints" / "300")  # killed after the step-200 checkpoint
    run.train_aux(cfg, resumed)
    segs = {n: train_lib.run_times(resumed / "aux" / n)["segments"] for n in auxnets.NETS}
    assert (segs["proc_3dmm"][-1]["start_step"], segs["proc_3dmm"][-1]["end_step"]) == (200, 300)
    assert len(segs["proc_landmarks"]) == len(segs["proc_id"]) == 1  # finished nets are not run again
    a, b = auxnets.load_aux(wd), auxnets.load_aux(resumed)
    for n in auxnets.NETS:
        for x, y in zip(jax.tree.leaves(a.params[n]), jax.tree.leaves(b.params[n])):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    summary = lambda d: json.loads((d / "summary.json").read_text())["results"]["aux"]
    strip = lambda r: {n: {k: v for k, v in r[n].items() if k != "train_time_s"} for n in auxnets.NETS}
    assert strip(summary(wd)) == strip(summary(resumed))


def test_encoder_loss_with_zero_aux_weights_is_the_pixel_loss_and_terms_add_up(trained):
    cfg, wd, _, ev = trained
    aux = auxnets.load_aux(wd)
    x = jnp.asarray(ev["image"])
    batch, key = (x[:4], x[4:8]), jax.random.key(0)
    enc, (g, _) = encoder.make_encoder(cfg), gan.make_models(cfg.gan)
    # an untrained G and a perturbed encoder (jitted inits: eager ones take tens of seconds on 2 cores)
    gp = jax.jit(lambda k: g.init({"params": k, "noise": k}, jnp.zeros((1, cfg.gan.z_dim)))["params"])(key)
    w_avg = 0.1 * jax.random.normal(jax.random.key(2), (cfg.gan.w_dim,))
    params = jax.jit(lambda k: enc.init(k, x[:1], w_avg)["params"])(jax.random.key(3))
    params = jax.tree.map(lambda p: p + 0.01 * jax.random.normal(jax.random.key(5), p.shape), params)

    def old_loss(p):  # the encoder's loss before the auxiliary terms existed
        x0, xt = batch
        w0, wt = encoder.encode_pair(enc, p, x0, xt, w_avg, True, cfg.encoder.reuse_start)
        y = gan.generate(g, gp, jnp.concatenate([w0, wt]), noise_mode="const")
        y0, yt = y[: x0.shape[0]], y[x0.shape[0]:]
        l0, lt = jnp.mean((y0 - x0) ** 2), jnp.mean((yt - xt) ** 2)
        return cfg.encoder.l2 * (l0 + lt) / 2, y

    zero = encoder.make_loss_fn(cfg, gp, w_avg)
    # with zero weights the traced loss is the old one, operation for operation
    assert str(jax.make_jaxpr(lambda p: zero(p, None, batch, key)[0])(params)) == str(
        jax.make_jaxpr(lambda p: old_loss(p)[0])(params))
    assert set(jax.eval_shape(zero, params, None, batch, key)[1][0]) == {"mse_key", "mse_frame"}

    cfg.encoder.landmark, cfg.encoder.mesh, cfg.encoder.identity = 0.5, 2.0, 0.1
    with pytest.raises(ValueError, match="auxiliary"):
        encoder.make_loss_fn(cfg, gp, w_avg)
    full = jax.jit(encoder.make_loss_fn(cfg, gp, w_avg, aux))
    l1, (m1, _) = full(params, None, batch, key)
    l_old, y = jax.jit(old_loss)(params)
    xs, ys = jnp.concatenate(batch), y
    f = auxnets.jit_fns(aux)
    on = lambda k, a: np.asarray(f[k](a), np.float64)
    lmk = np.mean(np.sum(((on("landmarks", ys) - on("landmarks", xs)) / 16) ** 2, -1))
    mesh = np.mean(np.sum((on("vertices", ys) - on("vertices", xs)) ** 2, -1))
    ident = 1 - np.mean(np.sum(on("embed", ys) * on("embed", xs), -1))
    np.testing.assert_allclose([m1["landmark_loss"], m1["mesh_loss"], m1["identity_loss"]], [lmk, mesh, ident],
                               rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(l1, l_old + 0.5 * lmk + 2.0 * mesh + 0.1 * ident, rtol=1e-5)
    assert min(lmk, mesh, ident) > 0
    # the terms pull the reconstruction only: the input's side is a constant target
    gx, gy = jax.jit(jax.grad(lambda a, b: auxnets.encoder_terms(aux, a, b, cfg.encoder)[0], argnums=(0, 1)))(xs, ys)
    assert np.all(np.asarray(gx) == 0) and np.abs(np.asarray(gy)).max() > 0


def test_mesh_vertices_are_the_renderers_vertices():
    fc = configs.get_config("smoke").faces
    ident, expr, pose, _ = faces.sample_params(np.random.default_rng(3), 64, fc)  # the chunk the renders compiled
    out = faces.render_batch(ident, expr, pose, fc)
    v = auxnets.mesh_vertices(jnp.asarray(ident), jnp.asarray(expr), jnp.asarray(pose), fc)
    np.testing.assert_allclose(v, out["vertices"], rtol=1e-5, atol=1e-5)
    theta = auxnets.normalise_params(ident, expr, pose, fc)
    for got, want in zip(auxnets.split_params(theta, fc), (ident, expr, pose)):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-5)


def test_frechet_distance_against_closed_forms_and_scipy():
    import scipy.linalg

    rng = np.random.default_rng(3)
    def exact(n, std, mean):  # samples whose sample mean and covariance are exactly `mean`, diag(std^2)
        x = rng.normal(size=(n, len(std)))
        x -= x.mean(0)
        x = x @ np.linalg.inv(np.linalg.cholesky(np.cov(x, rowvar=False))).T
        return x * std + mean

    # diagonal covariances: FD = |mu_a - mu_b|^2 + sum (std_a - std_b)^2
    a, b = exact(50, [1.0, 2.0, 0.5], [0.0, 1.0, 0.0]), exact(40, [3.0, 1.0, 0.5], [0.0, 0.0, 0.0])
    np.testing.assert_allclose(metrics.frechet_distance(a, b), 1.0 + 4.0 + 1.0 + 0.0, rtol=1e-9)
    # full covariances: the textbook form with scipy's sqrtm of the non-symmetric product
    a = rng.normal(size=(500, 6)) @ rng.normal(size=(6, 6))
    b = rng.normal(size=(400, 6)) @ rng.normal(size=(6, 6)) + 0.3
    va, vb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    expect = np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(va + vb - 2 * np.real(scipy.linalg.sqrtm(va @ vb)))
    np.testing.assert_allclose(metrics.frechet_distance(a, b), expect, rtol=1e-8)
    assert abs(metrics.frechet_distance(a, a)) < 1e-8
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        metrics.frechet_distance(a, b[:, :5])


def test_fd_proc_ranks_an_untrained_generator_behind_real_renders(trained):
    cfg, wd, _, _ = trained
    aux = auxnets.load_aux(wd, 16)
    cfg.faces.train_images = 96
    res = auxnets.generator_fd(cfg, aux, gan.init_state(cfg.gan, cfg.seed).g_ema, n=48, chunk=32)
    assert res["samples"] == 48
    assert res["generator"] == pytest.approx(res["untrained_generator"], rel=1e-6)  # the same parameters
    assert res["real_vs_real"] < 0.5 * res["untrained_generator"], res
    feats = np.asarray(aux.features(jnp.zeros((2, 16, 16, 3))))
    assert feats.shape == (2, 2 * cfg.aux.hidden) and (feats >= 0).all()
