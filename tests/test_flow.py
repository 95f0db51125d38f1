"""build-hivau end to end on a real Prefect server: every bad input quarantined, the rest built, re-runs resume."""

import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
from helpers import make_audio_only, make_video

from hivau.schemas import reasons

pytestmark = pytest.mark.prefect_server


@pytest.fixture(scope="module")
def messy_batch(tmp_path_factory):
    """A batch with one bad input of every kind beside good videos, in the HIVAU raw format."""
    root = tmp_path_factory.mktemp("messy")
    videos = root / "videos"
    for name in ("good_anomaly", "bad_times"):
        make_video(videos / f"{name}.mp4", 12.0, fps=25, size="64x48", gop=25)
    make_video(videos / "good_normal.mp4", 20.0, fps=25, size="64x48", gop=25)  # room for two 8 s samples
    make_video(videos / "odd_rate.mp4", 6.0, fps=27, size="64x48")
    (videos / "zero.mp4").touch()
    (videos / "garbage.mp4").write_bytes(b"\x00\x01 definitely not a video " * 2000)
    make_audio_only(root / "a.m4a").rename(videos / "audio_only.mp4")
    full = make_video(root / "full.mp4", 6.0, size="160x120").read_bytes()
    (videos / "truncated.mp4").write_bytes(full[: len(full) // 2])
    entry = lambda events, clips, label: {"n_frames": 300, "fps": 25.0, "label": label, "events": events,
                                          "clips": clips, "clips_caption": [[f"caption {i}" for i, _ in enumerate(c)] for c in clips]}
    annotations = {
        "good_anomaly": entry([[2.0, 6.0], [8.0, 11.0]], [[[2.0, 4.0], [4.0, 6.0]], [[8.0, 11.0]]], ["Fighting"]),
        "good_normal": entry([], [], []),
        "odd_rate": entry([[1.0, 3.0]], [[]], ["Explosion"]),
        "bad_times": entry([[1.0, 2.0], [3.0, 30.0], [-1.0, 2.0], [5.0, 4.0], [float("nan"), 6.0], [1.5, 2.5]],
                           [[[1.0, 2.0]], [[3.0, 4.0]], [], [], [], []], ["Arson"]),
        "zero": entry([], [], []), "garbage": entry([], [], []), "audio_only": entry([], [], []),
        "truncated": entry([], [], []), "not_on_disk": entry([], [], []),
        "malformed": {"n_frames": 10, "fps": 25.0, "label": "Arson", "events": "soon"},
    }
    (root / "ann.json").write_text(json.dumps(annotations))
    return root


def _run(messy_batch, workspace, **kwargs):
    from hivau.flows.build import build_hivau

    return build_hivau(videos_dir=str(messy_batch / "videos"), workspace=str(workspace),
                       annotations=str(messy_batch / "ann.json"), format="hivau", **kwargs)


def test_messy_batch_quarantines_each_fault_and_builds_the_rest(prefect_api, messy_batch, tmp_path):
    summary = _run(messy_batch, tmp_path / "ws", max_workers=3)
    assert summary["entries"] == 10
    assert summary["videos_processed"] + summary["videos_quarantined"] == summary["entries"]
    assert summary["videos_processed"] == 4
    records = pq.read_table(tmp_path / "ws/manifests/quarantine.parquet").to_pylist()
    text_stages = {"caption", "summarize", "qa"}
    quarantine = {(q["item_id"], q["reason"]) for q in records if q["stage"] not in text_stages}
    # clips without a caption in the annotations (odd_rate's even split, good_normal's samples) are listed too
    assert {(q["item_id"], q["reason"]) for q in records if q["stage"] == "caption"} >= {
        ("odd_rate_E0C0", reasons.CAPTION_MISSING), ("good_normal_E0C0", reasons.CAPTION_MISSING)}
    assert quarantine == {
        ("zero", reasons.VIDEO_EMPTY), ("garbage", reasons.VIDEO_UNREADABLE),
        ("audio_only", reasons.VIDEO_NO_VIDEO_STREAM), ("truncated", reasons.VIDEO_TRUNCATED),
        ("not_on_disk", reasons.VIDEO_MISSING), ("malformed", reasons.ENTRY_MALFORMED),
        ("bad_times_E1", reasons.TIME_PAST_END), ("bad_times_E2", reasons.TIME_NEGATIVE),
        ("bad_times_E3", reasons.TIME_START_NOT_BEFORE_END), ("bad_times_E4", reasons.TIME_NAN),
        ("bad_times_E5", reasons.EVENT_OVERLAP),
    }
    events = {e["event_id"]: e for e in pq.read_table(tmp_path / "ws/manifests/events.parquet").to_pylist()}
    assert set(events) == {"good_anomaly_E0", "good_anomaly_E1", "good_normal_E0", "good_normal_E1", "odd_rate_E0",
                           "bad_times_E0"}
    assert events["good_normal_E0"]["origin"] == "normal_sample" and not events["good_normal_E0"]["is_anomaly"]
    clips = {c["clip_id"]: c for c in pq.read_table(tmp_path / "ws/manifests/clips.parquet").to_pylist()}
    assert {"good_anomaly_E0C0", "good_anomaly_E0C1", "good_anomaly_E1C0", "odd_rate_E0C2"} <= set(clips)
    assert clips["odd_rate_E0C0"]["origin"] == "split_even"
    for record in list(events.values()) + list(clips.values()):
        media = tmp_path / "ws" / record["media_path"]
        assert media.is_file() and record["n_frames"] > 0
        assert abs(record["cut_start_s"] - record["start_s"]) < 0.05  # accurate mode: within a frame
    e0 = events["good_anomaly_E0"]
    assert e0["media_path"] == "media/events/good_anomaly_E0.mp4" and e0["n_frames"] == 100  # 4 s at 25 fps
    captions = pq.read_table(tmp_path / "ws/manifests/captions.parquet").to_pylist()
    assert {c["item_id"] for c in captions} == {"good_anomaly_E0C0", "good_anomaly_E0C1", "good_anomaly_E1C0",
                                                "bad_times_E0C0"}
    assert (tmp_path / "ws/manifests/quarantine.md").read_text().count("| ") >= 11


def test_rerun_resumes_without_recutting(prefect_api, messy_batch, tmp_path):
    ws = tmp_path / "ws"
    _run(messy_batch, ws, cut_mode="copy")
    media = sorted((ws / "media").rglob("*.mp4"))
    before = {p: p.stat().st_mtime_ns for p in media}
    # a killed run leaves a half-written file behind; a deleted output must be redone
    (ws / "media/events/.good_anomaly_E0.part.mp4").write_bytes(b"partial")
    media[0].unlink()
    summary = _run(messy_batch, ws, cut_mode="copy")
    after = {p: p.stat().st_mtime_ns for p in sorted((ws / "media").rglob("*.mp4"))}
    assert set(after) == set(before)
    assert [p for p in after if after[p] != before[p]] == [media[0]]
    assert summary["events"] == 6
    events = pq.read_table(ws / "manifests/events.parquet").to_pylist()
    assert all(e["cut_mode"] == "copy" and e["cut_start_s"] <= e["start_s"] for e in events)


def test_demo_data_through_the_cli(prefect_server, demo_dir, tmp_path):
    """`hivau build` in a fresh process, as a user runs it, on the demo set with its two planted faults."""
    env = {**prefect_server["env"]}
    out = subprocess.run([sys.executable, "-m", "hivau.cli", "build", "--videos", str(demo_dir / "videos"),
                          "--annotations", str(demo_dir / "annotations.json"), "--workspace", str(tmp_path / "ws"),
                          "--cut-mode", "copy"], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads((tmp_path / "ws/manifests/summary.json").read_text())
    assert summary["entries"] == 9 and summary["videos_processed"] == 8
    assert {k: summary["quarantined_by_reason"][k] for k in (reasons.VIDEO_TRUNCATED, reasons.TIME_PAST_END)} == \
        {reasons.VIDEO_TRUNCATED: 1, reasons.TIME_PAST_END: 1}
    assert "videos_processed" in out.stdout
    # no LLM configured: the offline extractive backend drafts every summary and QA pair, and says so
    assert "roll-up backend: extractive" in out.stdout + out.stderr
    assert summary["summaries"] == 13 and summary["qa_pairs"] == 13 * 7 and summary["motion_phrases"] > 0
    assert summary["chains"] == 13  # a reasoning chain for each event and video with texts
    assert summary["texts_by_generator"] == {"caption:human": 14, "summary:extractive": 13, "qapair:extractive": 91,
                                             "reasoningchain:extractive": 13}
    # demo_normal_001 is unannotated: its sampled clips have no caption, so nothing is drafted for it
    assert summary["quarantined_by_reason"][reasons.CAPTION_MISSING] == 6
    assert summary["quarantined_by_reason"][reasons.NO_INPUT_TEXT] == 8
