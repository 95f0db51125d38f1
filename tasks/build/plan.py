"""Hierarchical decoupling: turn a probed VideoItem's annotations into planned events and clips.

Plain logic over numbers already probed (no file I/O); the cutter then writes what is planned here.
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, Field

from hivau.schemas import reasons
from hivau.schemas.item import AnnotatedClip, AnnotatedEvent, VideoItem
from hivau.schemas.records import HUMAN, Caption, Clip, Event, Summary
from hivau.tasks.build import segments as seg


class ClipPolicy(BaseModel):
    """How events are split into clips."""

    mode: Literal["annotated", "even", "fixed"] = Field(
        "annotated", description="annotated: the annotation's clips/spans (events without any are split evenly); "
                                 "even: K equal clips per event; fixed: clips of length_s seconds")
    k: int = Field(3, ge=1, description="clips per event for `even`")
    length_s: float = Field(4.0, gt=0, description="clip length for `fixed`")
    min_length_s: float = Field(1.0, ge=0, description="a shorter tail joins the previous clip (`fixed`)")


class NormalSegmentPolicy(BaseModel):
    """Segments drawn from normal videos that come with no events."""

    count: int = Field(2, ge=0, description="segments per normal video")
    length_s: float = Field(8.0, gt=0, description="segment length in seconds")


class SpanPolicy(BaseModel):
    """How UCA captioned spans are assigned to events (see README: 'Assigning UCA spans to events')."""

    rule: seg.AssignRule = "max_overlap"
    min_overlap: float = Field(0.5, ge=0, le=1, description="share of a span that must lie in its event (max_overlap)")
    normal_merge_gap_s: float = Field(1.0, ge=0, description="normal videos: spans closer than this form one event")


class PlanSettings(BaseModel):
    clips: ClipPolicy = ClipPolicy()
    normal: NormalSegmentPolicy = NormalSegmentPolicy()
    spans: SpanPolicy = SpanPolicy()
    seed: int = 0
    tolerance_frames: float = Field(1.0, ge=0, description="ends past the video by up to this many frames are clamped")


def _reject(item: VideoItem, item_id: str, level: str, check_or_reason, detail: str = "") -> None:
    reason = getattr(check_or_reason, "reason", check_or_reason)
    detail = getattr(check_or_reason, "detail", "") or detail
    item.quarantine.append(item.failure(item_id, level, "validate", reason, detail))


def _resolve_units(events: list[AnnotatedEvent], fps: float) -> list[AnnotatedEvent]:
    """Frame-numbered events (UCF-Crime label files) in seconds, using the probed frame rate."""
    return [e.model_copy(update={"start_s": e.start_s / fps, "end_s": e.end_s / fps, "unit": "s"})
            if e.unit == "frame" else e for e in events]


def _events_from_spans(item: VideoItem, settings: PlanSettings, duration: float, fps: float) -> list[AnnotatedEvent]:
    """Assign UCA spans to events; a normal video's spans are merged into normal events first."""
    valid: list[AnnotatedClip] = []
    for j, span in enumerate(item.spans):
        check = seg.check_segment(span.start_s, span.end_s, duration, fps, settings.tolerance_frames)
        if check.ok:
            valid.append(span.model_copy(update={"start_s": check.start_s, "end_s": check.end_s}))
        else:
            _reject(item, f"{item.video_id}_S{j}", "span", check)
    events = _resolve_units(item.events or [], fps)
    rule, min_overlap = settings.spans.rule, settings.spans.min_overlap
    if not events and not item.is_anomaly and valid:
        merged = seg.merge_spans([(s.start_s, s.end_s) for s in valid], settings.spans.normal_merge_gap_s)
        events = [AnnotatedEvent(start_s=s, end_s=e) for s, e in merged]
        rule, min_overlap = "any_overlap", 0.0
    owners = seg.assign_spans([(s.start_s, s.end_s) for s in valid], [(e.start_s, e.end_s) for e in events],
                              rule, min_overlap)
    for span, owner in zip(valid, owners):
        if owner is None:
            _reject(item, f"{item.video_id}@{span.start_s:.1f}-{span.end_s:.1f}", "span", reasons.SPAN_UNASSIGNED,
                    f"span [{span.start_s}, {span.end_s}] lies in no event under rule {rule!r}")
        else:
            events[owner].clips.append(span)
    for event in events:
        event.clips.sort(key=lambda c: (c.start_s, c.end_s))
    return events


