"""The optimizer and loss shared by super-supernet training and retraining (spec sec. 2.4)."""

from __future__ import annotations

import jax
import optax

from jaxlab.core import optim

__all__ = ["make_optimizer", "smoothed_cross_entropy"]


def make_optimizer(lr: float, num_steps: int, warmup: int, weight_decay: float,
                   momentum: float = 0.9) -> optax.GradientTransformation:
    """SGD Nesterov, linear warm-up then cosine to 0 (`core.optim.warmup_cosine`);
    decoupled weight decay on kernels only (leaves of rank > 1: not BN scales, biases)."""
    schedule = optim.warmup_cosine(lr, warmup, num_steps)

    def kernels(params):
        return jax.tree.map(lambda x: x.ndim > 1, params)

    return optax.chain(optax.add_decayed_weights(weight_decay, mask=kernels),
                       optax.sgd(schedule, momentum=momentum, nesterov=True))


def smoothed_cross_entropy(logits: jax.Array, labels: jax.Array, smoothing: float) -> jax.Array:
    """Mean cross-entropy of `logits [B, K]` against one-hot `labels [B]` smoothed by
    `smoothing`: targets `(1 - e) onehot + e / K`."""
    targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), smoothing)
    return optax.softmax_cross_entropy(logits, targets).mean()
