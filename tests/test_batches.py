"""Real data at real size: the fixtures' whole annotation files on stand-in videos, batches that accumulate in one
workspace, partly annotated files, and an existing Dask cluster whose workers do the work."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import _free_port
from helpers import ffmpeg, make_video

from hivau.schemas import reasons
from hivau.tasks.build.ingest import load_annotations

pytestmark = pytest.mark.prefect_server


def stand_ins(folder: Path, lengths: dict[str, float], fps: float = 30.0) -> Path:
    """One low-bitrate master, stream-copied to each annotated length (seconds of work, not hours)."""
    folder.mkdir(parents=True, exist_ok=True)
    master = folder.parent / "master.mp4"
    ffmpeg("-f", "lavfi", "-i", f"color=c=gray:size=64x48:rate={fps}:duration={max(lengths.values()) + 1:.3f}",
           "-c:v", "libx264", "-preset", "ultrafast", "-g", str(int(fps * 2)), "-b:v", "20k", "-pix_fmt", "yuv420p",
           str(master))
    for video_id, seconds in lengths.items():
        ffmpeg("-i", str(master), "-t", f"{seconds:.3f}", "-c", "copy", str(folder / f"{video_id}.mp4"))
    return folder


def _build(workspace, videos, annotations, **kwargs):
    from hivau.flows.build import build_hivau

    return build_hivau(videos_dir=str(videos), workspace=str(workspace), annotations=str(annotations),
                       cut_mode="copy", review={"enabled": "off"}, **kwargs)


def _flow_run_parameter_bytes(url: str) -> dict[str, int]:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(limit=200)
    return {r.name: len(json.dumps(r.parameters, default=str)) for r in runs}


@pytest.mark.slow
def test_real_hivau_file_builds_whole(prefect_api, fixtures_dir, tmp_path):
    """The fixtures' HIVAU-70k test annotations, all 251 videos (9.6 hours), through build-hivau."""
    path = fixtures_dir / "annotations" / "hivau_ucf_database_test.json"
    raw = json.loads(path.read_text())
    videos = stand_ins(tmp_path / "videos", {k: v["n_frames"] / v["fps"] for k, v in raw.items()})
    summary = _build(tmp_path / "ws", videos, path, shard_size=16)
    assert summary["entries"] == 251
    assert summary["videos_processed"] + summary["videos_quarantined"] == 251 and summary["videos_unfinished"] == 0
    events = pq.read_table(tmp_path / "ws/manifests/events.parquet").to_pylist()
    clips = pq.read_table(tmp_path / "ws/manifests/clips.parquet").to_pylist()
    quarantine = pq.read_table(tmp_path / "ws/manifests/quarantine.parquet").to_pylist()
    dropped = [q for q in quarantine if q["level"] in ("event", "clip") and q["stage"] == "validate"]
    # every annotated event and clip is either built or rejected with a reason
    annotated = [e for v in raw.values() for e in v["events"]]
    assert len({e["event_id"] for e in events if e["origin"] == "annotation"}) + \
        len([q for q in dropped if q["level"] == "event"]) == len(annotated) == 337
    assert all(e["media_path"] and e["n_frames"] for e in events + clips)
    captions = pq.read_table(tmp_path / "ws/manifests/captions.parquet").to_pylist()
    assert {c["provenance"] for c in captions} == {"human"} and len(captions) >= 700
    # the orchestrator carried ids and settings only: no run's parameters grow with the batch
    sizes = _flow_run_parameter_bytes(prefect_api)
    assert sizes and max(sizes.values()) < 20_000, sizes


