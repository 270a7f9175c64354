"""Dataset builders and loaders.

- `digits`: scikit-learn's bundled 8x8 digits with a deterministic stratified split.
- `synthetic`: procedural images whose classes need resolution to be told apart.
- `builders`: TFDS `GeneratorBasedBuilder`s for both, written as array_record and read
  with `as_data_source()` (no TensorFlow needed).
- `pipeline`: Grain pipelines (shuffle, batch, shard by process; random access by step,
  so a resumed run sees the same batches).

TFDS and Grain are imported inside the functions that use them, so `import jaxlab.data`
works where they are missing.
"""

from jaxlab.data.digits import load_digits
from jaxlab.data.synthetic import make_images

__all__ = ["load_digits", "make_images"]
