"""Layers shared by two or more jaxlab methods."""

from jaxlab.nn.cnn import MLP, ConvBlock, SmallCNN

__all__ = ["ConvBlock", "SmallCNN", "MLP"]

from jaxlab.nn.attention import (
    MultiHeadAttention,
    RelativePositionBias,
    causal_mask,
    combine_masks,
    padding_mask,
    relative_position_bucket,
)
from jaxlab.nn.dropout import Dropout
from jaxlab.nn.transformer import DecoderBlock, Encoder, EncoderBlock, FeedForward, LayerNorm, RMSNorm
from jaxlab.nn.vit import PatchEmbed, ViT

__all__ += [
    "MultiHeadAttention", "RelativePositionBias", "causal_mask", "combine_masks", "padding_mask",
    "relative_position_bucket", "DecoderBlock", "Encoder", "EncoderBlock", "LayerNorm", "FeedForward", "RMSNorm",
    "PatchEmbed", "ViT", "Dropout",
]
