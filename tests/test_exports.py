"""Release exports: HIVAU-70k JSONL in the fixture's layout, question pools, LLaMA-Factory and ms-swift rows, and
`hivau export-frames` (ATS frames as images from a trained model's scores, uniform frames without one)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import typing
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hivau.schemas.records import QAType
from hivau.tasks.build.frames import open_reader, sample_frames
from hivau.tasks.release.frame_export import Item, frame_paths, select_frames
from hivau.tasks.release.publish import TEMPLATES, pick_template, verify_release

SPLITS = ("train", "test")
KIND = {"clip": "clips", "event": "events", "video": "videos"}
# HIVAU-70k's `video`: {dataset}/{clips,events,videos}/{split}/{name}.mp4 under the training script's `root`
HIVAU_VIDEO = re.compile(r"(?P<dataset>[A-Za-z0-9][A-Za-z0-9._-]*)/(?P<kind>clips|events|videos)/"
                         r"(?P<split>train|test)/(?P<name>[^/]+)\.\w+")
NAME_OF_KIND = {"clips": re.compile(r".+_E\d+C\d+"), "events": re.compile(r".+_E\d+"), "videos": re.compile(r".+")}
LF_TAGS = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def parquet_rows(release: Path) -> dict[str, pd.DataFrame]:
    return {s: pd.read_parquet(release / "data" / f"{s}.parquet") for s in SPLITS}


def video_shape(record: dict) -> tuple[str, str, str, str]:
    """(dataset, kind, split, name) of a HIVAU row's video, checked against its level."""
    match = HIVAU_VIDEO.fullmatch(record["video"])
    assert match, record["video"]
    assert match["kind"] == KIND[record["type"]] and NAME_OF_KIND[match["kind"]].fullmatch(match["name"])
    return match["dataset"], match["kind"], match["split"], match["name"]


def hivau_cli(*args, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hivau.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "1"})


# ---------------------------------------------------------------- question pools
def test_question_pools_are_as_varied_as_hivau_s_and_drawn_reproducibly():
    assert len(TEMPLATES[("clip", "caption")]) >= 24
    for level in ("event", "video"):
        for task in ("judgement", "description", "analysis", "reasoning"):
            assert len(TEMPLATES[(level, task)]) >= 10
    for pool in TEMPLATES.values():
        assert len(set(pool)) == len(pool) and all(q[-1] in "?." for q in pool)
    ids = [f"video_{v:03d}_E{e}C{c}:caption" for v in range(40) for e in range(2) for c in range(5)]
    drawn = [pick_template("clip", "caption", i) for i in ids]
    assert drawn == [pick_template("clip", "caption", i) for i in ids]  # seeded by the row id
    assert set(drawn) == set(TEMPLATES[("clip", "caption")])  # 400 rows reach every question


# ---------------------------------------------------------------- HIVAU JSONL
@pytest.mark.prefect_server
def test_hivau_jsonl_matches_the_fixture_layout(demo_release, fixtures_dir):
    fixture = read_jsonl(fixtures_dir / "annotations" / "hivau_train_format_example.jsonl")
    keys = set(fixture[0])
    for record in fixture:  # the pattern below is the fixture's own
        assert set(record) == keys and video_shape(record)[0] == "ucf-crime"
    # our pools hold HIVAU's own wording for every level and task
    asked = {(r["type"], r["task"], r["conversations"][0]["value"].removeprefix("<video>\n")) for r in fixture}
    for level, task in TEMPLATES:
        if task != "reasoning":  # hivau's own task: HIVAU-70k has no reasoning rows
            assert {q for lv, t, q in asked if (lv, t) == (level, task)} & set(TEMPLATES[(level, task)]), (level, task)

    manifest = verify_release(demo_release)
    dataset, tables = manifest["policy"]["dataset"], parquet_rows(demo_release)
    ours = {s: read_jsonl(demo_release / "hivau" / f"{s}.jsonl") for s in SPLITS}
    ids = [r["id"] for s in SPLITS for r in ours[s]]
    assert ids == list(range(len(ids)))  # one id sequence over train and test
    for split in SPLITS:
        assert len(ours[split]) == len(tables[split]) > 0
        for record, row in zip(ours[split], tables[split].itertuples()):
            assert set(record) == keys | ({"qa_type"} if row.task == "qa" else set())
            assert (record["type"], record["task"]) == (row.level, row.task)
            if row.task == "qa":
                assert record["qa_type"] == row.qa_type and row.qa_type in typing.get_args(QAType)
            assert video_shape(record)[:3] == (dataset, KIND[row.level], split)
            assert f"media/{record['video']}" == row.media_path and (demo_release / "media" / record["video"]).is_file()
            assert record["conversations"] == [{"from": "human", "value": f"<video>\n{row.prompt}"},
                                               {"from": "gpt", "value": row.answer}]
    assert {r["task"] for s in SPLITS for r in ours[s]} == {"caption", "judgement", "description", "analysis", "qa",
                                                            "reasoning"}
    # the fixture's order: per source video its clips, then its events, then the video itself
    train = tables["train"]
    for _, rows in train.groupby("source_video", sort=False):
        order = [{"clip": 0, "event": 1, "video": 2}[lv] for lv in rows.level]
        assert order == sorted(order)
    # many distinct questions are drawn, not the first of each pool
    both = pd.concat(tables.values())
    for (level, task), rows in both[both.task != "qa"].groupby(["level", "task"]):
        assert rows.prompt.isin(TEMPLATES[(level, task)]).all()
        assert rows.prompt.nunique() >= min(len(rows), len(TEMPLATES[(level, task)])) // 2, (level, task)


