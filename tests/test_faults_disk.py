"""A full disk while cutting, writing the store, the manifests or a release: a clear stop, nothing half-written, a resume."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from helpers import make_video, manifest_digest

from hivau.schemas import reasons
from hivau.schemas.item import VideoItem
from hivau.tasks.build.cut import CutSettings, cut_or_resume, partial_path
from hivau.tasks.build.probe import probe_video
from hivau.tasks.shards import failed_item
from hivau.workspace import DiskFullError, Workspace, atomic_write_bytes

FIRST = ("fight",)  # the batch built before the disk fills; the others come after


# ---------------------------------------------------------------- a real small disk
@pytest.fixture()
def disk(tmp_path):
    """Mounts a tmpfs of the size asked for (`disk("16m")`) and always unmounts it."""
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        if not (shutil.which("mount") and shutil.which("umount")):
            pytest.skip("a full disk is simulated on a small tmpfs: `mount` and `umount` are not on PATH")
        where = tmp_path / f"disk{len(mounted)}"
        where.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"a full disk is simulated on a small tmpfs, and mounting one is not permitted here "
                        f"(needs root or CAP_SYS_ADMIN): {done.stderr.strip()}")
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        if subprocess.run(["umount", str(where)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], capture_output=True)  # a file still open: detach it


def fill(disk: Path, leave: int) -> Path:
    """A filler file that leaves about `leave` bytes free (whole pages) on the tmpfs."""
    filler = disk / "filler"
    with open(filler, "ab") as fh:
        fh.write(b"\0" * max(shutil.disk_usage(disk).free - leave, 0))
    return filler


def assert_clear(error: DiskFullError, under: Path) -> None:
    assert error.errno == errno.ENOSPC and Path(error.path).is_relative_to(under), error.path
    text = str(error)
    assert text.startswith("disk full: ") and error.path in text and "run the same command again" in text, text


def no_leftovers(root: Path) -> list[str]:
    """Partial cuts and temporary files of atomic writes."""
    return sorted(p.name for p in root.rglob(".*") if ".part." in p.name or p.name.endswith(".tmp"))


# ---------------------------------------------------------------- one cut, one record
# ffmpeg 5.1 exits 0 with a short file when only its last writes fail (the small video), 1 when more fail
@pytest.mark.parametrize("mode, size", [("accurate", "64x48"), ("copy", "64x48"), ("accurate", "160x120")])
def test_a_cut_that_fills_the_disk_keeps_nothing_and_says_so(disk, tmp_path, mode, size):
    source = make_video(tmp_path / "src.mp4", 8.0, fps=25, size=size, gop=25)
    video = probe_video(str(source), "src", "hivau")
    ws = Workspace.at(disk("1m") / "ws")
    dst = ws.event_media("src_E0")
    filler = fill(ws.root.parent, 8 * 1024)
    with pytest.raises(DiskFullError) as caught:
        cut_or_resume(ws, "src_E0", dst, video, 0.0, 8.0, mode, CutSettings())
    assert_clear(caught.value, ws.root)
    assert caught.value.path == str(dst)
    assert not dst.exists() and not partial_path(dst).exists() and not ws.segment_state("src_E0").exists()
    filler.unlink()  # space freed: the same call now cuts it whole
    result, fresh = cut_or_resume(ws, "src_E0", dst, video, 0.0, 8.0, mode, CutSettings())
    assert fresh and result.n_frames > 0
    assert json.loads(ws.segment_state("src_E0").read_text())["size"] == dst.stat().st_size
    assert no_leftovers(ws.root) == []


def test_a_store_write_on_a_full_disk_keeps_the_previous_record(disk):
    root = disk("256k")
    path = root / "state" / "videos" / "v.json"
    atomic_write_bytes(path, b"old")
    fill(root, 0)
    with pytest.raises(DiskFullError) as caught:
        atomic_write_bytes(path, b"x" * 10_000)
    assert_clear(caught.value, root)
    assert caught.value.path == str(path) and caught.value.needed == 10_000 and "9.8 KB needed" in str(caught.value)
    assert path.read_bytes() == b"old" and no_leftovers(root) == []


def test_a_shard_that_failed_on_a_full_disk_stops_the_run_instead_of_quarantining():
    item = VideoItem(video_id="v", source_format="hivau")
    full = DiskFullError("/ws/state/videos/v.json")
    with pytest.raises(DiskFullError) as caught:
        failed_item(item, "cut", full)
    assert caught.value is full
    with pytest.raises(DiskFullError):  # a plain OSError of a full disk, as another library raises it
        failed_item(item, "caption", OSError(errno.ENOSPC, "No space left on device"))
    quarantined = failed_item(item, "cut", RuntimeError("ffmpeg crashed"))
    assert quarantined.status == "quarantined" and quarantined.quarantine[0].reason == reasons.CUT_FAILED


def test_the_error_crosses_processes_whole():
    import pickle

    error = DiskFullError("/ws/media/events/a.mp4", needed=2048, note="manifests/ still holds the previous set")
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), str(copy), copy.path, copy.needed) == (DiskFullError, str(error), error.path, 2048)


# ---------------------------------------------------------------- builds (a real Prefect server)
@pytest.fixture(scope="module")
def batches(tmp_path_factory) -> Path:
    """Three small videos in the HIVAU format as two annotation files: `first` (one video) and `second` (two)."""
    root = tmp_path_factory.mktemp("disk-batches")
    for name, seconds in (("fight", 10.0), ("fall", 10.0), ("street", 18.0)):
        make_video(root / "videos" / f"{name}.mp4", seconds, fps=25, size="160x120", gop=25)

    def entry(events, clips, label):
        return {"n_frames": 250, "fps": 25.0, "label": label, "events": events, "clips": clips,
                "clips_caption": [[f"a person {label[0].lower()} in part {i}" for i, _ in enumerate(c)] for c in clips]}

    annotations = {"fight": entry([[1.0, 4.0], [5.0, 8.0]], [[[1.0, 2.5], [2.5, 4.0]], [[5.0, 8.0]]], ["Fighting"]),
                   "fall": entry([[2.0, 7.0]], [[[2.0, 4.0], [4.0, 7.0]]], ["Falling"]),
                   "street": {**entry([], [], []), "n_frames": 450}}
    for name, keep in (("first", FIRST), ("second", tuple(k for k in annotations if k not in FIRST))):
        (root / f"{name}.json").write_text(json.dumps({k: annotations[k] for k in keep}))
    return root


def build(batches: Path, workspace: Path, batch: str) -> dict:
    from hivau.flows.build import build_hivau

    return build_hivau(videos_dir=str(batches / "videos"), annotations=str(batches / f"{batch}.json"),
                       workspace=str(workspace), rollup={"backend": "extractive"}, review={"enabled": "off"})


@pytest.fixture(scope="module")
def reference(prefect_server, batches, tmp_path_factory) -> dict[str, Path]:
    """Both batches built on a disk with room (`final`), and a copy of the workspace after the first (`first`)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    root = tmp_path_factory.mktemp("disk-reference")
    with temporary_settings(updates={PREFECT_API_URL: prefect_server["url"]}):
        build(batches, root / "final", "first")
        shutil.copytree(root / "final", root / "first", symlinks=True)
        build(batches, root / "final", "second")
    return {"first": root / "first", "final": root / "final"}


