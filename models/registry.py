"""The model registry of a workspace: every retrain's decision, and which model is current (registry.json)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

from hivau.workspace import atomic_write_json

REGISTRY = "registry.json"


def read_registry(models_dir: str | Path) -> dict:
    path = Path(models_dir) / REGISTRY
    return json.loads(path.read_text()) if path.is_file() else {"current": None, "models": []}


def current_model(models_dir: str | Path) -> Optional[dict]:
    """The registered model new ones are compared with, or None before the first registration."""
    registry = read_registry(models_dir)
    return next((m for m in registry["models"] if m["name"] == registry["current"]), None)


def record_decision(models_dir: str | Path, entry: dict, registered: bool) -> dict:
    """Append one retrain's outcome; a registered model becomes current. Written atomically."""
    registry = read_registry(models_dir)
    entry = {**entry, "registered": registered, "decided_at": datetime.now(timezone.utc).isoformat()}
    registry["models"] = [m for m in registry["models"] if m["name"] != entry["name"]] + [entry]
    if registered:
        registry["current"] = entry["name"]
    atomic_write_json(Path(models_dir) / REGISTRY, registry)
    return entry


def resolve_model(ref: str | Path) -> Path:
    """A model folder, or a models folder with a registry (its current model)."""
    ref = Path(ref)
    if (ref / "config.json").is_file():
        return ref
    current = current_model(ref)
    if current is None:
        raise FileNotFoundError(f"{ref} is neither a model folder (no config.json) nor a registry with a current model")
    return Path(current["path"])
