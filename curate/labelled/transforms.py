"""Ready-made documents transforms for labelled sets (``curate labelled transform``).

Each takes the turns view (one document per turn, see ``curate_sets.turns_view``) and
returns what the documents stage returns, so a labelled example loses or rewrites turns
exactly as a web document would:

    curate labelled transform --input SFT --output OUT \\
        --set function=curate.labelled.transforms:decontaminate --set options.index=IDX
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from curate.runner import StageOutput


def redact(docs: pa.Table, **options: Any) -> StageOutput:
    """PII redaction of every turn (options: ``curate.pii.PiiConfig`` fields)."""
    from curate.pii import PiiConfig, redact_table

    return redact_table(docs, PiiConfig(**options))


def decontaminate(docs: pa.Table, index: str, mode: str = "remove",
                  min_ngram_hits: int = 1) -> StageOutput:
    """Remove (or flag) examples with a turn that shares an n-gram with the eval index."""
    from curate.decontaminate import DecontamConfig, decontaminate_table, load_index

    cfg = DecontamConfig(index=index, mode=mode, min_ngram_hits=min_ngram_hits)
    return decontaminate_table(docs, load_index(index), cfg)
