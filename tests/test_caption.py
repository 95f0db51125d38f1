"""Clip captioners on real cut clips: a tiny transformers VLM loaded from a folder, an OpenAI-compatible VLM
server over HTTP, and the annotations' own captions."""

from __future__ import annotations

import base64

import cv2
import numpy as np
import pytest
from helpers import make_video
from openai_server import FakeOpenAI, Status
from tiny_vlm import build_tiny_llava

from hivau.schemas import reasons
from hivau.schemas.item import AnnotatedClip, AnnotatedEvent, VideoItem
from hivau.tasks.build.plan import PlanSettings, plan_video
from hivau.tasks.shards import cut_item, probe_item
from hivau.tasks.text.caption import CaptionSettings, TransformersCaptioner, caption_item, make_captioner
from hivau.tasks.text.llm import LLMSettings
from hivau.workspace import Workspace


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return str(build_tiny_llava(tmp_path_factory.mktemp("tiny-llava")))


@pytest.fixture()
def cut(tmp_path):
    """One cut video: an event with a human-captioned clip and an uncaptioned one."""
    video = make_video(tmp_path / "videos" / "vc.mp4", 8.0, fps=25, size="96x64", gop=25)
    item = VideoItem(video_id="vc", path=str(video), source_format="hivau", labels=["Fighting"],
                     events=[AnnotatedEvent(start_s=1.0, end_s=5.0, clips=[
                         AnnotatedClip(start_s=1.0, end_s=3.0, caption="A man walks to the door."),
                         AnnotatedClip(start_s=3.0, end_s=5.0)])])
    ws = Workspace.at(tmp_path / "ws")
    item = cut_item(plan_video(probe_item(item), PlanSettings()), ws, "accurate")
    return item, ws


class CountingCaptioner(TransformersCaptioner):
    calls = 0

    def _generate(self, clips):
        type(self).calls += len(clips)
        return super()._generate(clips)


def test_transformers_captioner_from_a_local_folder(cut, tiny_model):
    item, ws = cut
    settings = CaptionSettings(backend="transformers", model=tiny_model, frames_per_clip=4, batch_size=2,
                               max_new_tokens=6)
    captioner = CountingCaptioner(tiny_model, settings)
    assert (captioner.device, str(captioner.dtype)) == ("cpu", "torch.float32")  # no CUDA here
    done = caption_item(item, ws, captioner, settings)
    by_id = {c.item_id: c for c in done.captions}
    assert by_id["vc_E0C0"].text == "A man walks to the door." and by_id["vc_E0C0"].provenance == "human"
    drafted = by_id["vc_E0C1"]
    assert drafted.provenance == "auto_draft" and drafted.text.strip()
    assert (drafted.generator.backend, drafted.generator.model, drafted.generator.prompt_version) == \
           ("transformers", tiny_model, "clip_caption@1")
    # the four frames it saw, on the source video's clock, inside the clip [3, 5)
    assert len(drafted.frame_times) == 4 and all(3.0 <= t < 5.0 for t in drafted.frame_times)
    assert drafted.frame_times == sorted(drafted.frame_times)
    assert CountingCaptioner.calls == 1
    # a re-run reuses the stored caption; the model is not called again
    again = caption_item(item, ws, captioner, settings)
    assert CountingCaptioner.calls == 1 and {c.item_id: c for c in again.captions}["vc_E0C1"] == drafted
    # recaption_provided also drafts over the human caption's clip (the human text is replaced only in the draft)
    both = caption_item(item, ws, captioner, settings.model_copy(update={"recaption_provided": True}))
    assert {c.item_id: c.provenance for c in both.captions} == {"vc_E0C0": "auto_draft", "vc_E0C1": "auto_draft"}


def test_batching_gives_the_same_captions_as_one_by_one(tiny_model):
    from hivau.tasks.text.caption import ClipFrames

    rng = np.random.default_rng(1)
    clips = [ClipFrames(f"c{i}", 0.0, 1.0, rng.integers(0, 255, (n, 48, 64, 3), dtype=np.uint8), [0.0] * n)
             for i, n in enumerate((4, 3, 4, 2, 4))]
    batched = TransformersCaptioner(tiny_model, CaptionSettings(model=tiny_model, batch_size=4, max_new_tokens=8))
    single = TransformersCaptioner(tiny_model, CaptionSettings(model=tiny_model, batch_size=1, max_new_tokens=8))
    assert batched.caption(clips) == single.caption(clips)


def test_openai_captioner_sends_frames_as_images(cut, tmp_path):
    item, ws = cut
    with FakeOpenAI() as srv:
        settings = CaptionSettings(backend="openai", model="tiny-vlm", frames_per_clip=3,
                                   llm=LLMSettings(base_url=srv.base_url, backoff_s=0.01))
        done = caption_item(item, ws, make_captioner(settings, ws), settings)
        [request] = srv.completions
    drafted = {c.item_id: c for c in done.captions}["vc_E0C1"]
    assert drafted.text == "A scene seen in 3 frames from 3.0 s to 5.0 s."
    assert (drafted.generator.backend, drafted.generator.model) == ("openai", "tiny-vlm")
    assert len(drafted.frame_times) == 3
    images = [c["image_url"]["url"] for c in request.body["messages"][1]["content"] if c["type"] == "image_url"]
    assert len(images) == 3
    frame = cv2.imdecode(np.frombuffer(base64.b64decode(images[0].split(",", 1)[1]), np.uint8), cv2.IMREAD_COLOR)
    assert frame.shape == (64, 96, 3)  # the clip's own size (smaller than frame_short_side)
    assert request.body["response_format"]["json_schema"]["name"] == "CaptionOut"


