"""Readers for the formats DMF users bring, and the procedural problems.

* dense target: `.npy` float `[n, m]`;
* completion entries: CSV `row,col,value` (0-based, optional header) or MovieLens-100k
  `u.data` (tab-separated `user_id item_id rating timestamp`, 1-based ids);
* sensing: `A.npy` `[k, n, m]` and `y.npy` `[k]`.

Errors name the file and line.
"""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["load_target", "load_entries", "load_sensing", "entries_to_matrix", "random_mask", "random_sensing"]


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
