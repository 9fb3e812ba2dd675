"""Curation: pure functions over Arrow data, a runner, and the ``curate`` CLI.

Never imports Dagster; heavy optional pieces are imported inside the functions that use them.
"""

from schemas.version import __version__

__all__ = ["__version__"]
