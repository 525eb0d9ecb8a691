"""Alias of the original module path; the implementation lives in `bigs.config`."""

from bigs.config import BiGSConfig  # noqa: F401
