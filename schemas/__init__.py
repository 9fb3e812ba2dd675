"""The data contract: record kinds, shard read/write, manifests and validation.

Depends on pyarrow and the standard library only, so a machine that just trains needs
``schemas`` + ``train`` and nothing from the curation side.
"""

from schemas.dataset import open_dataset, shard_paths
from schemas.kinds import (
    DOCUMENTS,
    DUP_CLUSTERS,
    KINDS,
    MINHASH_SIGNATURES,
    PREFERENCE,
    PREFERENCE_TOKENS,
    PRETRAIN_TOKENS,
    REJECTED,
    SFT,
    SFT_TOKENS,
    TOKEN_INDEX,
    Column,
    RecordKind,
    get_kind,
)
from schemas.manifest import Manifest, read_manifest, without_timings
from schemas.shards import FileInfo, read_shard, sha256_file, write_shard
from schemas.validate import SchemaMismatch, conform, validate_table
from schemas.verify import VerifyReport, find_stage_dirs, verify_stage

__all__ = [
    "DOCUMENTS", "DUP_CLUSTERS", "KINDS", "MINHASH_SIGNATURES", "PREFERENCE",
    "PREFERENCE_TOKENS", "PRETRAIN_TOKENS", "REJECTED",
    "SFT", "SFT_TOKENS", "TOKEN_INDEX", "Column", "FileInfo", "Manifest", "RecordKind",
    "SchemaMismatch",
    "VerifyReport", "conform", "find_stage_dirs", "get_kind", "open_dataset", "read_manifest",
    "read_shard", "sha256_file", "shard_paths", "validate_table", "verify_stage", "without_timings",
    "write_shard",
]

