"""Stage configs: one pydantic model per stage, filled from defaults, a YAML recipe and --set.

The same model is the CLI's config, the Dagster launchpad's config and a recipe file's
section, so a knob has one name and one default everywhere.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

Cfg = TypeVar("Cfg", bound="StageConfig")


class StageConfig(BaseModel):
    """Base for stage configs: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def config_hash(self) -> str:
        """Hash of the settings that change the output; resume compares it."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True,
                               separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


class ConfigError(ValueError):
    """A recipe or --set override that does not fit the stage's config."""


def parse_override(item: str) -> tuple[list[str], Any]:
    """``a.b=1`` -> (["a", "b"], 1); the value is read as YAML so numbers and lists work."""
    if "=" not in item:
        raise ConfigError(f"--set expects key=value, got {item!r}")
    key, raw = item.split("=", 1)
    if not key.strip():
        raise ConfigError(f"--set has an empty key: {item!r}")
    return key.strip().split("."), yaml.safe_load(raw) if raw.strip() else ""


def _apply(data: dict[str, Any], path: list[str], value: Any) -> None:
    for part in path[:-1]:
        data = data.setdefault(part, {})
        if not isinstance(data, dict):
            raise ConfigError(f"--set {'.'.join(path)}: {part!r} is not a section")
    data[path[-1]] = value


def load_config(model: type[Cfg], recipe: Path | None = None, overrides: tuple[str, ...] = (),
                section: str | None = None) -> Cfg:
    """Build a stage config from a YAML recipe (optionally one section of it) and overrides."""
    data: dict[str, Any] = {}
    if recipe is not None:
        loaded = yaml.safe_load(Path(recipe).read_text()) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{recipe}: a recipe must be a mapping of settings")
        if section is not None and isinstance(loaded.get(section), dict):
            loaded = loaded[section]
        data.update(loaded)
    for item in overrides:
        _apply(data, *parse_override(item))
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid {model.__name__}:\n{exc}") from None
