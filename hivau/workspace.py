"""The workspace: the one store of per-video records, batches, reviews, manifests as atomic sets, and its lock."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import socket
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable, Iterator, Literal, Optional
from urllib.parse import quote, unquote

import pyarrow.parquet as pq
from pydantic import BaseModel

from hivau.schemas.item import BatchRecord, Tables, VideoItem
from hivau.schemas.records import TABLE_MODELS, Level, ReviewRecord, arrow_schema
from hivau.stopping import check_stop

LEVELS: tuple[Level, ...] = ("clip", "event", "video")
MANIFEST_GENERATIONS = ".manifests"


# media folders by kind, under media/
MediaKind = Literal["event", "clip", "review", "video"]
MEDIA_FOLDERS: dict[str, str] = {"event": "events", "clip": "clips", "review": "review", "video": "videos"}


# a full disk or an exhausted quota, as the OS reports it and as tools (ffmpeg) print it
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
DISK_FULL_TEXTS = ("no space left on device", "disk quota exceeded")


def is_disk_full(error: BaseException | str | None) -> bool:
    """Whether an error, or a tool's error output (ffmpeg's stderr), says the disk or the quota is full."""
    if isinstance(error, BaseException):
        if getattr(error, "errno", None) in DISK_FULL_ERRNOS:
            return True
        error = str(error)
    return any(text in (error or "").lower() for text in DISK_FULL_TEXTS)


def _size(n: float) -> str:
    unit = "B"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            break
        n /= 1024
    return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"


def free_bytes(path: str | Path) -> Optional[int]:
    """Free space for this user on the disk holding `path` (or its nearest existing folder)."""
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


class DiskFullError(OSError):
    """The disk (or quota) holding a workspace path is full. Never the fault of the video at hand: stages let it
    through instead of quarantining, and the run stops with what to free and how to resume."""

    def __init__(self, path: str | Path, needed: Optional[int] = None, note: str = "", free: Optional[int] = None):
        self.path, self.needed, self.note = str(path), needed, note
        self.free = free_bytes(path) if free is None else free
        super().__init__(errno.ENOSPC, self._message())

    def _message(self) -> str:
        room = [f"about {_size(self.needed)} needed"] if self.needed else []
        room += [f"{_size(self.free)} free"] if self.free is not None else []
        return (f"disk full: no space left on the disk holding {self.path}" + (f" ({', '.join(room)})" if room else "")
                + (f"; {self.note}" if self.note else "") + ". Nothing half-written was kept or counted as done. "
                "Free space on that disk (or give the workspace a larger one) and run the same command again: "
                "finished work is resumed.")

    def __str__(self) -> str:
        return self.strerror

    def __reduce__(self):  # Dask sends task errors between processes
        return DiskFullError, (self.path, self.needed, self.note, self.free)

    def noted(self, note: str) -> "DiskFullError":
        """The same error with what the failed step left in place said too."""
        return DiskFullError(self.path, self.needed, "; ".join(n for n in (self.note, note) if n), self.free)


@contextmanager
def disk_full_guard(path: str | Path, needed: Optional[int] = None, note: str = "") -> Iterator[None]:
    """Turn a full disk met while writing `path` into a `DiskFullError` naming it; other errors pass unchanged."""
    try:
        yield
    except DiskFullError:
        raise
    except OSError as exc:
        if not is_disk_full(exc):
            raise
        raise DiskFullError(path, needed, note) from exc


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


def atomic_write_bytes(path: Path, data: bytes, durable: bool = True) -> None:
    """Write a file whole or not at all; `durable=False` skips the fsync, for caches that are checked when
    read (each fsync also forces out other processes' fresh writes, which slows the cutters beside it).
    On a full disk the previous file stays as it was and a `DiskFullError` names the path."""
    with disk_full_guard(path, len(data)), atomic_target(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        if durable:
            os.fsync(fh.fileno())


def atomic_write_json(path: Path, obj: Any, durable: bool = True) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=2, sort_keys=True, default=str).encode(), durable)


def file_name(key: str) -> str:
    """A record key as a file name: ids come from file stems and JSON keys, so only `/`, `%` and a leading
    dot need escaping (`v=1djr...__#1_label_B4-0-0` stays readable)."""
    name = quote(key, safe=" =#,;+@!~()[]{}'&$-_")
    return "%2E" + name[1:] if name.startswith(".") else name


class WorkspaceBusy(RuntimeError):
    """Another build, pull, release or propose holds the workspace."""


_held: dict[str, int] = {}  # lock paths this process holds -> depth (nested stages of one operation)
_held_guard = threading.Lock()


@dataclass(frozen=True)
class Workspace:
    root: Path

    @classmethod
    def at(cls, root: str | Path) -> "Workspace":
        return cls(Path(root).expanduser().resolve())

    # ---------------------------------------------------------------- layout
    @property
    def media(self) -> Path:
        return self.root / "media"

    @property
    def manifests(self) -> Path:
        """The current manifest set (a link to one generation under `.manifests/`)."""
        return self.root / "manifests"

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def releases(self) -> Path:
        return self.root / "releases"

    @property
    def models(self) -> Path:
        """The model registry and the runs that retrain writes."""
        return self.root / "models"

    def media_dir(self, kind: MediaKind) -> Path:
        """Cut events and clips, review media (events with context) and browser-playable videos."""
        return self.media / MEDIA_FOLDERS[kind]

    def event_media(self, event_id: str) -> Path:
        return self.media_dir("event") / f"{file_name(event_id)}.mp4"

    def clip_media(self, clip_id: str) -> Path:
        return self.media_dir("clip") / f"{file_name(clip_id)}.mp4"

    def review_media(self, event_id: str) -> Path:
        return self.media_dir("review") / f"{file_name(event_id)}.mp4"

    def video_media(self, video_id: str) -> Path:
        return self.media_dir("video") / f"{file_name(video_id)}.mp4"

    def relative(self, path: str | Path) -> str:
        return Path(path).resolve().relative_to(self.root).as_posix()

    def segment_state(self, segment_id: str) -> Path:
        return self.state / "segments" / f"{file_name(segment_id)}.json"

    def caption_state(self, clip_id: str) -> Path:
        """A clip's caption with the key of what made it (captioner, media, settings), for resuming."""
        return self.state / "captions" / f"{file_name(clip_id)}.json"

    def motion_cache(self, video_id: str) -> Path:
        """Motion phrases of a video's reviewer-edited texts, parsed once (the manifests' writer keeps them)."""
        return self.state / "motion" / f"{file_name(video_id)}.json"

    @property
    def llm_cache(self) -> Path:
        """Answers of OpenAI-compatible servers by request, so a re-run sends no request twice."""
        return self.state / "llm_cache"

    @property
    def review_rule(self) -> Path:
        """Which annotation counts when a task has several (written by a pull, read by merges)."""
        return self.state / "review_rule.json"

    def export_snapshot(self, level: str) -> Path:
        """Scratch copy of a Label Studio export snapshot while a pull reads it."""
        return self.state / "exports" / f"{level}.json"

    @property
    def proposal_frames(self) -> Path:
        """The frame cache of the scorer's proposals on unannotated videos."""
        return self.state / "proposals" / "frames"

    # ---------------------------------------------------------------- the store: one record per video
    @property
    def videos_dir(self) -> Path:
        return self.state / "videos"

    def video_path(self, video_id: str) -> Path:
        return self.videos_dir / f"{file_name(video_id)}.json"

    def put_video(self, item: VideoItem) -> None:
        atomic_write_bytes(self.video_path(item.video_id), item.model_dump_json().encode())

    def get_video(self, video_id: str) -> Optional[VideoItem]:
        path = self.video_path(video_id)
        return VideoItem.model_validate_json(path.read_bytes()) if path.is_file() else None

    def delete_video(self, video_id: str) -> None:
        self.video_path(video_id).unlink(missing_ok=True)

    def video_ids(self) -> list[str]:
        if not self.videos_dir.is_dir():
            return []
        return sorted(unquote(p.name[:-5]) for p in self.videos_dir.iterdir()
                      if p.name.endswith(".json") and not p.name.startswith("."))

    def iter_videos(self, video_ids: Optional[Iterable[str]] = None) -> Iterator[VideoItem]:
        """The stored records, one at a time (a workspace of thousands never sits in memory whole)."""
        for video_id in (self.video_ids() if video_ids is None else video_ids):
            check_stop()  # every per-video stage reads through here: a stop ends it at a video boundary
            item = self.get_video(video_id)
            if item is not None:
                yield item

    # ---------------------------------------------------------------- batches
    def batch_path(self, batch_id: str) -> Path:
        return self.state / "batches" / f"{file_name(batch_id)}.json"

    def put_batch(self, batch: BatchRecord) -> None:
        atomic_write_bytes(self.batch_path(batch.batch_id), batch.model_dump_json(indent=1).encode())

    def get_batch(self, batch_id: str) -> Optional[BatchRecord]:
        path = self.batch_path(batch_id)
        return BatchRecord.model_validate_json(path.read_bytes()) if path.is_file() else None

    def batches(self) -> list[BatchRecord]:
        folder = self.state / "batches"
        paths = sorted(folder.glob("*.json")) if folder.is_dir() else []
        return sorted((BatchRecord.model_validate_json(p.read_bytes()) for p in paths), key=lambda b: b.created_at)

    # ---------------------------------------------------------------- reviews (the reviewers' words, verbatim)
    @property
    def reviews(self) -> Path:
        """One file per Label Studio annotation, under its video:
        `state/annotations/{video}/{level}-{annotation}.json`."""
        return self.state / "annotations"

    @property
    def legacy_reviews(self) -> Path:
        """Reviews pulled before they were kept per annotation (`reviews/{level}/{item}.json`): still read, never
        written; an annotation pulled again supersedes its legacy copy."""
        return self.state / "reviews"

    def review_path(self, record: ReviewRecord) -> Path:
        return self.reviews / file_name(record.video_id) / f"{record.level}-{record.annotation_id}.json"

    def put_review(self, record: ReviewRecord) -> bool:
        """Store one annotation as pulled; returns whether it was new or changed (unchanged ones are not rewritten)."""
        path = self.review_path(record)
        data = record.model_dump_json(indent=1).encode()
        if path.is_file() and path.read_bytes() == data:
            return False
        atomic_write_bytes(path, data)
        return True

    def video_reviews(self, video_id: str) -> list[ReviewRecord]:
        """Every stored annotation of one video (all levels, all annotators)."""
        folder = self.reviews / file_name(video_id)
        records = [ReviewRecord.model_validate_json(p.read_bytes()) for p in sorted(folder.glob("*.json"))] \
            if folder.is_dir() else []
        have = {r.annotation_id for r in records}
        return records + [r for r in self._legacy_by_video.get(video_id, []) if r.annotation_id not in have]

    def review_video_ids(self) -> list[str]:
        ids = {unquote(p.name) for p in self.reviews.iterdir() if p.is_dir()} if self.reviews.is_dir() else set()
        return sorted(ids | set(self._legacy_by_video))

    def iter_reviews(self) -> Iterator[ReviewRecord]:
        """Every stored annotation, one video at a time."""
        for video_id in self.review_video_ids():
            yield from self.video_reviews(video_id)

    @cached_property
    def _legacy_by_video(self) -> dict[str, list[ReviewRecord]]:
        out: dict[str, list[ReviewRecord]] = {}
        for level in LEVELS:
            for path in sorted((self.legacy_reviews / level).glob("*.json")):
                record = ReviewRecord.model_validate_json(path.read_bytes())
                out.setdefault(record.video_id, []).append(record)
        return out

    # ---------------------------------------------------------------- manifests, written as a set
    def manifest(self, table: str) -> Path:
        return self.manifests / f"{table}.parquet"

    def read_table(self, table: str):
        return pq.read_table(self.manifest(table))

    def read_records(self, table: str) -> list:
        """A manifest table as its record models (empty when the table was never written)."""
        path = self.manifest(table)
        if not path.is_file():
            return []
        model = TABLE_MODELS[table]
        return [model.model_validate(row) for row in pq.read_table(path).to_pylist()]

    def manifest_tables(self) -> Tables:
        """The current manifests (drafts merged with reviews) as record lists, read from one set."""
        folder = self.manifests.resolve()
        return Tables(**{name: [TABLE_MODELS[name].model_validate(row) for row in pq.read_table(path).to_pylist()]
                            if (path := folder / f"{name}.parquet").is_file() else []
                            for name in Tables.names()})

    @contextmanager
    def manifest_set(self) -> Iterator["ManifestSet"]:
        """A new generation of `manifests/`: write its files, and on success `manifests` points at it in one
        rename, so a reader sees the old set or the new one, never half of each. Files left unwritten carry
        over from the current set; files whose bytes did not change keep the old file (and its mtime)."""
        generations = self.root / MANIFEST_GENERATIONS
        self._adopt_plain_manifests(generations)
        current = self.manifests.resolve() if self.manifests.exists() else None
        numbers = [int(p.name[1:]) for p in generations.glob("g*") if p.name[1:].isdigit()] if generations.is_dir() else []
        new = generations / f"g{max(numbers, default=0) + 1:06d}"
        new.mkdir(parents=True)
        writer = ManifestSet(new)
        try:
            yield writer
            writer.close()
            writer.changed = changed = _carry_over(current, new)
            if not changed and current is not None:
                shutil.rmtree(new)
                return
            link = self.root / f".manifests.{os.getpid()}.link"
            link.unlink(missing_ok=True)
            os.symlink(new.relative_to(self.root), link)
            os.replace(link, self.manifests)
        except BaseException as exc:
            free = free_bytes(new)  # the disk's at the failure, before the clean-up frees some
            writer.abort()  # an open file keeps its disk space after it is removed
            shutil.rmtree(new, ignore_errors=True)
            if is_disk_full(exc):  # (raised unnamed: a local naming it would keep the failed set's objects alive)
                raise _disk_full_in(exc, new, free, _set_bytes(current), "manifests/ still holds the previous set "
                                    f"({current.name if current else 'none yet'})") from exc
            raise
        for old in generations.glob("g*"):  # keep the previous set for readers that opened it a moment ago
            if old not in (new, current):
                shutil.rmtree(old, ignore_errors=True)

    def _adopt_plain_manifests(self, generations: Path) -> None:
        """A workspace from before manifest sets has a plain folder: it becomes generation 0."""
        if self.manifests.is_dir() and not self.manifests.is_symlink():
            generations.mkdir(parents=True, exist_ok=True)
            os.replace(self.manifests, generations / "g000000")
            os.symlink(Path(MANIFEST_GENERATIONS) / "g000000", self.manifests)

    # the record folders whose files are written through `atomic_target` (the LLM cache and frame stores are
    # left out: large, and their leftovers are never read)
    RECORD_FOLDERS = ("videos", "segments", "batches", "captions", "motion", "exports", "annotations", "reviews")

    def remove_stale_temporaries(self) -> int:
        """Remove the temporary files of writes a killed process never finished (`.NAME.XXXXXXXX.tmp`). Called
        with the lock just taken, when no write of this workspace is under way."""
        stale = list(self.state.glob(".*.tmp"))
        for name in self.RECORD_FOLDERS:
            stale += (self.state / name).rglob(".*.tmp")
        for path in stale:
            path.unlink(missing_ok=True)
        return len(stale)

    # ---------------------------------------------------------------- one operation at a time
    @contextmanager
    def lock(self, operation: str, wait_s: float = 0.0) -> Iterator[None]:
        """Hold the workspace for one build, pull, release or propose; a second one waits up to `wait_s`,
        then stops with who holds it. Nested calls in the holding process (a build that pushes) pass."""
        path = self.state / "workspace.lock"
        key = str(path)
        with _held_guard:
            if _held.get(key):
                _held[key] += 1
                nested = True
            else:
                nested = False
        if nested:
            try:
                yield
            finally:
                with _held_guard:
                    _held[key] -= 1
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(path, "a+")
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    fh.seek(0)
                    holder = fh.read().strip() or "another process"
                    fh.close()
                    raise WorkspaceBusy(f"workspace {self.root} is busy: {holder}. It runs one build, pull, release "
                                        f"or propose at a time; wait for it to finish (or pass a longer lock wait)")
                time.sleep(0.2)
        try:
            with disk_full_guard(path):  # a disk still full at the start: say so before any work
                fh.seek(0)
                fh.truncate()
                fh.write(f"{operation} since {datetime.now(timezone.utc):%Y-%m-%d %H:%M:%S} UTC "
                         f"(pid {os.getpid()} on {socket.gethostname()})")
                fh.flush()
        except BaseException:
            fcntl.flock(fh, fcntl.LOCK_UN)
            fh.close()
            raise
        with _held_guard:
            _held[key] = 1
        try:
            self.remove_stale_temporaries()
            yield
        finally:
            with _held_guard:
                _held.pop(key, None)
            fh.truncate(0)
            fcntl.flock(fh, fcntl.LOCK_UN)
            fh.close()


class ManifestSet:
    """Streams record tables into one manifest generation, a row group at a time (memory stays bounded)."""

    ROW_GROUP = 20_000

    def __init__(self, folder: Path):
        self.folder = folder
        self._writers: dict[str, Any] = {}
        self._rows: dict[str, list[dict]] = {}
        self.changed: list[str] = []  # file names whose content differs from the previous set

    def add(self, table: str, records: Iterable[BaseModel]) -> None:
        rows = self._rows.setdefault(table, [])
        rows += [r.model_dump(mode="json") for r in records]
        if len(rows) >= self.ROW_GROUP:
            self._flush(table)

    def write_bytes(self, name: str, data: bytes) -> None:
        atomic_write_bytes(self.folder / name, data)

    def write_json(self, name: str, obj: Any) -> None:
        atomic_write_json(self.folder / name, obj)

    def _flush(self, table: str) -> None:
        import pyarrow as pa

        model = TABLE_MODELS[table]
        if table not in self._writers:
            self._writers[table] = pq.ParquetWriter(self.folder / f"{table}.parquet", arrow_schema(model))
        self._writers[table].write_table(pa.Table.from_pylist(self._rows[table], schema=arrow_schema(model)))
        self._rows[table] = []

    def abort(self) -> None:
        """Close the files of a set that will not be used; errors are moot (the set is removed). A writer whose
        footer did not fit leaves its file open, and a removed file keeps its disk space while open."""
        writers, self._writers = self._writers, {}
        for writer in writers.values():
            try:
                writer.close()
            except OSError:
                if writer.file_handle is not None:
                    writer.file_handle.close()

    def close(self) -> None:
        for table, rows in self._rows.items():
            if rows or table not in self._writers:
                self._flush(table)  # an empty table still has its schema (the same bytes as pq.write_table)
        for writer in self._writers.values():
            writer.close()
        self._writers = {}


def _disk_full_in(error: BaseException, path: Path, free: Optional[int], needed: Optional[int],
                  note: str) -> DiskFullError:
    """A full disk's `error` as a `DiskFullError` with `note`, naming `path` unless it names its own."""
    if isinstance(error, DiskFullError):
        return error.noted(note)
    return DiskFullError(path, needed, note, free)


def _set_bytes(folder: Optional[Path]) -> Optional[int]:
    """The size of a manifest set: about what the next one needs, since every file is written before the
    unchanged ones are linked back to the old."""
    files = [p for p in folder.iterdir() if p.is_file()] if folder is not None and folder.is_dir() else []
    return sum(p.stat().st_size for p in files) or None


def _same_bytes(a: Path, b: Path) -> bool:
    if a.stat().st_size != b.stat().st_size:
        return False
    with a.open("rb") as fa, b.open("rb") as fb:
        while True:
            x, y = fa.read(1 << 20), fb.read(1 << 20)
            if x != y:
                return False
            if not x:
                return True


def _carry_over(current: Optional[Path], new: Path) -> list[str]:
    """Link unwritten files of the current set into the new one, and unchanged ones back to the old file;
    returns the names whose content changed (or is new)."""
    if current is None or not current.is_dir():
        return sorted(p.name for p in new.iterdir())
    changed = sorted(p.name for p in new.iterdir() if not (current / p.name).exists())
    for old in current.iterdir():
        if old.name.startswith("."):
            continue
        fresh = new / old.name
        if not fresh.exists():
            os.link(old, fresh)
        elif _same_bytes(old, fresh):
            fresh.unlink()
            os.link(old, fresh)
        else:
            changed.append(old.name)
    return sorted(changed)
