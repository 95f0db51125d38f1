"""The workspace store: odd video names, manifest sets swapped atomically, and the lock across processes."""

import subprocess
import sys
import textwrap
import time

import pyarrow.parquet as pq
import pytest

from hivau.schemas.item import VideoItem
from hivau.schemas.records import QuarantineRecord
from hivau.workspace import Workspace, WorkspaceBusy, file_name

ODD = "v=1djr6Yu3rVQ__#1_label_B4-0-0"


def _q(item_id: str) -> QuarantineRecord:
    return QuarantineRecord(item_id=item_id, level="video", reason="video_missing", detail="x", stage="ingest")


def test_store_keeps_odd_names(tmp_path):
    ws = Workspace.at(tmp_path)
    for vid in (ODD, "a/b", ".hidden", "plain_01"):
        ws.put_video(VideoItem(video_id=vid, source_format="none"))
    assert ws.video_ids() == sorted([ODD, "a/b", ".hidden", "plain_01"])
    assert ws.get_video("a/b").video_id == "a/b" and file_name(ODD) == ODD
    assert ws.clip_media(f"{ODD}_E0C1").name == f"{ODD}_E0C1.mp4"
    ws.delete_video("a/b")
    assert "a/b" not in ws.video_ids()


def test_manifest_sets_swap_whole_and_keep_unchanged_files(tmp_path):
    ws = Workspace.at(tmp_path)
    with ws.manifest_set() as out:
        out.add("quarantine", [_q("a")])
        out.add("reviews", [])
    first = ws.manifest("quarantine").resolve()
    reviews_inode = ws.manifest("reviews").stat().st_ino
    with pytest.raises(RuntimeError):  # a writer that fails half-way leaves the old set in place
        with ws.manifest_set() as out:
            out.add("quarantine", [_q("b")])
            raise RuntimeError("killed")
    assert ws.manifest("quarantine").resolve() == first
    with ws.manifest_set() as out:  # the same content: nothing is replaced
        out.add("quarantine", [_q("a")])
    assert ws.manifest("quarantine").resolve() == first
    with ws.manifest_set() as out:
        out.add("quarantine", [_q("a"), _q("c")])
    assert out.changed == ["quarantine.parquet"]
    assert [r["item_id"] for r in pq.read_table(ws.manifest("quarantine")).to_pylist()] == ["a", "c"]
    assert ws.manifest("reviews").stat().st_ino == reviews_inode  # carried over, not rewritten
    assert ws.manifests.is_symlink()


def test_lock_stops_a_second_process_with_who_holds_it(tmp_path):
    ws = Workspace.at(tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from hivau.workspace import Workspace
        with Workspace.at({str(tmp_path)!r}).lock("build-hivau (batch x)"):
            print("held", flush=True)
            time.sleep(3)
        """)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(WorkspaceBusy, match=r"busy: build-hivau \(batch x\) since .* \(pid \d+"):
        with ws.lock("review pull"):
            pass
    started = time.monotonic()
    with ws.lock("review pull", wait_s=30):  # waits until the holder is done, then runs
        waited = time.monotonic() - started
    assert holder.wait(timeout=10) == 0 and waited > 0.5
    with ws.lock("build-hivau"):
        with ws.lock("review push"):  # the same process nests (a build that pushes)
            pass


def test_taking_the_lock_removes_temporaries_a_killed_write_left(tmp_path):
    from hivau.workspace import Workspace, atomic_write_bytes

    ws = Workspace.at(tmp_path / "ws")
    atomic_write_bytes(ws.state / "videos" / "v1.json", b"{}")
    left = [ws.state / "videos" / ".v1.json.abcd1234.tmp", ws.state / "batches" / ".b.json.k2j3h4g5.tmp"]
    for path in left:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half")
    keep = ws.state / "llm_cache" / ".x.tmp"  # not a record folder: left alone
    keep.parent.mkdir(parents=True)
    keep.write_bytes(b"")
    with ws.lock("a build"):
        assert not any(p.exists() for p in left)
    assert (ws.state / "videos" / "v1.json").read_bytes() == b"{}" and keep.exists()
