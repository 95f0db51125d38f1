"""Loaders for the real public annotation files and the users' formats; every entry is accounted for."""

import json

import pytest
from helpers import make_video

from hivau.schemas import reasons
from hivau.tasks.build.ingest import load_annotations, load_event_labels
from hivau.tasks.build.plan import PlanSettings, plan_video
from hivau.tasks.shards import probe_item


def _placeholders(folder, names):
    """Empty stand-ins: ingest only resolves paths (probing would quarantine these as video_empty)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / f"{name}.mp4").touch()
    return folder


def test_hivau_raw_file_every_entry_accounted(fixtures_dir, tmp_path):
    path = fixtures_dir / "annotations" / "hivau_ucf_database_test.json"
    raw = json.loads(path.read_text())
    videos = _placeholders(tmp_path / "videos" / "Arson", list(raw)[:200])  # the rest have no video file
    report = load_annotations("hivau", path, tmp_path / "videos")
    assert report.n_entries == 251
    assert len(report.items) == 200 and len(report.quarantine) == 51
    assert {q.reason for q in report.quarantine} == {reasons.VIDEO_MISSING}
    _placeholders(videos, list(raw)[200:])
    report = load_annotations("hivau", path, tmp_path / "videos")
    assert len(report.items) == 251 and not report.quarantine
    assert sum(len(it.events) for it in report.items) == 337
    assert sum(len(e.clips) for it in report.items for e in it.events) == 762
    assert sum(1 for it in report.items if not it.is_anomaly) == 123
    abuse = next(it for it in report.items if it.video_id == "Abuse028_x264")
    assert abuse.labels == ["Abuse"] and abuse.events[0].clips[0].caption.startswith("A gray-coated postman")
    assert abuse.events[0].summary_split.judgement and abuse.video_summary_split.analysis


def test_hivau_real_entry_planned_against_a_video_of_its_length(fixtures_dir, tmp_path):
    """Arson016_x264 lists a near-duplicate event and one that ends a frame past the video."""
    raw = json.loads((fixtures_dir / "annotations" / "hivau_ucf_database_test.json").read_text())
    entry = raw["Arson016_x264"]
    (tmp_path / "ann.json").write_text(json.dumps({"Arson016_x264": entry}))
    make_video(tmp_path / "v" / "Arson016_x264.mp4", entry["n_frames"] / entry["fps"], fps=entry["fps"], size="32x24")
    report = load_annotations("hivau", tmp_path / "ann.json", tmp_path / "v")
    item = plan_video(probe_item(report.items[0]), PlanSettings())
    assert item.probe.n_frames == entry["n_frames"]
    assert [e.event_id for e in item.planned_events] == ["Arson016_x264_E0"]
    assert "clamped" in item.planned_events[0].notes[0]
    assert [(q.item_id, q.reason) for q in item.quarantine] == [("Arson016_x264_E1", reasons.EVENT_OVERLAP)]
    assert [c.clip_id for c in item.planned_clips] == ["Arson016_x264_E0C0"]
    assert {s.level for s in item.summaries} == {"event", "video"}
    assert all(s.provenance == "human" and s.generator.backend == "human" for s in item.summaries)


def _ucf_label_file(raw_hivau: dict, path, limit: int):
    """A UCF-Crime style temporal label file (frames, -1 for none) built from HIVAU's event times."""
    lines = []
    for vid, entry in list(raw_hivau.items())[:limit]:
        frames = [int(t * entry["fps"]) for ev in entry["events"][:2] for t in ev] if entry["label"] else []
        frames += [-1] * (4 - len(frames))
        lines.append(f"{vid}.mp4  {(entry['label'] or ['Normal'])[0]}  " + "  ".join(map(str, frames)))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_uca_file_every_entry_accounted(fixtures_dir, tmp_path):
    uca_path = fixtures_dir / "annotations" / "uca_UCFCrime_Test.json"
    uca = json.loads(uca_path.read_text())
    hivau = json.loads((fixtures_dir / "annotations" / "hivau_ucf_database_test.json").read_text())
    labels = _ucf_label_file(hivau, tmp_path / "Temporal_Anomaly_Annotation.txt", limit=251)
    _placeholders(tmp_path / "videos", uca)
    report = load_annotations("uca", uca_path, tmp_path / "videos", labels)
    assert report.n_entries == 310
    assert len(report.items) + len(report.quarantine) == 310
    in_labels = set(uca) & set(hivau)
    assert {it.video_id for it in report.items} == in_labels
    assert {q.reason for q in report.quarantine} == {reasons.ENTRY_NO_LABELS}
    assert sum(len(it.spans) for it in report.items) == sum(len(uca[v]["timestamps"]) for v in in_labels)


