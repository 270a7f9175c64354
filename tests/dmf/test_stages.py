"""detect_stages on constructed staircases and on real gradient-descent runs."""

import jax
import numpy as np
import pytest

from jaxlab import dmf


def _staircase(times, sig=(10.0, 5.0, 2.0), T=800, every=5, width=8.0):
    """A synthetic trajectory: mode k switches on (sigmoid) at step times[k]."""
    steps = np.arange(T) * every
    sig = np.asarray(sig)
    sv = np.stack([s / (1 + np.exp(-(steps - t) / width)) for s, t in zip(sig, times)], 1)
    sv = np.concatenate([sv, np.full((T, 2), 1e-7)], 1)
    loss = 0.5 * np.sum((sig - sv[:, :3]) ** 2, 1)
    gnorm = np.sum(sv[:, :3] * (sig - sv[:, :3]), 1) + 1e-4
    return dmf.Trajectory(step=steps, loss=loss, grad_norm=gnorm, singular_values=sv,
                          test_error=np.sqrt(2 * loss) / np.linalg.norm(sig), factors=[])


def _target(sig=(10.0, 5.0, 2.0), n=5):
    with jax.enable_x64(True):
        return np.asarray(dmf.low_rank_target(jax.random.PRNGKey(0), n, len(sig), sig))


def test_constructed_staircase_three_stages():
    traj = _staircase([500, 1500, 2800])
    st = dmf.detect_stages(traj, _target())
    assert st.ok, st
    assert [s.rank for s in st] == [0, 1, 2]
    np.testing.assert_allclose([s.loss for s in st], [64.5, 14.5, 2.0], rtol=0.02)
    # the escape of stage k is the activation of mode k + 1 (sigma = sigma*/2 at times[k])
    np.testing.assert_allclose([s.end for s in st], [500, 1500, 2800], atol=5)
    assert all(s.start < s.end for s in st)
    # without a target: levels from the gradient dips, thresholds from the final spectrum
    st2 = dmf.detect_stages(traj)
    assert st2.ok and len(st2) == 3
    np.testing.assert_allclose([s.end for s in st2], [500, 1500, 2800], atol=5)


def test_constructed_merged_staircase_is_reported():
    traj = _staircase([500, 540, 2800])  # modes 1 and 2 switch on together: no rank-1 plateau
    st = dmf.detect_stages(traj, _target())
    assert st.status == "merged" and not st.ok
    assert st.merged == [1]
    assert [s.rank for s in st] == [0, 2]


def test_constructed_incomplete_run():
    traj = _staircase([500, 1500, 5000])  # mode 3 switches on after the run ends
    st = dmf.detect_stages(traj, _target())
    assert st.status == "incomplete" and st.activations[2] is None


@pytest.mark.slow  # CI: the smoke spe (depth 2, lambda_min at the saddles) and the R >= 2 depth-3 cells of test_run
def test_real_runs_depth2_and_depth3():
    with jax.enable_x64(True):
        target = dmf.low_rank_target(jax.random.PRNGKey(0), 20, 3)
        # depth 2, init 1e-6, lr 2e-3 (spec reference): 3 stages at L_k, strict saddles
        fs = dmf.init_factors(jax.random.PRNGKey(1), 20, 2, 1e-6)
        tr = dmf.train(fs, target, lr=2e-3, steps=2500, log_every=5, track_escape=True)
        st = dmf.detect_stages(tr, target)
        assert st.ok, st
        np.testing.assert_allclose([s.loss for s in st], [64.5, 14.5, 2.0], rtol=0.02)
        assert st.activations == sorted(st.activations)
        align = dmf.escape_alignment(tr, target, st)
        assert np.all(align > 0.99), align
        # lambda_min near the rank-1 saddle ~ -sigma_2* = -5 (strict saddle at depth 2)
        a, b = st.plateaus[1]
        i = a + int(np.argmin(np.asarray(tr.grad_norm[a:b + 1])))
        at = dmf.advance(fs, target, lr=2e-3, steps=int(tr.step[i]))
        lam = float(dmf.hessian_min_eig(at, target, key=jax.random.PRNGKey(0), num_iters=64))
        np.testing.assert_allclose(lam, -5.0, rtol=0.05)
        # depth 3, init 1e-4: 3 stages; init 1e-2: stages merge
        fs3 = dmf.init_factors(jax.random.PRNGKey(1), 20, 3, 1e-4)
        st3 = dmf.detect_stages(dmf.train(fs3, target, lr=3e-3, steps=5500, log_every=5), target)
        assert st3.ok, st3
        fsl = dmf.init_factors(jax.random.PRNGKey(1), 20, 3, 1e-2)
        stl = dmf.detect_stages(dmf.train(fsl, target, lr=3e-3, steps=5500, log_every=5), target)
        assert stl.status == "merged" and len(stl) < 3, stl


def test_detect_stages_rejects_a_sweep():
    traj = _staircase([500, 1500, 2800])
    stacked = jax.tree.map(lambda x: np.stack([x, x]), traj)
    with pytest.raises(ValueError, match="select"):
        dmf.detect_stages(stacked)
