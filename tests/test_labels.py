"""A video's labels have one owner, its record: a reviewer who keeps anomalous spans on an unannotated video makes
the video's manifest row and its release rows anomalous, as its events are (the real path: stored review -> build
-> release, with drafts from the OpenAI-compatible test server)."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
from openai_server import FakeOpenAI

pytestmark = pytest.mark.prefect_server


def test_a_kept_proposal_makes_the_video_row_and_its_release_rows_anomalous(prefect_api, demo_dir, tmp_path):
    from hivau.flows.build import build_hivau
    from hivau.schemas.records import ReviewRecord
    from hivau.tasks.release.publish import ReleaseSettings, build_release
    from hivau.tasks.text.caption import CaptionSettings
    from hivau.tasks.text.llm import LLMSettings
    from hivau.tasks.text.rollup import RollupSettings
    from hivau.workspace import Workspace

    videos = tmp_path / "videos"
    videos.mkdir()
    shutil.copy(demo_dir / "videos" / "demo_fall_000.mp4", videos / "demo_fall_000.mp4")
    ws_path = tmp_path / "ws"
    ws = Workspace.at(ws_path)
    with FakeOpenAI() as srv:
        llm = LLMSettings(base_url=srv.base_url, model="demo-llm", backoff_s=0.01)
        captioner = CaptionSettings(backend="openai", model="demo-vlm", frames_per_clip=2, llm=llm)

        def build() -> None:
            build_hivau(videos_dir=str(videos), workspace=str(ws_path), format="none", cut_mode="copy",
                        captioner=captioner, rollup=RollupSettings(llm=llm), review={"enabled": "off"})

        build()
        (video,) = ws.read_records("videos")
        assert video.labels == [] and not video.is_anomaly and not ws.read_records("events")
        # the reviewer keeps the fall (8 s - 14 s) as the scorer proposed it, stored as a pull stores it
        ws.put_review(ReviewRecord(item_id="demo_fall_000", level="video", video_id="demo_fall_000",
                                   project="hivau ws video review", task_id=1, annotation_id=1, verdict="accept",
                                   events=[[8.0, 14.0]], updated_at="2026-12-05T00:00:00Z"))
        build()
    events = ws.read_records("events")
    assert [(e.start_s, e.end_s, e.labels, e.is_anomaly) for e in events] == [(8.0, 14.0, ["Anomaly"], True)]
    (video,) = ws.read_records("videos")
    assert video.labels == ["Anomaly"] and video.is_anomaly  # the video's row says what its events say

    release = build_release(ws, ReleaseSettings(include_unreviewed=True, test_fraction=0.0))
    rows = pd.read_parquet(release / "data" / "train.parquet")
    video_rows = rows[rows.level == "video"]
    assert "judgement" in set(video_rows.task)
    assert all(list(labels) == ["Anomaly"] for labels in video_rows.labels) and video_rows.is_anomaly.all()
    judgement = video_rows[video_rows.task == "judgement"].answer.iloc[0]
    assert judgement.startswith("An anomaly occurs")  # the roll-up was told the video is anomalous