@pytest.mark.slow
def test_real_uca_file_with_a_label_file_built_from_it(prefect_api, fixtures_dir, tmp_path):
    path = fixtures_dir / "annotations" / "uca_UCFCrime_Test.json"
    raw = json.loads(path.read_text())
    rows = ["video_id,label,start_s,end_s"]
    for video_id, entry in raw.items():
        label = video_id.rstrip("0123456789_x").split("_")[0].rstrip("0123456789")
        if label.lower().startswith("normal"):
            rows.append(f"{video_id},normal,,")
        else:  # one event over its captioned spans
            rows.append(f"{video_id},{label},{min(s for s, _ in entry['timestamps']):.2f},"
                        f"{max(e for _, e in entry['timestamps']):.2f}")
    labels = tmp_path / "labels.csv"
    labels.write_text("\n".join(rows) + "\n")
    # 25 hours of stand-ins at 5 fps: the probe reads every packet, and the file's 4,331 spans need the lengths, not
    # the frames (the HIVAU file above, in frames, keeps its 30 fps)
    videos = stand_ins(tmp_path / "videos", {k: v["duration"] for k, v in raw.items()}, fps=5.0)
    from hivau.flows.build import build_hivau

    summary = build_hivau(videos_dir=str(videos), workspace=str(tmp_path / "ws"), annotations=str(path),
                          format="uca", labels=str(labels), cut_mode="copy", review={"enabled": "off"})
    assert summary["entries"] == len(raw) == 310
    assert summary["videos_processed"] + summary["videos_quarantined"] == 310 and summary["videos_processed"] > 290
    spans = sum(len(v["timestamps"]) for v in raw.values())
    clips = pq.read_table(tmp_path / "ws/manifests/clips.parquet").num_rows
    quarantine = pq.read_table(tmp_path / "ws/manifests/quarantine.parquet").to_pylist()
    unplaced = [q for q in quarantine if q["level"] == "span"]
    assert clips + len(unplaced) >= spans * 0.95  # spans are clips, or reported (overlaps inside one video merge)


def _tiny_batch(root: Path, names: list[str], caption: str = "a man runs") -> Path:
    entries = {}
    for name in names:
        make_video(root / "videos" / f"{name}.mp4", 6.0, fps=25, gop=25)
        entries[name] = {"n_frames": 150, "fps": 25.0, "label": ["Fighting"], "events": [[1.0, 4.0]],
                         "clips": [[[1.0, 2.5], [2.5, 4.0]]], "clips_caption": [[caption, caption + " away"]]}
    (root / "ann.json").write_text(json.dumps(entries))
    return root


def test_batches_accumulate_and_rebuilds_replace_their_own(prefect_api, tmp_path):
    ws = tmp_path / "ws"
    a = _tiny_batch(tmp_path / "a", ["a1", "a2", "v=1djr6Yu3rVQ__#1_label_B4-0-0"])
    b = _tiny_batch(tmp_path / "b", ["b1", "b2"])
    _build(ws, a / "videos", a / "ann.json", batch="first")
    second = _build(ws, b / "videos", b / "ann.json", batch="second")
    videos = lambda: sorted(v["video_id"] for v in pq.read_table(ws / "manifests/videos.parquet").to_pylist())
    assert videos() == ["a1", "a2", "b1", "b2", "v=1djr6Yu3rVQ__#1_label_B4-0-0"]
    assert second["entries"] == 2 and second["workspace_totals"]["videos_processed"] == 5
    assert pq.read_table(ws / "manifests/clips.parquet").num_rows == 10
    # the first batch again, without a2 and with new words: a2 goes, nothing doubles, the second batch stays
    entries = json.loads((a / "ann.json").read_text())
    del entries["a2"]
    entries["a1"]["clips_caption"] = [["a woman walks", "a woman sits"]]
    (a / "ann.json").write_text(json.dumps(entries))
    _build(ws, a / "videos", a / "ann.json", batch="first")
    assert videos() == ["a1", "b1", "b2", "v=1djr6Yu3rVQ__#1_label_B4-0-0"]
    captions = {c["item_id"]: c["text"] for c in pq.read_table(ws / "manifests/captions.parquet").to_pylist()}
    assert len(captions) == 8 and captions["a1_E0C0"] == "a woman walks" and captions["b1_E0C0"] == "a man runs"
    summary = json.loads((ws / "manifests/summary.json").read_text())
    assert set(summary["batches"]) == {"first", "second"} and summary["entries"] == 4