def media_files(ws: Path) -> dict[str, bytes]:
    return {p.relative_to(ws).as_posix(): p.read_bytes() for p in sorted((ws / "media").rglob("*.mp4"))}


def cut_failures(ws: Workspace) -> list[str]:
    return [f"{q.item_id}: {q.reason}" for item in ws.iter_videos() for q in item.quarantine
            if q.reason in (reasons.CUT_FAILED, reasons.SHARD_FAILED)]


def short_media(ws: Workspace) -> list[str]:
    """Cut media whose size is not the size their state recorded (a cut counted as done that is not whole)."""
    bad = []
    for state in sorted((ws.state / "segments").glob("*.json")):
        record = json.loads(state.read_text())
        media = next(ws.media.glob(f"*/{state.stem}.mp4"), None)
        if media is not None and media.stat().st_size != record["size"]:
            bad.append(f"{media.name}: {media.stat().st_size} bytes, state says {record['size']}")
    return bad


@pytest.mark.prefect_server
def test_a_build_that_fills_the_disk_while_cutting_stops_and_resumes_to_the_same_manifests(prefect_api, batches,
                                                                                          reference, disk):
    root = disk("16m")
    ws = Workspace.at(root / "ws")
    shutil.copytree(reference["first"], ws.root, symlinks=True)  # the first batch, built: its manifests are current
    before = os.readlink(ws.manifests), manifest_digest(ws.root)
    reference_media = media_files(reference["final"])
    second = sum(len(v) for k, v in reference_media.items() if k not in media_files(ws.root))
    filler = fill(root, 32 * 1024 + second // 2)  # the new records fit, and about half of the second batch's cuts

    with pytest.raises(DiskFullError) as caught:
        build(batches, ws.root, "second")
    assert_clear(caught.value, ws.root)
    assert Path(caught.value.path).is_relative_to(ws.media) or Path(caught.value.path).is_relative_to(ws.state)
    assert cut_failures(ws) == []  # the disk's fault, not the videos'
    assert all(item.status != "quarantined" for item in ws.iter_videos())
    assert short_media(ws) == [] and no_leftovers(ws.root) == []
    assert {k: v for k, v in media_files(ws.root).items() if v != reference_media[k]} == {}, "a cut left short"
    assert (os.readlink(ws.manifests), manifest_digest(ws.root)) == before  # the previous set, still whole
    assert pq.read_table(ws.manifest("videos")).num_rows == len(FIRST)

    filler.unlink()  # space freed: the same command finishes the batch
    summary = build(batches, ws.root, "second")
    assert summary["videos_processed"] == 2 and summary["videos_quarantined"] == 0
    assert manifest_digest(ws.root) == manifest_digest(reference["final"])
    assert media_files(ws.root) == reference_media
    assert cut_failures(ws) == [] and short_media(ws) == []


@pytest.mark.prefect_server
def test_manifests_that_do_not_fit_keep_the_previous_set(reference, disk):
    from hivau.tasks.manifests import write_manifests

    root = disk("16m")
    ws = Workspace.at(root / "ws")
    shutil.copytree(reference["final"], ws.root, symlinks=True)
    current, digest = os.readlink(ws.manifests), manifest_digest(ws.root)
    generations = sorted(p.name for p in (ws.root / ".manifests").iterdir())
    free = shutil.disk_usage(root).free
    filler = fill(root, 16 * 1024)

    with pytest.raises(DiskFullError) as caught:
        write_manifests(ws)
    assert_clear(caught.value, ws.root)
    assert "manifests/ still holds the previous set" in str(caught.value) and caught.value.needed
    assert os.readlink(ws.manifests) == current and manifest_digest(ws.root) == digest
    assert sorted(p.name for p in (ws.root / ".manifests").iterdir()) == generations  # no half generation
    assert not list(ws.root.glob(".manifests.*.link"))
    filler.unlink()
    assert shutil.disk_usage(root).free == free  # nothing of the failed set still holds space (no open files)

    write_manifests(ws)
    assert manifest_digest(ws.root) == digest


@pytest.mark.prefect_server
def test_a_release_that_fills_the_disk_leaves_the_earlier_ones_and_resumes(reference, disk):
    from hivau.tasks.release.publish import ReleaseSettings, build_release, verify_release

    root = disk("16m")
    ws = Workspace.at(root / "ws")
    shutil.copytree(reference["final"], ws.root, symlinks=True)
    settings = ReleaseSettings(include_unreviewed=True)
    first = verify_release(build_release(ws, settings))
    filler = fill(root, 64 * 1024)  # the sources are on another disk, so a release copies them: 1 MB or so

    with pytest.raises(DiskFullError) as caught:
        build_release(ws, settings)
    assert_clear(caught.value, ws.releases)
    assert caught.value.path == str(ws.releases / "v0002") and "earlier releases are untouched" in str(caught.value)
    assert sorted(p.name for p in ws.releases.iterdir()) == ["v0001"]  # no half release, none hidden
    assert verify_release(ws.releases / "v0001") == first

    filler.unlink()
    (ws.releases / ".v0002.k1lled00").mkdir()  # what a release killed mid-write leaves: removed, never read
    second = verify_release(build_release(ws, settings))
    assert sorted(p.name for p in ws.releases.iterdir()) == ["v0001", "v0002"]
    assert second["previous"] == "v0001" and second["content_sha256"] == first["content_sha256"]
