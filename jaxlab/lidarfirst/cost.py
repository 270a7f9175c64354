"""The MAC counter of the camera models (`jaxlab.core.macs`, shared with vectornet)."""

from jaxlab.core.macs import count_macs

__all__ = ["count_macs"]
