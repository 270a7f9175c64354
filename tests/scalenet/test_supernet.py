import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.nas.flops import xla_conv_dense_flops
from jaxlab.nas.population import make_population_eval
from jaxlab.nas.widths import index_set
from jaxlab.scalenet import sampler
from jaxlab.scalenet.models import SuperNet, extract_subnet, init_params
from jaxlab.scalenet.space import Space, SpaceConfig

# a small space (5 super layers) keeps the compiles short
SP = Space(SpaceConfig(stages=((1, 1, 8, 1), (2, 2, 12, 3)), head_channels=32, max_mult=1.5,
                       mult_grid=((1.0,), (1.2, 1.3), (1.4, 1.5)), res_grid=((8,), (9,), (10,))))
R = 10


@pytest.fixture(scope="module")
def setup():
    net = SuperNet(SP)
    x = jax.random.uniform(jax.random.key(0), (6, R, R, 3))
    arch0 = jax.tree_util.tree_map(jnp.asarray, SP.scale(np.array([1, 2, 1]), 1.0, 1.0))
    params = init_params(net, 0, x, arch0)
    # perturb every leaf so BN affine terms and the classifier matter
    leaves, tree = jax.tree_util.tree_flatten(params)
    rng = np.random.default_rng(1)
    params = tree.unflatten([l + 0.2 * rng.standard_normal(l.shape).astype(np.float32) for l in leaves])
    traces = []

    def fwd(p, x, a):
        traces.append(1)
        return net.apply(p, x, a)

    return net, params, x, jax.jit(fwd), traces


def _archs(n, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        a, _, _ = sampler.sample_hierarchical(SP, rng, side=i % 2)
        out.append(a)
    return out


@pytest.mark.parametrize("side", [0, 1])
def test_masked_equals_extracted(setup, side):
    net, params, x, fwd, _ = setup
    for a in _archs(2, seed=side):
        a = dict(a, side=np.int32(side))
        y = fwd(params, x, a)
        model, variables = extract_subnet(SP, params, a, side=["left", "right"][side])
        ys, _ = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))(variables, x)
        assert float(jnp.std(ys)) > 0.1
        np.testing.assert_allclose(y, ys, rtol=1e-4, atol=1e-4)


def test_one_compile_across_20_archs(setup):
    net, params, x, fwd, traces = setup
    n0 = len(traces)
    outs = [fwd(params, x, a) for a in _archs(20, seed=5)]
    assert len(traces) - n0 <= 1  # at most the first call of this resolution traces
    assert len({float(o.sum()) for o in outs}) > 10


def test_exact_zero_gradients(setup):
    net, params, x, _, _ = setup
    a = SP.scale(np.array([2, 1, 0]), 1.0, 1.3, side=1)  # stage-1 layers 1, 2: op 0
    g = jax.jit(jax.grad(lambda p: jnp.sum(net.apply(p, x, a) ** 2)))(params)["params"]
    ch = a["channels"]
    idx0 = index_set(SP.super_channels[0], int(ch[0]), "bilateral", side=1)
    out = np.setdiff1d(np.arange(SP.super_channels[0]), idx0)
    assert np.all(np.asarray(g["stem"])[..., out] == 0) and np.any(np.asarray(g["stem"])[..., idx0] != 0)
    for li, l in enumerate(SP.layers):
        blk = g[f"s{l['stage']}_l{l['index']}"]
        op = int(a["ops"][li])
        for name, v in blk.items():
            sel = name.startswith(f"op{op}_")
            if not sel:
                assert np.all(np.asarray(v) == 0), (li, name)
        if op:
            k = np.asarray(blk[f"op{op}_project"])
            io = index_set(SP.super_channels[l["out_slot"]], int(ch[l["out_slot"]]), "bilateral", side=1)
            mask = np.ones(k.shape[-1], bool)
            mask[io] = False
            assert np.all(k[..., mask] == 0) and np.any(k[..., io] != 0)


def test_population_eval_vmapped(setup):
    net, params, x, fwd, _ = setup
    archs = _archs(8, seed=9)
    pop = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *archs)
    f = make_population_eval(net.apply)
    out = f(params, x, pop)
    for i in (0, 5):
        np.testing.assert_allclose(out[i], fwd(params, x, archs[i]), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("genes,d,w,r", [([1, 2, 2], 1.0, 1.0, 8), ([2, 1, 0], 1.5, 1.3, 11)])
def test_flops_match_xla(setup, genes, d, w, r):
    net, params, _, _, _ = setup
    a = SP.scale(np.array(genes), d, w)
    model, variables = extract_subnet(SP, params, a)
    x1 = jnp.zeros((1, r, r, 3))
    xla = xla_conv_dense_flops(model, variables, x1, train=False)
    macs = SP.macs(a, r, count_padding=False)
    assert abs(2 * macs - xla) / xla < 0.05, (2 * macs, xla)
    # the papers' convention also counts the taps that fall on the zero padding
    assert SP.macs(a, r) > macs


@pytest.mark.parametrize("mult", [1.0, 2.0])
def test_conv_kernels_decay_at_the_multiplied_rate(mult):
    """Zero gradients: the first update is pure L2 decay, `-lr (1 + momentum) wd m w` under
    Nesterov; convolution kernels (rank 4) get `mult` times the rate of dense kernels and
    biases none."""
    import jax.numpy as jnp

    from jaxlab.scalenet.training import make_optimizer

    params = {"conv": jnp.full((3, 3, 2, 2), 2.0), "dense": jnp.full((4, 4), 2.0), "bias": jnp.full((4,), 2.0)}
    tx = make_optimizer(0.1, 10, 0, 0.01, momentum=0.9, conv_decay_multiplier=mult)
    zeros = jax.tree.map(jnp.zeros_like, params)
    updates, _ = tx.update(zeros, tx.init(params), params)
    dense = -0.1 * (1 + 0.9) * 0.01 * 2.0
    np.testing.assert_allclose(updates["dense"], dense, rtol=1e-6)
    np.testing.assert_allclose(updates["conv"], mult * dense, rtol=1e-6)
    np.testing.assert_array_equal(updates["bias"], 0.0)