def test_partly_annotated_entries_are_built_not_rejected(tmp_path):
    """Empty text fields in every format mean "to be generated"; only broken structure is malformed."""
    videos = tmp_path / "videos"
    for name in ("h", "bad", "u", "c", "j"):
        make_video(videos / f"{name}.mp4", 4.0, fps=25)
    hivau = {"h": {"n_frames": 100, "fps": 25, "label": ["Abuse"], "events": [[0.5, 3.0]], "clips": [[[0.5, 2.0]]],
                   "clips_caption": [[""]], "events_summary": [], "video_summary": "", "video_summary_split": {},
                   "events_summary_split": [{}]},
             "bad": {"n_frames": 100, "fps": 25, "label": [], "events": [[0.5, 3.0]], "clips": [[[0.5, 2.0]]],
                     "clips_caption": [["one", "two"]]}}
    (tmp_path / "h.json").write_text(json.dumps(hivau))
    report = load_annotations("hivau", tmp_path / "h.json", videos)
    assert [(q.item_id, q.reason) for q in report.quarantine] == [("bad", reasons.ENTRY_MALFORMED)]
    (item,) = report.items
    assert item.video_summary is None and item.video_summary_split is None
    assert item.events[0].summary is None and item.events[0].summary_split is None
    assert item.events[0].clips[0].caption is None
    (tmp_path / "u.json").write_text(json.dumps({"u": {"duration": 4.0, "timestamps": [[0.5, 2.0], [2.0, 3.0]],
                                                       "sentences": ["", "  "]}}))
    (tmp_path / "labels.csv").write_text("video_id,label,start_s,end_s\nu,Abuse,0.5,3.0\n")
    report = load_annotations("uca", tmp_path / "u.json", videos, tmp_path / "labels.csv")
    assert not report.quarantine and [s.caption for s in report.items[0].spans] == [None, None]
    (tmp_path / "t.csv").write_text("video,labels,event_start,event_end,clip_start,clip_end,caption\n"
                                    "c.mp4,Fighting,0.5,3.0,0.5,2.0,\n")
    report = load_annotations("csv", tmp_path / "t.csv", videos)
    assert not report.quarantine and report.items[0].events[0].clips[0].caption is None
    (tmp_path / "t.jsonl").write_text(json.dumps({"video": "j.mp4", "labels": ["Fighting"], "video_summary": " ",
                                                  "events": [{"start": 0.5, "end": 3.0, "summary": "",
                                                              "clips": [{"start": 0.5, "end": 2.0, "caption": ""}]}]}))
    report = load_annotations("csv", tmp_path / "t.jsonl", videos)
    (item,) = report.items
    assert item.video_summary is None and item.events[0].summary is None and item.events[0].clips[0].caption is None


@pytest.fixture()
def dask_cluster(prefect_server, tmp_path):
    """`dask scheduler` and two `dask worker` processes, started as a user would on a cluster."""
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**prefect_server["env"], "PYTHONPATH": str(Path(__file__).parent)}
    dask = str(Path(sys.executable).parent / "dask")
    logs = [open(tmp_path / f"dask-{i}.log", "w") for i in range(3)]
    procs = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                              env=env, stdout=logs[0], stderr=subprocess.STDOUT, start_new_session=True)]
    time.sleep(2)
    procs += [subprocess.Popen([dask, "worker", address, "--nworkers", "1", "--nthreads", "1", "--no-dashboard",
                                "--name", f"w{i}"], env=env, stdout=logs[i], stderr=subprocess.STDOUT,
                               start_new_session=True) for i in (1, 2)]
    from distributed import Client

    with Client(address, timeout=60) as client:
        client.wait_for_workers(2, timeout=60)
        worker_pids = set(client.run(os.getpid).values())
    try:
        yield address, worker_pids
    finally:
        for proc in procs[::-1]:
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=30)


def test_existing_dask_cluster_runs_the_shards(prefect_api, dask_cluster, tmp_path):
    address, worker_pids = dask_cluster
    batch = _tiny_batch(tmp_path / "d", [f"d{i}" for i in range(6)])
    summary = _build(tmp_path / "ws", batch / "videos", batch / "ann.json", dask_address=address, shard_size=2)
    assert summary["videos_processed"] == 6 and summary["clips"] == 12
    by_stage = summary["work"]["workers_by_stage"]
    assert set(by_stage) == {"cut", "caption", "verify-captions", "verify", "motion"}
    for stage, workers in by_stage.items():  # every shard ran in a worker process, none in this one
        ran_in = {int(w.rsplit(":", 1)[1]) for w in workers}
        assert ran_in and ran_in <= worker_pids and os.getpid() not in ran_in, (stage, ran_in, worker_pids)
    assert len({int(w.rsplit(":", 1)[1]) for w in summary["work"]["workers"]}) == 2  # both workers took shards
