"""Layers shared by two or more jaxlab methods."""

from jaxlab.nn.cnn import ConvBlock, SmallCNN, MLP

__all__ = ["ConvBlock", "SmallCNN", "MLP"]
