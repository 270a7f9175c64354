"""Readers for the formats DMF users bring, and the procedural problems.

* dense target: `.npy` float `[n, m]`;
* completion entries: CSV `row,col,value` (0-based, optional header) or MovieLens-100k
  `u.data` (tab-separated `user_id item_id rating timestamp`, 1-based ids);
* sensing: `A.npy` `[k, n, m]` and `y.npy` `[k]`.

Errors name the file and line. `problem(config, key)` builds the configured problem.

Random streams: every action derives its keys from `jax.random.key(config.seed)` with
`jax.random.fold_in(key, STREAM)` and one of the named constants below (then folds in
the rank, depth or observation count where one stream serves several problems), so no
two uses share a key.
"""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["load_target", "load_entries", "load_sensing", "entries_to_matrix", "random_mask", "random_sensing",
           "spectrum", "problem"]

PROBLEM_STREAM = 1  # spe: the target and the observation model
INIT_STREAM = 2  # spe: the initial factors
HESSIAN_STREAM = 3  # spe: the Lanczos start vectors
TARGET_STREAM = 4  # sweep, escape: the rank-R target (R folded in)
RUNS_STREAM = 5  # sweep, escape, completion: the initial factors of run s (s folded in by dynamics.sweep)
COMPLETION_TARGET_STREAM = 6  # completion: Arora et al.'s target
MASK_STREAM = 7  # completion: the observed entries (their number folded in)
ENDPOINT_STREAM = 8  # spe, studies: the Lanczos start vectors at the end point of a run
FIT_STREAM = 9  # the restarts of the best rank-k fit (plateau levels of completion/sensing)


def load_target(path) -> np.ndarray:
    path = pathlib.Path(path)
    try:
        t = np.load(path)
    except Exception as e:
        raise ValueError(f"{path}: cannot read a .npy target: {e}") from e
    if t.ndim != 2 or not np.issubdtype(t.dtype, np.floating):
        raise ValueError(f"{path}: expected a float [n, m] array, got {t.dtype} {t.shape}")
    if not np.all(np.isfinite(t)):
        raise ValueError(f"{path}: target has non-finite entries")
    return t.astype(np.float64)


def load_entries(path):
    """(rows, cols, values) int/int/float arrays, 0-based, from CSV or MovieLens `u.data`."""
    path = pathlib.Path(path)
    rows, cols, vals = [], [], []
    movielens = path.name == "u.data" or path.suffix == ".data"
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            parts = line.split("\t") if movielens else line.split(",")
            if lineno == 1 and not movielens and not parts[0].strip().lstrip("-").isdigit():
                continue  # header
            try:
                if movielens:
                    r, c, v = int(parts[0]) - 1, int(parts[1]) - 1, float(parts[2])
                else:
                    r, c, v = int(parts[0]), int(parts[1]), float(parts[2])
            except (ValueError, IndexError) as e:
                fmt = "user_id<TAB>item_id<TAB>rating<TAB>timestamp" if movielens else "row,col,value"
                raise ValueError(f"{path}:{lineno}: expected {fmt}, got {line!r}") from e
            if r < 0 or c < 0:
                raise ValueError(f"{path}:{lineno}: negative index in {line!r}")
            rows.append(r)
            cols.append(c)
            vals.append(v)
    if not rows:
        raise ValueError(f"{path}: no entries")
    return np.array(rows), np.array(cols), np.array(vals, np.float64)


def entries_to_matrix(rows, cols, values, shape=None):
    """Dense `[n, m]` observed values (0 elsewhere) and 0/1 mask."""
    shape = shape or (int(rows.max()) + 1, int(cols.max()) + 1)
    m = np.zeros(shape)
    mask = np.zeros(shape)
    m[rows, cols] = values
    mask[rows, cols] = 1.0
    return m, mask


def load_sensing(a_path, y_path):
    a, y = np.load(a_path), np.load(y_path)
    if a.ndim != 3 or y.shape != (a.shape[0],):
        raise ValueError(f"{a_path}, {y_path}: expected A [k, n, m] and y [k], got {a.shape} and {y.shape}")
    return a.astype(np.float64), y.astype(np.float64)


def random_mask(key, shape, num_observations: int):
    """0/1 mask with exactly `num_observations` entries drawn uniformly without replacement."""
    n = int(np.prod(shape))
    if not 0 < num_observations <= n:
        raise ValueError(f"num_observations must be in [1, {n}], got {num_observations}")
    idx = jax.random.permutation(key, n)[:num_observations]
    return jnp.zeros(n, jnp.zeros(()).dtype).at[idx].set(1.0).reshape(shape)


def random_sensing(key, target, num_measurements: int):
    """Arora et al.'s sensing operator: A_i ~ N(0, 1)/n `[k, n, m]`, y_i = <A_i, M*>."""
    a = jax.random.normal(key, (num_measurements,) + tuple(target.shape), target.dtype) / target.shape[0]
    return a, jnp.einsum("kij,ij->k", a, target)


def spectrum(singular_values, rank: int, ratio: float = 0.5) -> tuple:
    """The target's sigma*: the first `rank` of `singular_values`, or the default law
    (`models.geometric_singular_values`: 10 * ratio^(k-1); with ratio 0.5 and R = 3 the
    spec's (10, 5, 2), not the geometric (10, 5, 2.5))."""
    from jaxlab.dmf import models

    if singular_values:
        if len(singular_values) < rank:
            raise ValueError(f"singular_values has {len(singular_values)} values, need rank={rank}")
        return tuple(singular_values[:rank])
    return models.geometric_singular_values(rank, ratio=ratio)


def problem(config, key):
    """(target `[n, m]`, mask or None, measurements or None) of `config`'s observation
    model (`config.observation`, `target_file`, `entries_file`); float64 inside
    `jax.enable_x64`. `key` is split for the target and the observations."""
    from jaxlab.dmf import models

    kt, ko = jax.random.split(key)
    if config.entries_file:
        target, mask = entries_to_matrix(*load_entries(config.entries_file))
        return jnp.asarray(target), jnp.asarray(mask), None
    if config.target_file:
        target = jnp.asarray(load_target(config.target_file))
    else:
        target = models.low_rank_target(kt, config.n, config.rank,
                                        spectrum(config.singular_values, config.rank, config.spectrum_ratio))
    if config.observation == "completion":
        return target, random_mask(ko, target.shape, config.num_observations), None
    if config.observation == "sensing":
        return target, None, random_sensing(ko, target, config.num_observations)
    return target, None, None