# ---------------------------------------------------------------- LLaMA-Factory and ms-swift
@pytest.mark.prefect_server
def test_llamafactory_and_swift_rows_follow_their_documented_formats(demo_release):
    manifest = verify_release(demo_release)  # the new files are in the manifest, with their hashes
    assert {f"{d}/{s}.jsonl" for d in ("llamafactory", "swift") for s in SPLITS} | {"llamafactory/dataset_info.json"} \
        <= set(manifest["files"])
    card = (demo_release / "README.md").read_text()
    assert all(f"`{name}" in card for name in ("llamafactory/", "swift/", "media/hivau/", "hivau export-frames"))
    info = json.loads((demo_release / "llamafactory" / "dataset_info.json").read_text())
    assert set(info) == {"hivau_train", "hivau_test"}
    tables = parquet_rows(demo_release)
    for split in SPLITS:
        entry = info[f"hivau_{split}"]
        assert entry == {"file_name": f"{split}.jsonl", "formatting": "sharegpt",
                         "columns": {"messages": "messages", "videos": "videos"}, "tags": LF_TAGS}
        lf = read_jsonl(demo_release / "llamafactory" / entry["file_name"])  # file_name is relative to dataset_dir
        assert lf == read_jsonl(demo_release / "swift" / f"{split}.jsonl")
        assert len(lf) == len(tables[split])
        for record, row in zip(lf, tables[split].itertuples()):
            assert set(record) == {"messages", "videos"}
            assert record["messages"] == [{"role": "user", "content": f"<video>\n{row.prompt}"},
                                          {"role": "assistant", "content": row.answer}]
            assert record["messages"][0]["content"].count("<video>") == len(record["videos"]) == 1
            # relative to the release: LLaMA-Factory's media_dir, ms-swift's working directory
            assert record["videos"] == [row.media_path] and (demo_release / row.media_path).is_file()


# ---------------------------------------------------------------- frame lists
def test_ats_frames_concentrate_where_the_scores_are_high():
    scores = np.zeros(1000)
    scores[600:700] = 1.0

    def inside(indices):
        return sum(600 <= i < 700 for i in indices)

    ats = select_frames("event", scores, 16, "ats", tau=0.1)
    uniform = select_frames("video", scores, 16, "uniform")
    assert len(set(ats)) == 16 and ats == sorted(ats) and len(uniform) == 16
    assert inside(ats) >= 8 and inside(uniform) <= 2  # a tenth of the video gets half of ATS's frames
    assert select_frames("clip", scores, 16, "ats") == uniform  # clips are uniform whatever the scores
    assert select_frames("video", np.zeros(5), 16, "ats") == [0, 1, 2, 3, 4]  # short: every frame once
    item = Item("v_E0", "event", "train", "media/hivau/events/train/v_E0.mp4")
    assert frame_paths(item, [3, 12]) == ["frames/hivau/events/train/v_E0/000003.jpg",
                                          "frames/hivau/events/train/v_E0/000012.jpg"]


