"""Architecture encodings as pytrees of int arrays; canonical forms; deduplication.

An architecture is a pytree (usually a dict) of integer arrays, e.g. for ScaleNet
`{"ops": int32[L], "channels": int32[S+1], "side": int32[]}`. A *population* is the same
pytree with a leading axis `[P, ...]`, so it can be vmapped.

Many-to-one encodings: a layer whose op is the identity (`0`) contributes nothing, so
`[k3, id, k5]` and `[k3, k5, id]` inside one stage build the same standalone network but
train different supernet weights. The canonical form (ScaleNet's `check_basenet`
"thermometer code", ViTAS's "identity shifting") moves the non-identity ops of each
stage to the front, keeping their order:

    canon(a)_stage = [a_i for i in stage if a_i != 0] + [0] * #{i in stage : a_i == 0]

It is idempotent, keeps the op multiset of each stage (hence FLOPs), and maps all
encodings of one (depth, op sequence) to a single one, which makes it the key for
deduplication.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "canonicalize_ops",
    "canonicalize_ops_np",
    "flatten_arch",
    "stack_archs",
    "unstack_archs",
    "arch_keys",
    "unique_rows",
]


def _order_key(ops, segment_ids, xp):
    seg = xp.asarray(segment_ids)
    if seg.ndim != 1 or seg.shape[0] != ops.shape[-1]:
        raise ValueError(
            f"segment_ids must have shape [{ops.shape[-1]}] (one stage id per layer), got {seg.shape}")
    return seg * 2 + (ops == 0).astype(seg.dtype)


def canonicalize_ops(ops: jax.Array, segment_ids) -> jax.Array:
    """Canonical (identity-shifted) op codes, `ops` `[..., L]` int, 0 = identity.

    `segment_ids` `[L]` is the non-decreasing stage id of each layer. Within each stage
    the non-identity ops keep their order and move to the front (a stable sort by
    `(stage, op == 0)`); works under `jit` and `vmap`.
    """
    ops = jnp.asarray(ops)
    key = _order_key(ops, segment_ids, jnp)
    key = jnp.broadcast_to(key, ops.shape)
    order = jnp.argsort(key, axis=-1, stable=True)
    return jnp.take_along_axis(ops, order, axis=-1)


def canonicalize_ops_np(ops: np.ndarray, segment_ids) -> np.ndarray:
    """NumPy twin of `canonicalize_ops` (host-side GA operators)."""
    ops = np.asarray(ops)
    seg = np.asarray(segment_ids)
    if np.any(np.diff(seg) < 0):
        raise ValueError("segment_ids must be non-decreasing (stages are contiguous)")
    key = np.broadcast_to(_order_key(ops, seg, np), ops.shape)
    order = np.argsort(key, axis=-1, kind="stable")
    return np.take_along_axis(ops, order, axis=-1)


def flatten_arch(arch: Any) -> np.ndarray:
    """One architecture pytree -> int64 vector (leaves raveled in tree order)."""
    leaves = jax.tree_util.tree_leaves(arch)
    return np.concatenate([np.asarray(l, dtype=np.int64).ravel() for l in leaves])


def stack_archs(archs: list) -> Any:
    """List of architecture pytrees -> one population pytree `[P, ...]` (NumPy)."""
    return jax.tree_util.tree_map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *archs)


def unstack_archs(population: Any) -> list:
    """Population pytree `[P, ...]` -> list of P architecture pytrees."""
    leaves, treedef = jax.tree_util.tree_flatten(population)
    n = int(np.asarray(leaves[0]).shape[0])
    return [treedef.unflatten([np.asarray(l)[i] for l in leaves]) for i in range(n)]


def arch_keys(population: Any) -> np.ndarray:
    """Rows `[P, G]` int64: each architecture of a population flattened (for hashing)."""
    leaves = jax.tree_util.tree_leaves(population)
    p = int(np.asarray(leaves[0]).shape[0])
    return np.concatenate([np.asarray(l, dtype=np.int64).reshape(p, -1) for l in leaves], axis=1)


def unique_rows(rows: np.ndarray, exclude: np.ndarray | None = None) -> np.ndarray:
    """Indices of the first occurrence of each distinct row of `rows` `[P, G]`.

    Rows that also occur in `exclude` `[Q, G]` are dropped. Indices are increasing.
    """
    rows = np.asarray(rows)
    seen = set()
    if exclude is not None:
        seen.update(map(bytes, np.ascontiguousarray(np.asarray(exclude, dtype=rows.dtype))))
    keep = []
    for i, r in enumerate(np.ascontiguousarray(rows)):
        b = bytes(r)
        if b not in seen:
            seen.add(b)
            keep.append(i)
    return np.asarray(keep, dtype=np.int64)