def test_failed_and_missing_captions_are_recorded(cut):
    item, ws = cut
    with FakeOpenAI(responder=lambda body: Status(500)) as srv:
        settings = CaptionSettings(backend="openai", model="tiny-vlm", frames_per_clip=2,
                                   llm=LLMSettings(base_url=srv.base_url, max_attempts=2, backoff_s=0.01))
        done = caption_item(item, ws, make_captioner(settings, ws), settings)
    [failure] = done.quarantine
    assert (failure.item_id, failure.stage, failure.reason) == ("vc_E0C1", "caption", reasons.LLM_REQUEST_FAILED)
    assert [c.item_id for c in done.captions] == ["vc_E0C0"]  # nothing stored for the failed clip
    provided = caption_item(item, ws, None, CaptionSettings())
    assert [(q.item_id, q.reason) for q in provided.quarantine] == [("vc_E0C1", reasons.CAPTION_MISSING)]
    with pytest.raises(ValueError, match="captioner.model"):
        make_captioner(CaptionSettings(backend="transformers"), ws)


def one_clip_videos(tmp_path, prefix: str, n: int) -> Workspace:
    """A workspace of `n` cut 2-second Fighting videos of one uncaptioned clip each. Each has its own hue, so that
    no two requests about them are the same (the answer cache would otherwise serve one request from the other's
    answer whenever the first finished before the second was sent: a count that depends on timing)."""
    ws = Workspace.at(tmp_path / "ws")
    for i in range(n):
        video = make_video(tmp_path / "videos" / f"{prefix}{i}.mp4", 2.0, fps=25, size="64x48", gop=25,
                           extra=("-vf", f"hue=h={40 * i}"))
        item = VideoItem(video_id=f"{prefix}{i}", path=str(video), source_format="hivau", labels=["Fighting"],
                         events=[AnnotatedEvent(start_s=0.2, end_s=1.8, clips=[AnnotatedClip(start_s=0.2, end_s=1.8)])])
        ws.put_video(cut_item(plan_video(probe_item(item), PlanSettings()), ws, "copy"))
    return ws


def test_openai_captioner_keeps_requests_in_flight_across_videos(tmp_path):
    """Six videos of one uncaptioned clip each, concurrency 4: four requests at once, so across videos."""
    import threading
    import time

    from hivau.tasks.text.caption import caption_stream

    ws = one_clip_videos(tmp_path, "s", 6)
    inflight, peak, started, lock = [0], [0], [0], threading.Condition()
    with FakeOpenAI() as srv:
        base = srv.responder

        def slow(body):
            # each request is held until four are in flight (or the last two have started), so a loaded machine
            # cannot make the peak look lower than what the client keeps open; a client that keeps fewer open
            # only waits out the timeout
            with lock:
                inflight[0] += 1
                started[0] += 1
                peak[0] = max(peak[0], inflight[0])
                lock.notify_all()
                lock.wait_for(lambda: inflight[0] >= 4 or started[0] > 4, timeout=5)
            time.sleep(0.05)
            with lock:
                inflight[0] -= 1
            return base(body)

        srv.responder = slow
        settings = CaptionSettings(backend="openai", model="tiny-vlm", frames_per_clip=2,
                                   llm=LLMSettings(base_url=srv.base_url, concurrency=4))
        done = []
        usage = caption_stream(ws.iter_videos(), ws, settings, done.append)
        again = caption_stream(ws.iter_videos(), ws, settings, lambda item: None)  # all from the cache
        sent = len(srv.completions)
    assert peak[0] == 4 and sent == 6 and usage.requests == 6 and again.requests == 0
    assert sorted(it.video_id for it in done) == [f"s{i}" for i in range(6)]
    assert all(len(it.captions) == 1 and it.captions[0].generator.backend == "openai" for it in done)


def test_the_optional_vlm_judge_sees_the_frames_and_flags_the_caption(tmp_path):
    """The judge gets the clip's frames and the caption; a discard becomes a `vlm_judge` error on the clip, and
    a re-run asks nothing new (captions and verdicts come from the cache)."""
    import json

    from openai_server import Reply, grounded_answer

    from hivau.tasks.text.caption import caption_stream

    ws = one_clip_videos(tmp_path, "j", 2)

    def responder(body):
        if body["response_format"]["json_schema"]["name"] == "JudgeOut":
            images = sum(1 for c in body["messages"][1]["content"] if c.get("type") == "image_url")
            return Reply(json.dumps({"faithfulness": 1, "label_consistency": 2, "completeness": 3,
                                     "verdict": "discard", "reason": f"saw {images} frames, no fight"}))
        return Reply(json.dumps(grounded_answer(body)))

    with FakeOpenAI(responder) as srv:
        settings = CaptionSettings(backend="openai", model="tiny-vlm", frames_per_clip=2, judge=True,
                                   llm=LLMSettings(base_url=srv.base_url))
        done = []
        usage = caption_stream(ws.iter_videos(), ws, settings, done.append)
        sent = len(srv.completions)
        caption_stream(ws.iter_videos(), ws, settings, lambda item: None)
        assert len(srv.completions) == sent == 4 and usage.by_prompt["vlm_judge@1"] == 2
    for item in done:
        (flag,) = item.checks
        assert (flag.check, flag.severity, flag.level) == ("vlm_judge", "error", "clip")
        assert "saw 2 frames" in flag.evidence and flag.score == 1.0
