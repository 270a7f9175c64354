"""Test setup: 8 fake CPU devices (before any JAX operation), quiet progress bars, and a
per-session TFDS data directory so tests never write into the user's cache."""

import os
import tempfile

import jax

jax.config.update("jax_num_cpu_devices", 8)
os.environ.setdefault("JAXLAB_PROGRESS", "0")
os.environ.setdefault("JAXLAB_DATA_DIR", tempfile.mkdtemp(prefix="jaxlab-tfds-"))
# The CLI's persistent compilation cache: per test session, never the user's.
os.environ.setdefault("JAXLAB_COMPILATION_CACHE", tempfile.mkdtemp(prefix="jaxlab-jax-cache-"))

import matplotlib

matplotlib.use("Agg")
