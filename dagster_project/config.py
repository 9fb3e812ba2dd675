"""Expose a stage's pydantic config as a Dagster ``Config`` without restating its fields.

The stage config in ``curate`` is the single source of truth: the CLI, YAML recipes and the
Dagster launchpad all show the same keys with the same defaults and docs.
"""

from __future__ import annotations

from typing import Any, TypeVar

import dagster as dg
from pydantic import BaseModel, create_model

M = TypeVar("M", bound=BaseModel)


def dagster_config(model: type[BaseModel], **fields: tuple[Any, Any]) -> type[dg.Config]:
    """A ``dg.Config`` subclass with ``model``'s fields, defaults and descriptions.

    ``fields`` (name=(type, FieldInfo)) adds launchpad-only knobs or replaces a field's
    default; the asset is then responsible for what they mean.
    """
    own = {name: (f.annotation, f) for name, f in model.model_fields.items()}
    return create_model(f"{model.__name__}Run", __base__=dg.Config, __doc__=model.__doc__,
                        **{**own, **fields})


def to_stage_config(config: dg.Config, model: type[M]) -> M:
    """Turn the launchpad config back into the library's config model."""
    return model.model_validate(config.model_dump())
