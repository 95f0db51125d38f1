"""Cut VideoItems built in memory (no media needed) for roll-up tests and the roll-up benchmark."""

from __future__ import annotations

from hivau.schemas.item import VideoItem
from hivau.schemas.records import HUMAN, Caption, Clip, Event, SourceVideo

ACTIONS = ["a man in a red shirt breaks the shop window", "the man grabs a bag from the counter",
           "two people run out of the shop into the street", "a grey car stops near the door"]


def cut_item(video_id: str, anomalous: bool = True, n_events: int = 2, clips_per_event: int = 2,
             offset_s: float = 0.0) -> VideoItem:
    """A video with `n_events` events of `clips_per_event` captioned clips each, captioned from ACTIONS.

    Videos built with different `offset_s` have different times, hence different prompts.
    """
    labels = ["Robbery"] if anomalous else []
    probe = SourceVideo(video_id=video_id, path=f"/videos/{video_id}.mp4", source_format="hivau", labels=labels,
                        is_anomaly=anomalous, duration_s=60.0 + offset_s, fps=25.0, n_frames=1500, width=64, height=48)
    item = VideoItem(video_id=video_id, source_format="hivau", labels=labels, probe=probe, status="cut")
    for i in range(n_events):
        start = 5.0 + 20.0 * i + offset_s
        event = Event(event_id=f"{video_id}_E{i}", video_id=video_id, index=i, start_s=start, end_s=start + 8.0,
                      labels=labels, is_anomaly=anomalous)
        item.planned_events.append(event)
        for j in range(clips_per_event):
            clip_id = f"{event.event_id}C{j}"
            s = start + 4.0 * j
            item.planned_clips.append(Clip(clip_id=clip_id, event_id=event.event_id, video_id=video_id, index=j,
                                           start_s=s, end_s=s + 4.0, labels=labels, is_anomaly=anomalous))
            text = f"{ACTIONS[(i + j) % len(ACTIONS)].capitalize()}."
            item.captions.append(Caption(item_id=clip_id, level="clip", video_id=video_id, text=text,
                                         provenance="human", generator=HUMAN))
    return item