def test_uca_spans_assigned_to_events(fixtures_dir, tmp_path):
    uca = json.loads((fixtures_dir / "annotations" / "uca_UCFCrime_Test.json").read_text())
    vid = "Abuse037_x264"  # five spans, unsorted, one overlapping another
    (tmp_path / "labels.csv").write_text("video_id,label,start_s,end_s\nAbuse037_x264,Abuse,0.5,9.0\n"
                                         "Abuse037_x264,Abuse,39.0,49.0\n")
    (tmp_path / "uca.json").write_text(json.dumps({vid: uca[vid]}))
    make_video(tmp_path / "v" / f"{vid}.mp4", uca[vid]["duration"], fps=30, size="32x24")
    report = load_annotations("uca", tmp_path / "uca.json", tmp_path / "v", tmp_path / "labels.csv")
    item = plan_video(probe_item(report.items[0]), PlanSettings())
    clips = {c.clip_id: (c.start_s, c.end_s, c.origin) for c in item.planned_clips}
    assert clips == {f"{vid}_E0C0": (1.2, 8.2, "span"), f"{vid}_E1C0": (40.4, 47.6, "span")}
    assert sorted(q.reason for q in item.quarantine) == [reasons.SPAN_UNASSIGNED] * 3
    assert next(c.text for c in item.captions if c.item_id == f"{vid}_E0C0").startswith("A white car")
    # any_overlap keeps every span that touches an event, however little
    relaxed = plan_video(probe_item(report.items[0]), PlanSettings(spans={"rule": "any_overlap"}))
    assert len(relaxed.planned_clips) == 5 and not relaxed.quarantine


def test_ucf_label_file_parsing(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_text("Arson011_x264.mp4  Arson  150  420  680  1267\nNormal_Videos_003_x264.mp4  Normal  -1  -1  -1  -1\n")
    labels = load_event_labels(path)
    assert labels["Arson011_x264"].events == [(150.0, 420.0), (680.0, 1267.0)] and labels["Arson011_x264"].unit == "frame"
    assert labels["Normal_Videos_003_x264"].labels == [] and labels["Normal_Videos_003_x264"].events == []
    path.write_text("Arson011_x264.mp4 Arson 150\n")
    with pytest.raises(ValueError, match="expected 'name class"):
        load_event_labels(path)


def test_user_csv_and_jsonl(tmp_path):
    make_video(tmp_path / "a.mp4", 6.0, size="32x24")
    make_video(tmp_path / "b.mp4", 6.0, size="32x24")
    (tmp_path / "ann.csv").write_text(
        "video,labels,event_start,event_end,clip_start,clip_end,caption\n"
        "a.mp4,Fighting,1.0,4.0,1.0,2.0,two men shove each other\n"
        "a.mp4,Fighting,1.0,4.0,2.0,4.0,one man falls\n"
        "b.mp4,,,,,,\n"
        "missing.mp4,Arson,1,2,,,\n")
    report = load_annotations("csv", tmp_path / "ann.csv", tmp_path)
    assert [it.video_id for it in report.items] == ["a", "b"]
    assert [(q.item_id, q.reason) for q in report.quarantine] == [("missing", reasons.VIDEO_MISSING)]
    a = report.items[0]
    assert a.labels == ["Fighting"] and len(a.events) == 1 and [c.caption for c in a.events[0].clips] == [
        "two men shove each other", "one man falls"]
    assert report.items[1].events == [] and not report.items[1].is_anomaly

    (tmp_path / "ann.jsonl").write_text("\n".join([
        json.dumps({"video": "a.mp4", "labels": ["Fighting"], "events": [[1.0, 4.0]]}),
        "{not json",
        json.dumps({"video": "b.mp4", "events": [{"start": "soon", "end": 2}]}),
        json.dumps({"video": "a.mp4"}),
    ]))
    report = load_annotations("csv", tmp_path / "ann.jsonl", tmp_path)
    assert report.n_entries == 4 and [it.video_id for it in report.items] == ["a"]
    assert [q.reason for q in report.quarantine] == [reasons.ENTRY_MALFORMED, reasons.ENTRY_MALFORMED,
                                                     reasons.ENTRY_DUPLICATE]
    assert "events.0.start" in report.quarantine[1].detail


def test_malformed_hivau_entries(tmp_path):
    (tmp_path / "v").mkdir()
    for name in ("ok", "shape", "types"):
        (tmp_path / "v" / f"{name}.mp4").touch()
    (tmp_path / "ann.json").write_text(json.dumps({
        "ok": {"n_frames": 30, "fps": 30.0, "label": [], "events": [], "clips": []},
        "shape": {"n_frames": 30, "fps": 30.0, "label": ["Arson"], "events": [[0, 1]], "clips": [[[0, 1]], [[0, 1]]]},
        "types": {"n_frames": "many", "fps": 30.0, "label": ["Arson"], "events": [[0, 1, 2]]},
    }))
    report = load_annotations("hivau", tmp_path / "ann.json", tmp_path / "v")
    assert report.n_entries == 3 and [it.video_id for it in report.items] == ["ok"]
    assert {q.item_id: q.reason for q in report.quarantine} == {"shape": reasons.ENTRY_MALFORMED,
                                                                "types": reasons.ENTRY_MALFORMED}


def test_missing_annotation_file_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_annotations("hivau", tmp_path / "nope.json", tmp_path)
    with pytest.raises(ValueError, match="label file"):
        (tmp_path / "u.json").write_text("{}")
        load_annotations("uca", tmp_path / "u.json", tmp_path)


def test_unannotated_folder(tmp_path):
    make_video(tmp_path / "cam1" / "x.mp4", 3.0, size="32x24")
    (tmp_path / "notes.txt").write_text("not a video")
    report = load_annotations("none", None, tmp_path)
    assert [it.video_id for it in report.items] == ["x"] and report.items[0].events is None
    item = plan_video(probe_item(report.items[0]), PlanSettings())
    assert item.planned_events == [] and item.status == "planned"
