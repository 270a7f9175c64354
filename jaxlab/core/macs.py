"""A compute cost model: multiply-accumulates (MACs) of the convolutions and matrix products of a
function, read from its jaxpr (so it counts exactly what the traced network computes).

    macs = count_macs(lambda x: model.apply(variables, x), jnp.zeros((1, 160, 240, 3)))

Used by lidarfirst (camera MACs per frame) and vectornet (the ConvNet baseline of Table 4).
"""

from __future__ import annotations

import math

import jax
from jax.extend import core as jex

__all__ = ["count_macs"]


def _eqn_macs(eqn) -> int:
    name = eqn.primitive.name
    if name == "conv_general_dilated":
        out = eqn.outvars[0].aval.shape
        rhs = eqn.invars[1].aval.shape
        dn = eqn.params["dimension_numbers"]
        kernel_spatial = math.prod(rhs[i] for i in dn.rhs_spec[2:])
        in_per_group = rhs[dn.rhs_spec[1]]
        return math.prod(out) * kernel_spatial * in_per_group
    if name == "dot_general":
        (lc, _), _ = eqn.params["dimension_numbers"]
        lhs = eqn.invars[0].aval.shape
        contract = math.prod(lhs[i] for i in lc)
        return math.prod(eqn.outvars[0].aval.shape) * contract
    return 0


def _jaxpr_macs(jaxpr) -> int:
    total = 0
    for eqn in jaxpr.eqns:
        total += _eqn_macs(eqn)
        for v in eqn.params.values():
            for sub in (v if isinstance(v, (list, tuple)) else [v]):
                if isinstance(sub, jex.ClosedJaxpr):
                    total += _jaxpr_macs(sub.jaxpr)
                elif isinstance(sub, jex.Jaxpr):
                    total += _jaxpr_macs(sub)
    return total


def count_macs(fn, *args) -> int:
    """MACs of `fn(*args)`: every conv and dot_general, nested jaxprs included (loops counted once)."""
    return _jaxpr_macs(jax.make_jaxpr(fn)(*args).jaxpr)