def _clip_spans(event: Event, annotated: list[AnnotatedClip], policy: ClipPolicy) -> list[tuple[str, float, float, Optional[str]]]:
    if policy.mode == "annotated" and annotated:
        return [("annotation", c.start_s, c.end_s, c.caption) for c in annotated]
    if policy.mode == "fixed":
        return [("split_fixed", s, e, None) for s, e in seg.split_fixed(event.start_s, event.end_s, policy.length_s,
                                                                           policy.min_length_s)]
    return [("split_even", s, e, None) for s, e in seg.split_even(event.start_s, event.end_s, policy.k)]


def plan_video(item: VideoItem, settings: PlanSettings) -> VideoItem:
    """Validate annotation times against the probe and plan events, clips and imported human texts."""
    assert item.probe is not None, "plan_video needs a probed item"
    duration, fps = item.probe.duration_s, item.probe.fps
    item = item.model_copy(deep=True)
    vid, labels, anomalous = item.video_id, item.labels, item.is_anomaly

    if item.events is None:  # unannotated folder: a video-level item until events are proposed
        annotated, origin = [], "annotation"
    elif item.spans:
        annotated, origin = _events_from_spans(item, settings, duration, fps), "annotation"
    elif item.events:
        annotated, origin = _resolve_units(item.events, fps), "annotation"
    elif not anomalous:
        spans = seg.sample_normal_segments(vid, duration, settings.normal.count, settings.normal.length_s, settings.seed)
        annotated, origin = [AnnotatedEvent(start_s=s, end_s=e) for s, e in spans], "normal_sample"
    else:
        annotated, origin = [], "annotation"

    kept: list[tuple[int, AnnotatedEvent, seg.SegmentCheck]] = []
    for i, ev in enumerate(annotated):
        check = seg.check_segment(ev.start_s, ev.end_s, duration, fps, settings.tolerance_frames)
        if check.ok:
            kept.append((i, ev, check))
        else:
            _reject(item, f"{vid}_E{i}", "event", check.reason,
                    f"{check.detail}" + (f"; its {len(ev.clips)} clips go with it" if ev.clips else ""))
    clashes = seg.overlapping([(c.start_s, c.end_s) for _, _, c in kept])
    for pos, other in clashes.items():
        i, ev, check = kept[pos]
        j = kept[other][0]
        _reject(item, f"{vid}_E{i}", "event", reasons.EVENT_OVERLAP,
                f"[{check.start_s}, {check.end_s}] overlaps {vid}_E{j} [{kept[other][2].start_s}, {kept[other][2].end_s}]"
                + (f"; its {len(ev.clips)} clips go with it" if ev.clips else ""))
    kept = [k for pos, k in enumerate(kept) if pos not in clashes]

    for i, ev, check in kept:
        event = Event(event_id=f"{vid}_E{i}", video_id=vid, index=i, start_s=round(check.start_s, 6),
                      end_s=round(check.end_s, 6), labels=labels, is_anomaly=anomalous, origin=origin,
                      notes=list(check.notes))
        item.planned_events.append(event)
        if ev.summary or ev.summary_split:
            split = ev.summary_split
            item.summaries.append(Summary(item_id=event.event_id, level="event", video_id=vid, text=ev.summary or "",
                                          judgement=split and split.judgement, description=split and split.description,
                                          analysis=split and split.analysis, provenance="human", generator=HUMAN))
        for j, (clip_origin, s, e, caption) in enumerate(_clip_spans(event, ev.clips, settings.clips)):
            clip_id = f"{event.event_id}C{j}"
            clip_check = seg.check_segment(s, e, duration, fps, settings.tolerance_frames)
            if not clip_check.ok:
                _reject(item, clip_id, "clip", clip_check)
                continue
            notes = list(clip_check.notes)
            if clip_check.start_s < event.start_s - 1e-6 or clip_check.end_s > event.end_s + 1e-6:
                notes.append(f"clip extends outside its event [{event.start_s}, {event.end_s}]")
            if item.source_format == "uca" and clip_origin == "annotation":
                clip_origin = "span"
            item.planned_clips.append(Clip(clip_id=clip_id, event_id=event.event_id, video_id=vid, index=j,
                                           start_s=round(clip_check.start_s, 6), end_s=round(clip_check.end_s, 6),
                                           labels=labels, is_anomaly=anomalous, origin=clip_origin, notes=notes))
            if caption:
                item.captions.append(Caption(item_id=clip_id, level="clip", video_id=vid, text=caption.strip(),
                                             provenance="human", generator=HUMAN))
    if item.video_summary or item.video_summary_split:
        split = item.video_summary_split
        item.summaries.append(Summary(item_id=vid, level="video", video_id=vid, text=item.video_summary or "",
                                      judgement=split and split.judgement, description=split and split.description,
                                      analysis=split and split.analysis, provenance="human", generator=HUMAN))
    item.status = "planned"
    return item
