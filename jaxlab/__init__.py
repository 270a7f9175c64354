"""jaxlab: JAX/Flax reimplementations of ten research methods.

Every model is a pure function (a `flax.linen` module used through `init`/`apply`),
every optimizer an optax `GradientTransformation`, and every training loop a jitted
step over explicit pytrees, so the training dynamics stay open to `jax.grad`,
`jax.vmap` and sharding.

Sub-packages:
  core        the shared engine: configs, train state and loop, checkpoints, metrics,
              meshes, FLOPs.
  nn          layers shared by several methods.
  data        dataset builders (TFDS array_record) and Grain pipelines.
  classifier  the reference method (a small CNN on scikit-learn's digits).
  dmf, scalenet, vitas, vectornet, meguide, coral, mhui, coditt5, video2stylegan,
  lidarfirst  one package per paper; see `jaxlab list`.
"""

__version__ = "0.1.0"

# The ten methods, with the paper each one reimplements. The CLI discovers the
# actions of each from `jaxlab/<method>/run.py`; this table only names them.
METHODS = {
    "dmf": "A Dynamics Theory of Implicit Regularization in Deep Low-Rank Matrix Factorization (arXiv:2212.14150)",
    "scalenet": "ScaleNet: Searching for the Model to Scale (arXiv:2207.07267)",
    "vitas": "ViTAS: Vision Transformer Architecture Search (arXiv:2106.13700)",
    "vectornet": "VectorNet: Encoding HD Maps and Agent Dynamics from Vectorized Representation (arXiv:2005.04259)",
    "meguide": "Measuring and Sampling: A Metric-guided Subgraph Learning Framework for GNNs (arXiv:2112.15015)",
    "coral": "CORAL: heterogeneous graph learning for code review recommendation (arXiv:2202.02385)",
    "mhui": "Multi-head Uncertainty Inference for Adversarial Attack Detection (arXiv:2212.10006)",
    "coditt5": "CoditT5: Pretraining for Source Code and Natural Language Editing (arXiv:2208.05446)",
    "video2stylegan": "Video2StyleGAN: Encoding Video in Latent Space for Manipulation (arXiv:2206.13078)",
    "lidarfirst": "LiDAR Cluster First and Camera Inference Later (arXiv:2111.09799)",
}

__all__ = ["__version__", "METHODS"]

_SUBPACKAGES = {"core", "nn", "graph", "nas", "data", "classifier", *METHODS}


def __getattr__(name: str):
    """Sub-packages on first use: `jaxlab.classifier.load(DIR)` works after `import jaxlab`
    without importing every method (and its dependencies) up front."""
    if name in _SUBPACKAGES:
        import importlib

        try:
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"{__name__}.{name}":
                raise AttributeError(f"jaxlab.{name} is planned but not implemented yet") from None
            raise
    raise AttributeError(f"module 'jaxlab' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | _SUBPACKAGES)