def check_frame_export(release: Path, out: Path, n: int, skipped: set[str] = frozenset()) -> dict[str, list[str]]:
    """The export's rows against the release's: documented keys, frame lists that exist; item -> its frames."""
    info = json.loads((out / "llamafactory" / "dataset_info.json").read_text())
    assert set(info) == {"hivau_train", "hivau_test"} and info["hivau_train"]["columns"]["videos"] == "videos"
    frames_of = {}
    for split, table in parquet_rows(release).items():
        kept = table[~table.item_id.isin(skipped)]
        lf = read_jsonl(out / "llamafactory" / f"{split}.jsonl")
        assert lf == read_jsonl(out / "swift" / f"{split}.jsonl") and len(lf) == len(kept)
        for record, row in zip(lf, kept.itertuples()):
            assert set(record) == {"messages", "videos"} and record["messages"][1]["content"] == row.answer
            (frames,) = record["videos"]  # one video, given as its frames
            assert 1 <= len(frames) <= n and all((out / f).is_file() for f in frames)
            assert all(f.startswith("frames/") and f.endswith(".jpg") for f in frames)
            frames_of[row.item_id] = frames
    return frames_of


@pytest.mark.prefect_server
def test_export_frames_cli_writes_frame_lists_resumes_and_records_bad_media(demo_release, tmp_path):
    import cv2

    release = tmp_path / "release"
    shutil.copytree(demo_release, release)  # a private copy: one of its events is broken below
    tables = parquet_rows(release)
    victim = tables["train"][tables["train"].level == "event"].iloc[0]
    (release / victim.media_path).chmod(0o644)
    (release / victim.media_path).write_bytes(b"not a video")
    out = tmp_path / "export"
    run = hivau_cli("export-frames", "--release", release, "--out", out, "--frames", "4", "--sampler", "uniform")
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    rejects = read_jsonl(out / "rejects.jsonl")
    assert [r["item_id"] for r in rejects] == [victim.item_id] and rejects[0]["reason"]  # and the run went on
    summary = json.loads((out / "export.json").read_text())
    assert summary["sampler"] == {"clip": "uniform", "event": "uniform", "video": "uniform"}
    frames_of = check_frame_export(release, out, 4, skipped={victim.item_id})

    # the files are the uniform frames of each item, as decoded, in RGB order
    row = tables["test"].iloc[0]
    count = len(open_reader(str(release / row.media_path)))
    indices = select_frames(row.level, np.zeros(count), 4, "uniform")
    item = Item(row.item_id, row.level, "test", row.media_path)
    assert frames_of[row.item_id] == frame_paths(item, indices)
    image = cv2.imread(str(out / frames_of[row.item_id][0]))[..., ::-1].astype(float)
    decoded = sample_frames(str(release / row.media_path), indices=indices[:1]).frames[0].astype(float)
    assert np.abs(image - decoded).mean() < 8

    written = {p: p.stat().st_mtime_ns for p in (out / "frames").rglob("*.jpg")}
    assert summary["frames_written"] == len(written) > 0
    again = hivau_cli("export-frames", "--release", release, "--out", out, "--frames", "4", "--sampler", "uniform")
    assert again.returncode == 0 and json.loads((out / "export.json").read_text())["frames_written"] == 0
    assert {p: p.stat().st_mtime_ns for p in (out / "frames").rglob("*.jpg")} == written
    inside = hivau_cli("export-frames", "--release", release, "--out", release / "frames", "--sampler", "uniform")
    assert inside.returncode != 0 and not (release / "frames").exists()


@pytest.mark.prefect_server
def test_export_frames_with_a_trained_model_takes_its_ats_frames(demo_release, tmp_path):
    pytest.importorskip("torch")
    from hivau.tasks.release.frame_export import model_scores

    train = subprocess.run([sys.executable, "-m", "hivau.models.train", "--release", str(demo_release), "--preset",
                            "tiny", "--out", str(tmp_path / "run"), "--max-steps", "2", "--scorer-epochs", "1",
                            "--batch-size", "2", "--num-threads", "1", "--preset-options", '{"image_size": 64}'],
                           capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert train.returncode == 0, train.stderr[-3000:]
    model, out = tmp_path / "run" / "model", tmp_path / "export"
    run = hivau_cli("export-frames", "--release", demo_release, "--out", out, "--model", model, "--frames", "4",
                    "--device", "cpu")
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    summary = json.loads((out / "export.json").read_text())
    assert summary["sampler"] == {"clip": "uniform", "event": "ats", "video": "ats"} and summary["rejects"] == 0
    frames_of = check_frame_export(demo_release, out, 4)
    scores = model_scores(model, "cpu")
    for level in ("event", "video"):
        row = next(r for s, t in parquet_rows(demo_release).items() for r in t.itertuples() if r.level == level)
        media = demo_release / row.media_path
        expected = select_frames(level, scores(media), 4, "ats")
        assert frames_of[row.item_id] == frame_paths(Item(row.item_id, level, row.split, row.media_path), expected)
