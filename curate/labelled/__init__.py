"""Labelled sets: SFT conversations and preference pairs, from raw files to curated shards.

- :mod:`curate.labelled.layouts`: the layouts ingest recognises and the array operations on
  conversations (:class:`~curate.labelled.layouts.Turns`);
- :mod:`curate.labelled.ingest`: stages ``sft_ingest`` / ``preference_ingest``;
- :mod:`curate.labelled.validate`: the validation rules, stages ``*_validate``;
- :mod:`curate.labelled.curate_sets`: dedup, language / quality filters, split, and the hook
  for documents transforms (PII redaction, decontamination);
- :mod:`curate.labelled.demo`: the demo's labelled set;
- :mod:`curate.labelled.tokenize_chat`: chat-template tokenization into ``sft_tokens`` /
  ``preference_tokens`` (commands in :mod:`curate.labelled.tokens_cli`);
- :mod:`curate.labelled.cli`: the ``curate labelled`` command group.
"""
