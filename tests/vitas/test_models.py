"""Superformer vs extracted standalone nets, gradient locality, compile counts, FLOPs."""

import dataclasses
import importlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxlab.nas import widths
from jaxlab.vitas import models
from jaxlab.vitas.configs import get_config
from jaxlab.vitas.space import Space

SCHEMES = ("prefix", "bilateral", "cyclic")


def _space(sharing="cyclic", **kw):
    """A small space (fast compiles): C = 32, L = 4, heads {1, 2, 4}, patches {4, 8} on 16x16."""
    kw = {"embed_dim": 32, "depth": 4, "qkv_dim": 16, "mlp_dim": 32, "patch_sizes": (4, 8), **kw}
    cfg = dataclasses.replace(get_config("default").space, sharing=sharing, **kw)
    return Space(cfg)


def _perturbed(sp, seed=0):
    params = models.init_superformer(sp, jax.random.key(seed))
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(seed + 1), len(leaves))
    return jax.tree.unflatten(tree, [a + 0.1 * jax.random.normal(k, a.shape) for a, k in zip(leaves, keys)])


def _one(archs, i):
    return {k: v[i] for k, v in archs.items()}


@pytest.mark.parametrize("sharing", SCHEMES)
def test_extracted_equals_masked(sharing):
    sp = _space(sharing)
    params = _perturbed(sp)
    x = jax.random.uniform(jax.random.key(2), (3, 16, 16, 3))
    archs = sp.sample(np.random.default_rng(1), 3, 0.3, shift=False)
    fwd = jax.jit(lambda p, x, a, s: models.Superformer(sp).apply({"params": p}, x, a, patch_index=0, side=s))
    fwd1 = jax.jit(lambda p, x, a, s: models.Superformer(sp).apply({"params": p}, x, a, patch_index=1, side=s))
    for i in range(3):
        arch = _one(archs, i)
        for side in sp.sides():
            y = (fwd, fwd1)[int(arch["patch"])](params, x, arch, side)
            m, p = models.extract_subnet(sp, params, arch, side)
            assert len(m.blocks) == int((arch["ops"] > 0).sum())
            # copies: a train step that donates the subnet's state must leave `params` intact
            shared = {a.unsafe_buffer_pointer() for a in jax.tree.leaves(params)}
            assert not shared & {a.unsafe_buffer_pointer() for a in jax.tree.leaves(p)}
            z = jax.jit(m.apply)({"params": p}, x)
            np.testing.assert_allclose(np.asarray(y), np.asarray(z), atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("sharing", ("bilateral", "cyclic"))  # prefix: cyclic's code with offset 0
def test_gradient_equals_extracted(sharing):
    """The superformer's backward pass (identity blocks under `cond`, attention with one
    `switch` branch per head count and a hand-written VJP) against autodiff through the
    standalone net of `jaxlab.nn` blocks, whose parameters are gathered from the same tree."""
    sp = _space(sharing)
    params = _perturbed(sp)
    x = jax.random.uniform(jax.random.key(2), (3, 16, 16, 3))
    y = jax.nn.one_hot(jnp.array([1, 5, 7]), 10)
    archs = sp.sample(np.random.default_rng(4), 2, 0.3, shift=False)
    archs["ops"][0] = [1, 2, 0, 3]  # every head count, and an identity block between blocks
    ce = lambda logits: -jnp.sum(y * jax.nn.log_softmax(logits))
    masked = jax.jit(jax.grad(lambda p, a, side, pi: ce(models.Superformer(sp).apply(
        {"params": p}, x, a, patch_index=pi, side=side))), static_argnums=3)
    for i in range(2):
        arch = _one(archs, i)
        for side in sp.sides():
            got = masked(params, arch, side, int(arch["patch"]))

            def via_subnet(p):
                m, q = models.extract_subnet(sp, p, arch, side)
                return ce(m.apply({"params": q}, x))

            ref = jax.jit(jax.grad(via_subnet))(params)
            for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(got), jax.tree.leaves(ref)):
                np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=2e-5, rtol=1e-4,
                                           err_msg=f"{sharing} arch {i} side {side} {jax.tree_util.keystr(path)}")


def test_bilateral_sides_differ():
    sp = _space("bilateral")
    params = _perturbed(sp)
    x = jax.random.uniform(jax.random.key(2), (2, 16, 16, 3))
    arch = _one(sp.sample(np.random.default_rng(3), 1, 0.0), 0)
    arch["embed"] = np.int32(0)
    f = lambda s: models.Superformer(sp).apply({"params": params}, x, arch, patch_index=int(arch["patch"]), side=s)
    assert not np.allclose(f(0), f(1))


