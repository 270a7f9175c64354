"""The rendering baseline: pixels drawn where the scene's lanes and tracks are, and the
network's parameter and MAC counts."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.core.macs import count_macs
from jaxlab.vectornet import polylines
from jaxlab.vectornet.raster import RasterConvNet, rasterize

SIZE, METRES = 64, 64.0       # 1 m pixels; x in [-16, 48), y in [-32, 32)


def _lit(img, ch):
    return set(map(tuple, np.argwhere(np.asarray(img)[0, :, :, ch] > 0)))


def _pixel(xy):
    return int(np.floor(xy[1] + 32.0)), int(np.floor(xy[0] + 16.0))   # (row, col)


def test_lanes_and_tracks_are_drawn_where_they_are():
    t = np.arange(50)
    target = np.stack([0.5 * t, np.zeros(50)], 1)                        # along +x: the frame is the world shifted
    agent = np.stack([0.5 * t - 3.0, np.full(50, 4.3)], 1)
    lane = polylines.Lane("l", np.array([[-20.0, 0.2], [40.0, 0.2]]))
    turn = polylines.Lane("i", np.array([[9.8, 0.6], [9.8, 12.6]]), is_intersection=True)
    scene = polylines.Scene("s", [lane, turn], [polylines.Track("t", "AGENT", t, target),
                                                polylines.Track("a", "AGENT", t, agent)], "t")
    out = polylines.vectorize(scene, num_obs=20, num_future=30, max_vectors=8, max_polylines=16, max_agents=2,
                              map_radius=60.0, lane_spacing=2.0)
    frames = (0, 4, 17)
    img = rasterize(jnp.asarray(out["vectors"][None]), jnp.asarray(out["vec_mask"][None]), num_obs=20, size=SIZE,
                    metres=METRES, frames=frames)
    assert img.shape == (1, 64, 64, 2 + 2 * len(frames))
    origin = target[19]
    # the straight lane (frame x from -29.5 to 30.5 at y = 0.2): row 32, the columns of the view it crosses
    lane_px = {(32, c) for c in range(64) if -20.0 - origin[0] <= c - 16 <= 40.0 - origin[0]}
    turn_px = {_pixel((9.8 - origin[0], y)) for y in np.linspace(0.6, 12.6, 200)}    # column 16, rows 32..44
    assert _lit(img, 0) == lane_px | turn_px
    assert _lit(img, 1) == turn_px
    for j, k in enumerate(frames):
        assert _lit(img, 2 + 2 * j) == {_pixel(target[19 - k] - origin)}, k
        assert _lit(img, 3 + 2 * j) == {_pixel(agent[19 - k] - origin)}, k


def test_convnet_counts_parameters_and_macs_of_a_resnet18():
    w = (4, 8, 16, 32)
    model = RasterConvNet(num_obs=20, num_future=30, widths=w, size=16, metres=32.0, frames=(0, 4))
    vectors = jnp.zeros((1, 4, 8, polylines.NUM_FEATURES))
    # shapes only: compiling the initialisers of a ResNet-18 takes tens of seconds on a CPU
    shapes = jax.eval_shape(model.init, jax.random.key(0), vectors, jnp.ones((1, 4, 8), bool),
                            jnp.zeros((1, 4), jnp.int32))
    params = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
    c_in = 6
    convs = [(3, c_in, w[0])]                                           # stem
    sizes = [16]
    for i, f in enumerate(w):
        prev = w[i - 1] if i else w[0]
        convs += [(3, prev, f), (3, f, f), (3, f, f), (3, f, f)]
        if prev != f:
            convs.append((1, prev, f))                                  # projection shortcut
        sizes.append(sizes[-1] // (2 if i else 1))
    n_conv = sum(k * k * a * b for k, a, b in convs)
    n_norm = 2 * (w[0] + sum(4 * f + (f if i else 0) for i, f in enumerate(w)))
    n_head = w[-1] * 60 + 60
    assert sum(x.size for x in jax.tree.leaves(params)) == n_conv + n_norm + n_head
    # MACs: each conv at its output size (stage i runs at 16 / 2^i px; first conv of a stage strides)
    side = {0: 16, 1: 8, 2: 4, 3: 2}
    macs = 16 * 16 * 9 * c_in * w[0]
    for i, f in enumerate(w):
        prev = w[i - 1] if i else w[0]
        macs += side[i] ** 2 * 9 * (prev * f + 3 * f * f) + (side[i] ** 2 * prev * f if prev != f else 0)
    macs += w[-1] * 60
    image = jnp.zeros((1, 16, 16, c_in))
    assert count_macs(lambda x: model.apply(params, x, method="network"), image) == macs
