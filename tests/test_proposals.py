"""The scorer's event proposals: span arithmetic, and the flywheel through a real Label Studio
(unannotated videos -> proposed spans as timeline predictions -> a reviewer's correction -> events)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from pydantic import SecretStr

from hivau.models.proposals import Proposal, propose_events


def test_spans_above_threshold_are_merged_across_short_gaps_and_short_ones_dropped():
    fps = 10.0
    scores = np.zeros(200)
    scores[20:50] = 0.9    # 2.0 s - 5.0 s
    scores[55:70] = 0.7    # 0.5 s gap: joined with the first
    scores[120:125] = 0.95  # 0.5 s: too short
    scores[150:200] = 0.6  # runs to the end of the video
    spans = propose_events(scores, fps, threshold=0.5, min_length_s=1.0, merge_gap_s=1.0)
    assert [(s.start_s, s.end_s) for s in spans] == [(2.0, 7.0), (15.0, 20.0)]
    assert spans[0].score == pytest.approx(float(scores[20:70].mean()), abs=1e-4)
    assert propose_events(scores, fps, threshold=0.99) == []
    assert propose_events(np.full(30, 0.8), fps, threshold=0.5) == [Proposal(0.0, 3.0, 0.8)]


@pytest.mark.prefect_server
def test_proposals_reach_label_studio_and_a_kept_span_becomes_an_event(label_studio, review_root, demo_dir,
                                                                        prefect_api, tmp_path):
    torch = pytest.importorskip("torch")
    from hivau.flows.build import build_hivau
    from hivau.flows.propose import ProposalSettings, propose_events_flow
    from hivau.models.composed_vlm import HivauVLM
    from hivau.models.io import save_model
    from hivau.models.presets import tiny, train_tokenizer
    from hivau.tasks.manifests import pull_and_merge
    from hivau.tasks.review.labelstudio import Connection, LabelStudio
    from hivau.tasks.review.projects import ReviewSettings
    from hivau.tasks.review.results import frames_to_seconds
    from hivau.workspace import Workspace

    videos = review_root / "unannotated-videos"
    videos.mkdir()
    for name in ("demo_fall_000", "demo_normal_001"):
        shutil.copy(demo_dir / "videos" / f"{name}.mp4", videos / f"{name}.mp4")
    ws_path = review_root / "unannotated-ws"
    review = ReviewSettings(enabled="on", url=label_studio["url"], document_root=str(label_studio["document_root"]),
                            levels=["video"])
    import os

    os.environ["LABEL_STUDIO_API_KEY"] = label_studio["token"]
    try:
        build_hivau(videos_dir=str(videos), workspace=str(ws_path), format="none", review=review)
        # an untrained scorer: with threshold 0 every video gets one span over its whole length
        torch.manual_seed(0)
        model = HivauVLM(tiny(300, image_size=64, d_vision=64, d_lm=64), train_tokenizer(["a person walks."] * 5, 300))
        save_model(model, tmp_path / "scorer-model", card="# test\n")
        out = propose_events_flow(workspace=str(ws_path), model=str(tmp_path / "scorer-model"),
                                  settings=ProposalSettings(threshold=0.0), review=review)
        assert out["sent"] == {"demo_fall_000": 1, "demo_normal_001": 1}
        again = propose_events_flow(workspace=str(ws_path), model=str(tmp_path / "scorer-model"),
                                    settings=ProposalSettings(threshold=0.0), review=review)
        assert again["sent"] == {}  # the same spans are not sent twice

        ws = Workspace.at(ws_path)
        lsc = LabelStudio(Connection(label_studio["url"], SecretStr(label_studio["token"])))
        pid = {p["title"]: p["id"] for p in lsc.projects()}[review.project_title(ws, "video")]
        task = {t["data"]["item_id"]: t for t in lsc.iter_tasks(pid)}["demo_fall_000"]
        prediction = task["predictions"][-1]
        proposed = [r for r in prediction["result"] if r["from_name"] == "proposals"]
        assert proposed and prediction["model_version"] == "hivau-scorer:scorer-model"
        assert proposed[0]["value"]["ranges"][0]["start"] == 1  # frame 1 is second 0: the whole video
        # the reviewer narrows the span to the fall (frames 200-350 at 25 fps) and accepts
        result = [{"from_name": "proposals", "to_name": "video", "type": "timelinelabels",
                   "value": {"ranges": [{"start": 200, "end": 350}], "timelinelabels": ["anomaly"]}},
                  {"from_name": "verdict", "to_name": "video", "type": "choices", "value": {"choices": ["accept"]}}]
        lsc.create_annotation(task["id"], result)
        pull_and_merge(ws, lsc, review)
        start, end = frames_to_seconds(200, 350, 25.0)
        (review,) = [r for r in ws.video_reviews("demo_fall_000") if r.level == "video"]
        assert review.events == [[start, end]]
        build_hivau(videos_dir=str(videos), workspace=str(ws_path), format="none", review={"enabled": "off"})
        events = [e for e in ws.read_records("events") if e.video_id == "demo_fall_000"]
        assert [(e.start_s, e.end_s, e.is_anomaly, e.origin) for e in events] == [(start, end, True, "annotation")]
        (video,) = [v for v in ws.read_records("videos") if v.video_id == "demo_fall_000"]
        assert video.labels == ["Anomaly"] and video.is_anomaly  # the video's row agrees with its events
        assert not [e for e in ws.read_records("events") if e.video_id == "demo_normal_001"]
    finally:
        os.environ.pop("LABEL_STUDIO_API_KEY", None)
