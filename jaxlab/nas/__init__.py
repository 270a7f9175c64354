"""Weight-sharing supernet machinery shared by ScaleNet and ViTAS.

  widths      width index sets (prefix / bilateral / cyclic) as static index arrays or
              traced masks; channel-usage statistics.
  encoding    architecture pytrees, canonicalisation (identity shifting), deduplication.
  flops       analytic MAC counting and its cross-check against XLA cost analysis.
  evolution   vectorised genetic search with FLOPs-band constraints, resumable.
  population  P architectures evaluated in one jitted, vmapped call.
"""

from jaxlab.nas import encoding, evolution, flops, population, widths

__all__ = ["encoding", "evolution", "flops", "population", "widths"]
