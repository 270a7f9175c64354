"""The errors jaxlab raises for problems a user can fix.

Every expected failure (a bad config value, a malformed data file, a workdir that holds
something else, a checkpoint that will not restore) derives from `JaxlabError`. The
command line prints such an error as one line on stderr and exits with status 2; only
`--debug` shows the traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

__all__ = ["JaxlabError", "DataFormatError"]


class JaxlabError(Exception):
    """Base of the errors that describe a user's input, not a bug."""


class DataFormatError(JaxlabError, ValueError):
    """A data file does not hold what its format promises.

    The message names the file, the field (or line) and what was expected, e.g.
    `cifar/data_batch_1: field b"labels": expected integers in [0, 10), got 1.7`.
    """
