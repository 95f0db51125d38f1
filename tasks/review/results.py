"""Drafts as Label Studio results and annotations back as ReviewRecords: the review configs' format, both ways.

Pure functions: nothing here talks to a server or touches the workspace. Label Studio's timeline counts frames
from 1; a task belongs to a segment by its video and its times (`key`), never by its position.
"""

from __future__ import annotations

import hashlib
import json
from typing import Iterable, Optional

from hivau.review_ui_config import CHAIN_CONTROL, SUMMARY_CONTROLS
from hivau.schemas.records import (
    Generator,
    Level,
    QAPair,
    ReasoningChain,
    ReviewedText,
    ReviewRecord,
    Summary,
    segment_key,
)


def seconds_to_frames(start_s: float, end_s: float, fps: float) -> tuple[int, int]:
    """Label Studio's timeline counts frames from 1; frame n shows [(n-1)/fps, n/fps)."""
    first = int(round(start_s * fps)) + 1
    return first, max(first, int(round(end_s * fps)))


def frames_to_seconds(start_frame: float, end_frame: float, fps: float) -> tuple[float, float]:
    return (start_frame - 1) / fps, end_frame / fps


def textarea(name: str, text: Optional[str]) -> list[dict]:
    if not text:
        return []
    return [{"from_name": name, "to_name": "video", "type": "textarea", "value": {"text": [text]}}]


def timeline(start_frame: int, end_frame: int) -> list[dict]:
    return [{"from_name": "anomaly", "to_name": "video", "type": "timelinelabels",
             "value": {"ranges": [{"start": start_frame, "end": end_frame}], "timelinelabels": ["event"]}}]


def model_version(generators: Iterable[Generator]) -> str:
    """`backend:model@prompt` of every generator behind a draft, so reviewers see what wrote it."""
    names = {g.backend + (f":{g.model}" if g.model and g.backend != "human" else "")
             + (f"@{g.prompt_version}" if g.prompt_version else "") for g in generators}
    return " + ".join(sorted(names)) or "none"


PROPOSALS = "proposals"  # the video config's TimelineLabels for the scorer's proposed anomalous spans


def proposal_timeline(spans_frames: list[tuple[int, int]]) -> list[dict]:
    return [{"from_name": PROPOSALS, "to_name": "video", "type": "timelinelabels",
             "value": {"ranges": [{"start": a, "end": b} for a, b in spans_frames], "timelinelabels": ["anomaly"]}}]


def canonical(result: list[dict]) -> str:
    """A result's content without Label Studio's region ids, for comparing a draft with a prediction.
    The scorer's proposals are left out: they are added beside the drafts, not part of them."""
    return content_of(result, skip=(PROPOSALS,))


def content_of(result: list[dict], skip: tuple[str, ...] = ()) -> str:
    slim = sorted((r["from_name"], r["type"], json.dumps(r["value"], sort_keys=True)) for r in result
                  if r.get("from_name") not in skip)
    return json.dumps(slim)


def draft_sha(result: list[dict]) -> str:
    """A draft's content hash (what a reviewer saw), without Label Studio's region ids."""
    return hashlib.sha256(canonical(result).encode()).hexdigest()[:16]


def summary_result(summary: Optional[Summary], pairs: list[QAPair], chain: Optional[ReasoningChain] = None) -> list[dict]:
    """An event's or video's drafts as the editor's pre-filled fields: the summary split, the chain, the pairs."""
    result = []
    if summary:
        result += textarea("summary", summary.text)
        for name in SUMMARY_CONTROLS[1:]:
            result += textarea(name, getattr(summary, name))
    if chain:
        result += textarea(CHAIN_CONTROL, chain.text)
    for pair in pairs:
        result += textarea(f"q_{pair.qa_type}", pair.question) + textarea(f"a_{pair.qa_type}", pair.answer)
    return result


def task_key(level: Level, data: dict) -> Optional[str]:
    """The segment a Label Studio task shows (tasks pushed before keys existed: from their times)."""
    if data.get("key"):
        return data["key"]
    if "video_id" not in data:
        return None
    if level == "video":
        return segment_key("video", data["video_id"])
    if data.get("start_s") is None or data.get("end_s") is None:
        return None
    return segment_key(level, data["video_id"], data["start_s"], data["end_s"])


def _user_id(completed_by) -> Optional[int]:
    """The export gives the annotator as an id; the task API as a user object."""
    return completed_by.get("id") if isinstance(completed_by, dict) else completed_by


def _seen_draft(task: dict, annotation: dict) -> tuple[Optional[int], Optional[str]]:
    """The prediction the editor was pre-filled with, and its content hash when the task still has it."""
    parent = annotation.get("parent_prediction")
    if isinstance(parent, dict):
        parent = parent.get("id")
    for p in task.get("predictions") or []:
        if isinstance(p, dict) and p.get("id") == parent and isinstance(p.get("result"), list):
            return parent, draft_sha(p["result"])
    return parent, None


def parse_annotation(level: Level, task: dict, annotation: dict, project: str) -> ReviewRecord:
    """One annotation as a ReviewRecord, verbatim: its texts, the span it was shown, and event boundaries only
    when the reviewer moved them."""
    data = task["data"]
    texts, verdict, start, end, spans = [], None, None, None, []
    for r in annotation.get("result") or []:
        value = r.get("value") or {}
        if r.get("type") == "textarea":
            joiner = "\n" if r["from_name"] == CHAIN_CONTROL else " "  # a chain is one labelled field per line
            text = joiner.join(s.strip() for s in value.get("text") or [] if s.strip())
            texts.append(ReviewedText(name=r["from_name"], text=text))
        elif r.get("type") == "choices" and r.get("from_name") == "verdict" and value.get("choices"):
            verdict = value["choices"][0]
        elif r.get("type") == "timelinelabels" and r.get("from_name") == PROPOSALS and value.get("ranges"):
            for x in value["ranges"]:
                a, b = frames_to_seconds(x["start"], x["end"], float(data["fps"]))
                spans.append([round(a + float(data["offset_s"]), 6), round(b + float(data["offset_s"]), 6)])
        elif r.get("type") == "timelinelabels" and value.get("ranges"):
            first = min(x["start"] for x in value["ranges"])
            last = max(x["end"] for x in value["ranges"])
            s, e = frames_to_seconds(first, last, float(data["fps"]))
            start, end = s + float(data["offset_s"]), e + float(data["offset_s"])
    if start is not None:
        half_frame = 0.5 / float(data["fps"])
        if abs(start - data["start_s"]) <= half_frame and abs(end - data["end_s"]) <= half_frame:
            start = end = None  # unchanged
    prediction_id, seen_sha = _seen_draft(task, annotation)
    return ReviewRecord(item_id=data["item_id"], level=level, video_id=data["video_id"], project=project,
                        task_id=task["id"], annotation_id=annotation["id"],
                        seen_start_s=None if level == "video" else data.get("start_s"),
                        seen_end_s=None if level == "video" else data.get("end_s"),
                        prediction_id=prediction_id, draft_sha=seen_sha, verdict=verdict, texts=texts,
                        start_s=None if start is None else round(start, 6),
                        end_s=None if end is None else round(end, 6),
                        events=sorted(spans), completed_by=_user_id(annotation.get("completed_by")),
                        created_at=str(annotation.get("created_at") or ""),
                        updated_at=str(annotation.get("updated_at") or ""), lead_time_s=annotation.get("lead_time"),
                        was_cancelled=bool(annotation.get("was_cancelled")), audit=bool(data.get("audit")),
                        result_json=json.dumps(annotation.get("result") or [], ensure_ascii=False))
