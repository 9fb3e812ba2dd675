"""Training backends that consume token shards (pre-training, fine-tuning, RLHF).

Depends on ``schemas`` and torch only; never on Dagster or the curation stack, so a GPU box
that only trains installs ``schemas`` + ``train``.
"""

from schemas.version import __version__

__all__ = ["__version__"]
