"""MH-UI: multi-head uncertainty inference for adversarial-attack detection (arXiv:2212.10006).

A network with a prediction head after every stage; the softmax outputs of the heads are
treated as i.i.d. draws from one Dirichlet whose parameters are moment-matched
(`dirichlet.dirichlet_moment_match`); a Dirichlet uncertainty score (`dirichlet`) flags
adversarial inputs produced by the attacks of `attacks`, evaluated with `metrics`.
"""

from jaxlab.mhui import attacks, dirichlet, metrics
from jaxlab.mhui.dirichlet import dirichlet_moment_match, dirichlet_scores

__all__ = ["attacks", "dirichlet", "metrics", "dirichlet_moment_match", "dirichlet_scores", "load"]


def load(workdir):
    """The trained models of a `jaxlab mhui train` run: see `jaxlab.mhui.run.load`."""
    from jaxlab.mhui import run

    return run.load(workdir)
