"""`propose-events`: the trained scorer proposes anomalous spans on unannotated videos, for review in Label Studio."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from hivau.models.data import FrameStore
from hivau.models.io import load_model
from hivau.models.proposals import Proposal, propose_events, score_video
from hivau.models.registry import resolve_model
from hivau.schemas.item import Tables
from hivau.stopping import check_stop, set_activity, stop_on_signals
from hivau.tasks.review.projects import ReviewSettings, connect
from hivau.tasks.review.push import push_proposals
from hivau.workspace import Workspace


class ProposalSettings(BaseModel):
    threshold: float = Field(0.5, ge=0, le=1, description="frame score from which a frame counts as anomalous")
    min_length_s: float = Field(1.0, ge=0, description="shorter spans are dropped")
    merge_gap_s: float = Field(1.0, ge=0, description="spans closer than this are joined")


def unannotated_videos(tables: Tables) -> list:
    """Videos that no annotation gave events (their only events, if any, are sampled normal segments)."""
    annotated = {e.video_id for e in tables.events if e.origin == "annotation"}
    return [v for v in tables.videos if v.video_id not in annotated]


@task(cache_policy=NO_CACHE)
def score_and_propose(workspace: str, model_ref: str, settings: ProposalSettings) -> dict[str, list[dict]]:
    """Score every unannotated video with the model's scorer; returns video id -> proposed spans."""
    ws = Workspace.at(workspace)
    path = resolve_model(model_ref)
    model = load_model(path)
    store = FrameStore(ws.proposal_frames, model.cfg.frame_size, model.cfg.motion_mask,
                       model.cfg.motion_threshold)
    out = {}
    videos = unannotated_videos(Tables.of(ws.iter_videos()))
    for i, video in enumerate(videos):
        set_activity(f"scoring video {i + 1} of {len(videos)} (nothing is stored until all are scored)")
        check_stop()
        scores, fps = score_video(model, store, Path(video.path))
        spans = propose_events(scores, fps, settings.threshold, settings.min_length_s, settings.merge_gap_s)
        out[video.video_id] = [vars(s) for s in spans]
    get_run_logger().info("proposed %d spans on %d unannotated videos", sum(map(len, out.values())), len(out))
    return out


@flow(name="propose-events", log_prints=True)
def propose_events_flow(
    workspace: Annotated[str, Field(description="a build-hivau workspace")],
    model: Annotated[Optional[str], Field(description="model folder, or models folder (default: the workspace's "
                                                      "registry's current model)")] = None,
    settings: ProposalSettings = ProposalSettings(),
    review: ReviewSettings = ReviewSettings(),
) -> dict:
    """Propose anomalous spans on unannotated videos; with Label Studio configured, add them to the video tasks
    as timeline predictions. Spans a reviewer keeps become events at the next build-hivau run."""
    ws = Workspace.at(workspace)
    ref = model or str(ws.models)
    with stop_on_signals(), ws.lock("propose-events"):
        spans = score_and_propose(workspace, ref, settings)
        sent = {}
        if review.should_push():
            with connect(review) as ls:
                sent = push_proposals(ws, ls, review, {v: [Proposal(**p) for p in ps] for v, ps in spans.items()},
                                      f"hivau-scorer:{Path(ref).name}")
    print(f"proposals: {sum(map(len, spans.values()))} spans on {len(spans)} unannotated videos; "
          f"sent to Label Studio for {len(sent)} videos")
    return {"spans": spans, "sent": sent}
