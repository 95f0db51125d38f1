"""Workspace layout and atomic writes: media, manifests (parquet), per-segment resume state."""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pyarrow.parquet as pq
from pydantic import BaseModel

from hivau.schemas.records import TABLE_MODELS, to_arrow_table


@contextmanager
def atomic_target(path: Path) -> Iterator[str]:
    """Yield a temporary path beside `path`; on success it is renamed onto `path`, on failure removed.

    Readers therefore never see half a file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_target(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=2, sort_keys=True, default=str).encode())


@dataclass(frozen=True)
class Workspace:
    root: Path

    @classmethod
    def at(cls, root: str | Path) -> "Workspace":
        return cls(Path(root).expanduser().resolve())

    @property
    def media(self) -> Path:
        return self.root / "media"

    @property
    def manifests(self) -> Path:
        return self.root / "manifests"

    @property
    def state(self) -> Path:
        return self.root / "state"

    def event_media(self, event_id: str) -> Path:
        return self.media / "events" / f"{event_id}.mp4"

    def clip_media(self, clip_id: str) -> Path:
        return self.media / "clips" / f"{clip_id}.mp4"

    def relative(self, path: str | Path) -> str:
        return Path(path).resolve().relative_to(self.root).as_posix()

    def segment_state(self, segment_id: str) -> Path:
        return self.state / "segments" / f"{segment_id}.json"

    def video_state(self, video_id: str) -> Path:
        return self.state / "videos" / f"{video_id}.json"

    @property
    def drafts(self) -> Path:
        """The build's own tables, before review: manifests/ holds them merged with the reviewers' work."""
        return self.state / "drafts"

    @property
    def reviews(self) -> Path:
        return self.state / "reviews"

    @property
    def releases(self) -> Path:
        return self.root / "releases"

    def review_media(self, event_id: str) -> Path:
        return self.media / "review" / f"{event_id}.mp4"

    def video_media(self, video_id: str) -> Path:
        return self.media / "videos" / f"{video_id}.mp4"

    def manifest(self, table: str, drafts: bool = False) -> Path:
        return (self.drafts if drafts else self.manifests) / f"{table}.parquet"

    def write_table(self, table: str, records: list[BaseModel], drafts: bool = False) -> Path:
        """Write one table atomically, with the table's pyarrow schema even when empty."""
        model = TABLE_MODELS[table]
        arrow = to_arrow_table(records, model)
        path = self.manifest(table, drafts)
        with atomic_target(path) as tmp:
            pq.write_table(arrow, tmp)
        return path

    def read_table(self, table: str, drafts: bool = False):
        return pq.read_table(self.manifest(table, drafts))

    def read_records(self, table: str, drafts: bool = False) -> list:
        """A table as its record models (empty when the table was never written)."""
        path = self.manifest(table, drafts)
        if not path.is_file():
            return []
        model = TABLE_MODELS[table]
        return [model.model_validate(row) for row in pq.read_table(path).to_pylist()]
