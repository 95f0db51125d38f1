"""Verifiable tasks in a release: each answer checkable against the store's labels and times, the right letter
balanced over A-D, the same tasks from the same seed, and VAU-R1's CSV columns."""

from __future__ import annotations

import csv
import json
from collections import Counter

import pyarrow.parquet as pq
import pytest

from hivau.schemas.item import Tables
from hivau.schemas.records import CHOICE_LETTERS, VAU_R1_COLUMNS, read_vau_rows
from hivau.tasks.release.publish import ReleaseSettings, instruction_rows, video_splits
from hivau.tasks.release.vau import NORMAL, vau_tasks
from hivau.workspace import Workspace

pytestmark = pytest.mark.prefect_server


def span_of(solution: str) -> tuple[float, float]:
    start, end = (float(x) for x in solution.strip("[]").split(","))
    return start, end


def test_every_task_has_the_answer_the_store_gives(demo_release):
    tasks = read_vau_rows(demo_release, "train") + read_vau_rows(demo_release, "test")
    data = [r for s in ("train", "test") for r in pq.read_table(demo_release / "data" / f"{s}.parquet").to_pylist()]
    events = {r["item_id"]: r for r in data if r["level"] == "event"}
    by_task = Counter((t.level, t.task) for t in tasks)
    assert {task for _, task in by_task} == {"choice", "grounding", "classify", "detect"}
    assert by_task[("clip", "detect")] == len({r["item_id"] for r in data if r["level"] == "clip"})
    assert len({t.id for t in tasks}) == len(tasks)
    for t in tasks:
        assert t.split in ("train", "test") and (demo_release / t.media_path).is_file(), t.id
        if t.task == "detect":
            assert t.solution == ("yes" if t.is_anomaly else "no")
        elif t.task == "classify":
            assert t.solution == (t.labels[0] if t.is_anomaly else NORMAL)
        elif t.task == "choice":
            assert len(set(t.options)) == 4 and t.options[CHOICE_LETTERS.index(t.solution)] == t.answer_text
            assert all(f"{letter}. {text}" in t.question for letter, text in zip(CHOICE_LETTERS, t.options))
            if t.id.endswith(":class"):
                assert t.answer_text == (t.labels[0] if t.is_anomaly else NORMAL)
                assert NORMAL not in t.options or t.is_anomaly or t.answer_text == NORMAL
        else:  # grounding: in seconds of the whole source video
            assert "/videos/" in t.media_path
            if not t.is_anomaly:
                assert t.solution == "[-1, -1]" and t.level == "video"
            elif t.level == "event":
                assert span_of(t.solution) == pytest.approx((t.start_s, t.end_s), abs=0.05)
            else:
                mine = [e for e in events.values() if e["source_video"] == t.source_video and e["is_anomaly"]]
                assert span_of(t.solution) == pytest.approx(
                    (min(e["start_s"] for e in mine), max(e["end_s"] for e in mine)), abs=0.05)
            start, end = span_of(t.solution)
            assert start == end == -1 or 0 <= start < end <= t.duration_s + 0.05
    # the right letter is spread evenly: no "always A"
    letters = Counter(t.solution for t in tasks if t.task == "choice")
    assert max(letters.values()) - min(letters.values()) <= 1 and set(letters) == set(CHOICE_LETTERS)
    counts = json.loads((demo_release / "manifest.json").read_text())["counts"]["vau_tasks"]
    assert sum(counts.values()) == len(tasks)


def test_the_same_seed_draws_the_same_tasks(fresh_workspace):
    ws = Workspace.at(fresh_workspace)
    tables: Tables = ws.manifest_tables()
    settings = ReleaseSettings(include_unreviewed=True)
    media = {v.video_id: f"media/{v.video_id}.mp4" for v in tables.videos}
    media |= {e.event_id: f"media/{e.event_id}.mp4" for e in tables.events}
    media |= {c.clip_id: f"media/{c.clip_id}.mp4" for c in tables.clips}
    rows = instruction_rows(tables, settings, media)
    durations = {v.video_id: v.duration_s for v in tables.videos}

    def draw(seed: int):
        return [t.model_dump() for t in vau_tasks(tables, rows, video_splits(tables, settings), media, durations, seed)]

    first = draw(0)
    assert first == draw(0)
    other = draw(1)
    assert sorted(t["id"] for t in other) == sorted(t["id"] for t in first)  # the same tasks ...
    letters = lambda tasks: {t["id"]: t["solution"] for t in tasks if t["task"] == "choice"}  # noqa: E731
    assert letters(other) != letters(first)  # ... with their answers elsewhere


def test_vau_r1_csv_has_its_columns_and_normal_videos_answer_minus_one(demo_release):
    for split in ("train", "test"):
        with open(demo_release / "vau_r1" / f"{split}.csv", newline="") as fh:
            reader = csv.DictReader(fh)
            assert tuple(reader.fieldnames) == VAU_R1_COLUMNS
            rows = list(reader)
        tasks = {t.source_video: t for t in read_vau_rows(demo_release, split, tasks=["classify"])
                 if t.level == "video"}
        assert {r["Video Name"].rsplit(".", 1)[0] for r in rows} == set(tasks)
        for r in rows:
            task = tasks[r["Video Name"].rsplit(".", 1)[0]]
            assert r["Anomaly Class"] == task.solution
            if task.solution == NORMAL:
                assert (r["Start Time"], r["End Time"]) == ("-1", "-1")
            else:
                assert float(r["Start Time"]) < float(r["End Time"])
            assert r["Correct Option"] in CHOICE_LETTERS and r[f"Option {'ABCD'.index(r['Correct Option']) + 1}"]