@pytest.mark.parametrize("sharing", SCHEMES)
def test_one_step_changes_only_index_sets(sharing):
    """After one Adam step with embed option k (and fixed qkv/MLP options), only the rows and
    columns in the index sets change; only the selected q/k head option and patch size train."""
    sp = _space(sharing)
    params = _perturbed(sp)
    L = sp.depth
    arch = {"patch": np.int32(1), "embed": np.int32(1), "ops": np.array([2, 0, 3, 1], np.int32),
            "qkv": np.array([1, 3, 0, 2], np.int32), "mlp": np.array([2, 0, 1, 3], np.int32)}
    x = jax.random.uniform(jax.random.key(4), (4, 16, 16, 3))
    y = jnp.arange(4) % 10
    side = widths.RIGHT if sharing == "bilateral" else widths.LEFT

    def loss(p):
        lg = models.Superformer(sp).apply({"params": p}, x, arch, patch_index=1, side=side)
        return optax.softmax_cross_entropy_with_integer_labels(lg, y).mean()

    tx = optax.adam(1e-2)
    g = jax.grad(loss)(params)
    upd, _ = tx.update(g, tx.init(params), params)
    new = optax.apply_updates(params, upd)
    changed = jax.tree.map(lambda a, b: np.asarray(a != b), new, params)
    ie = sp.embed_index(arch, side)
    out_e = np.setdiff1d(np.arange(sp.cfg.embed_dim), ie)
    hs = sp.hidden_scheme()

    def only(mask, axis, idx):
        other = np.delete(mask, idx, axis=axis)
        return not other.any()

    assert not changed["patch0_kernel"].any() and not changed["pos0"].any() and not changed["cls0"].any()
    assert changed["patch1_kernel"][..., ie].any() and only(changed["patch1_kernel"], -1, ie)
    for k in ("pos1", "cls1", "norm_scale", "norm_bias", "patch1_bias"):
        assert only(changed[k], -1, ie) and changed[k][..., ie].any(), k
    assert only(changed["head_kernel"], 0, ie)
    for i in range(L):
        b = changed[f"block_{i}"]
        if arch["ops"][i] == 0:
            assert not any(v.any() for v in b.values()), f"identity block {i} changed"
            continue
        iq = widths.index_set(sp.cfg.qkv_dim, int(sp.qkv_widths[arch["qkv"][i]]), hs, side=side)
        im = widths.index_set(sp.cfg.mlp_dim, int(sp.mlp_widths[arch["mlp"][i]]), hs, side=side)
        opt = int(arch["ops"][i]) - 1
        qk = b["qk_kernel"]
        assert not np.delete(qk, opt, axis=0).any(), "an unselected q/k head option changed"
        assert qk[opt].any() and only(qk[opt], 0, ie) and only(qk[opt], 2, iq)
        assert only(b["v_kernel"], 0, ie) and only(b["v_kernel"], 1, iq)
        assert only(b["proj_kernel"], 0, iq) and only(b["proj_kernel"], 1, ie)
        assert only(b["fc1_kernel"], 0, ie) and only(b["fc1_kernel"], 1, im)
        assert only(b["fc2_kernel"], 0, im) and only(b["fc2_kernel"], 1, ie)
        assert only(b["norm1_scale"], 0, ie) and only(b["norm2_bias"], 0, ie)
        assert len(out_e) == 0 or not b["norm1_scale"][out_e].any()


def test_one_compile_over_50_architectures():
    sp = _space("cyclic")
    params = models.init_superformer(sp, jax.random.key(0))
    traces = []

    @jax.jit
    def step(p, x, y, arch):
        traces.append(1)

        def loss(p):
            lg = models.Superformer(sp).apply({"params": p}, x, arch, patch_index=1)
            return optax.softmax_cross_entropy_with_integer_labels(lg, y).mean()

        lval, g = jax.value_and_grad(loss)(p)
        return jax.tree.map(lambda a, b: a - 1e-3 * b, p, g), lval

    archs = sp.sample(np.random.default_rng(0), 50, 0.4)
    x = jnp.ones((2, 16, 16, 3))
    y = jnp.zeros((2,), jnp.int32)
    for i in range(50):
        params, _ = step(params, x, y, _one(archs, i))
    assert len(traces) == 1
    assert len({tuple(sp.to_genome({k: v[i:i + 1] for k, v in archs.items()})[0]) for i in range(50)}) > 40


def test_flops_match_xla_within_2_percent():
    sp = _space("cyclic")
    params = models.init_superformer(sp, jax.random.key(0))
    archs = sp.sample(np.random.default_rng(5), 4, 0.3)
    x = jnp.zeros((1, 16, 16, 3))
    for i in range(4):
        arch = _one(archs, i)
        m, p = models.extract_subnet(sp, params, arch)
        ratio = 2 * sp.flops(arch) / models.xla_matmul_flops(m, p, x)
        assert abs(ratio - 1) < 0.02, ratio


def test_release_flops_formula_reproduces_repo_figures():
    """DeiT-Ti / DeiT-S by the repo's formula (spec sec. 2.1): 1,284,003,840 / 4,648,906,752."""
    base = get_config("paper").space
    for c_ratio, heads, qkv_ratio, mlp_dim, want in ((0.5, 3, 0.4, 768, 1_284_003_840),
                                                     (1.0, 6, 0.8, 1536, 4_648_906_752)):
        cfg = dataclasses.replace(base, patch_sizes=(16,), embed_ratios=(c_ratio,), heads=(heads,),
                                  qkv_ratios=(qkv_ratio,), mlp_dim=mlp_dim, mlp_ratios=(1.0,), depth=12,
                                  flops_count="release")
        sp = Space(cfg)
        arch = {"patch": np.int32(0), "embed": np.int32(0), "ops": np.ones(12, np.int32),
                "qkv": np.zeros(12, np.int32), "mlp": np.zeros(12, np.int32)}
        assert sp.flops(arch) == want


def test_release_patch_bug_scores_every_patch_choice_with_patch_0():
    search = importlib.import_module("jaxlab.vitas.search")  # the module (the package exports the action)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 16, 16, 3)).astype(np.float32)
    y = np.arange(32) % 10
    archs = _space().sample(rng, 3, 0.2)
    on, off = _space(release_patch_bug=True), _space()
    params = _perturbed(off)
    g1 = off.to_genome(dict(archs, patch=np.ones_like(archs["patch"])))
    g0 = off.to_genome(dict(archs, patch=np.zeros_like(archs["patch"])))
    f_on, f_off = search.make_fitness(on, params, x, y, 4), search.make_fitness(off, params, x, y, 4)
    # without the bug the patch choice changes the scores; with it, patch 1 runs as patch 0
    assert not np.array_equal(f_off(g1), f_off(g0))
    np.testing.assert_array_equal(f_on(g1), f_off(g0))
