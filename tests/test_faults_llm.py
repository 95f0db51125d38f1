"""Fault 4: the OpenAI-compatible server gone mid roll-up or captioning. The real HTTP test server's socket is closed
(connections refused, requests in flight cut) and opened again on the same port: requests wait and go on when it
is back; when it is not, each item gets an `llm_unreachable` record, and a re-run sends only what is missing."""

from __future__ import annotations

import json
import threading
import time

import pytest
from helpers import make_video
from openai_server import Drop, FakeOpenAI, Gateway, Reply, grounded_answer, schema_name
from rollup_items import cut_item

from hivau.schemas import reasons
from hivau.schemas.item import AnnotatedClip, AnnotatedEvent, VideoItem
from hivau.tasks.build.plan import PlanSettings, plan_video
from hivau.tasks.shards import cut_item as cut_video
from hivau.tasks.shards import probe_item
from hivau.tasks.text.caption import CaptionSettings, caption_stream
from hivau.tasks.text.llm import LLMSettings, public_url
from hivau.tasks.text.rollup import ROLLUP_STAGES, RollupSettings, run_rollup
from hivau.workspace import Workspace

SECRET = "sk-fault4-d0-not-leak"
# the outage is waited for `outage_s`; probes start at backoff_s and back off to probe_max_s
FAST = dict(backoff_s=0.1, backoff_max_s=0.2, probe_max_s=0.5, timeout_s=10.0, concurrency=4)


def rollup_settings(srv: FakeOpenAI, **llm) -> RollupSettings:
    return RollupSettings(backend="openai", llm=LLMSettings(base_url=srv.base_url, model="test-model",
                                                            **{**FAST, **llm}))


class Background:
    """`fn()` in a thread; `join()` gives its result or raises its exception."""

    def __init__(self, fn):
        self.result, self.error = None, None
        self.thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self.thread.start()

    def _run(self, fn) -> None:
        try:
            self.result = fn()
        except BaseException as exc:  # handed to the test thread
            self.error = exc

    def join(self, timeout: float):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"still running after {timeout} s"
        if self.error is not None:
            raise self.error
        return self.result


def stop_after(srv: FakeOpenAI, answered: int, timeout: float = 60) -> float:
    """Stop the server once it has answered `answered` completions (others are in flight then); the time."""
    deadline = time.monotonic() + timeout
    while len(srv.answered) < answered:
        assert time.monotonic() < deadline, "the run did not get far enough to be cut"
        time.sleep(0.01)
    srv.stop()
    return time.monotonic()


def asked(served) -> list[str]:
    """Each request as what it asks: the schema and the messages (video summaries carry their events' answers)."""
    return [schema_name(s.body) + json.dumps(s.body["messages"], sort_keys=True) for s in served]


def outage_records(items) -> list:
    return [q for it in items for q in it.quarantine if q.reason == reasons.LLM_UNREACHABLE]


def assert_complete(items, n_events: int = 2) -> None:
    for item in items:
        assert not item.quarantine, item.quarantine
        n = n_events + 1
        assert len(item.summaries) == n and len(item.qa) == 7 * n and len(item.chains) == n


def test_server_gone_for_seconds_mid_rollup_is_waited_for(tmp_path, monkeypatch):
    """Gone for 5 s with 4 requests in flight: they and the rest wait (no per-request retries against a dead
    port), then every answer lands; nothing is quarantined and no request is answered twice."""
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    items = [cut_item(f"w{i}", offset_s=i) for i in range(8)]
    outage = 5.0
    with FakeOpenAI(latency_s=0.1) as srv:
        settings = rollup_settings(srv, outage_s=60)
        run = Background(lambda: run_rollup(items, tmp_path / "cache", settings))
        stop_after(srv, answered=12)
        time.sleep(outage)
        srv.start()
        result = run.join(120)
        answered = asked(srv.answered)
    assert_complete(result.items)
    assert result.usage.failed_items == 0
    assert len(answered) == len(set(answered)) == 8 * 9  # each request answered once: none lost, none repeated
    usage = result.usage
    assert usage.unreachable_s >= outage / 2  # the client saw the outage (and did not call it over before it was)
    # the requests cut or refused, each tried again once the server is back: the probe did the asking meanwhile
    assert 1 <= usage.retries <= 3 * settings.llm.concurrency, usage.retries



def test_server_gone_behind_a_gateway_answering_502_is_waited_for_too(tmp_path, monkeypatch):
    """The server behind a proxy (nginx, LiteLLM) gone for 5 s: the proxy answers 502 to the requests and to the
    probe, which is the same outage as a refused connection, not five counted tries each; every answer lands."""
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    items = [cut_item(f"p{i}", offset_s=i) for i in range(6)]
    outage = 5.0
    with FakeOpenAI(latency_s=0.1) as srv, Gateway(srv) as gateway:
        settings = RollupSettings(backend="openai", llm=LLMSettings(base_url=gateway.base_url, model="test-model",
                                                                    **{**FAST, "outage_s": 60, "max_attempts": 2}))
        run = Background(lambda: run_rollup(items, tmp_path / "cache", settings))
        stop_after(srv, answered=12)
        time.sleep(outage)
        bad_gateways = gateway.gateway_errors
        srv.start()
        result = run.join(120)
        answered = asked(srv.answered)
    assert bad_gateways >= 2  # the requests cut or sent meanwhile, and the probes, all got the proxy's 502
    assert_complete(result.items)
    assert result.usage.failed_items == 0
    assert len(answered) == len(set(answered)) == 6 * 9
    assert result.usage.unreachable_s >= outage / 2


def test_server_gone_for_good_quarantines_and_a_rerun_sends_only_what_is_missing(tmp_path, monkeypatch):
    """Gone for longer than `outage_s`: the run ends, each item not drafted has its reason (the URL and how long in
    the detail, never the key); with the server back, a re-run sends exactly the requests never answered."""
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    items = [cut_item(f"g{i}", offset_s=i) for i in range(6)]
    cache = tmp_path / "cache"
    with FakeOpenAI(latency_s=0.1) as srv:
        settings = rollup_settings(srv, outage_s=1.5)
        run = Background(lambda: run_rollup(items, cache, settings))
        stopped = stop_after(srv, answered=10)
        first = run.join(60)  # it ends while the server is still gone
        gave_up_s = time.monotonic() - stopped
        answered = set(asked(srv.answered))

        records = outage_records(first.items)
        assert records and gave_up_s < 30
        # what is not drafted has a reason: the server, or (for a video whose events all failed) no input text
        assert {q.reason for it in first.items for q in it.quarantine} <= {reasons.LLM_UNREACHABLE,
                                                                            reasons.NO_INPUT_TEXT}
        assert first.usage.failed_items == sum(1 for it in first.items for q in it.quarantine
                                               if q.stage in ROLLUP_STAGES)
        for q in records:
            assert q.stage in ROLLUP_STAGES
            assert srv.base_url in q.detail and "could not be reached for" in q.detail and SECRET not in q.detail
        assert first.usage.unreachable_s > 0

        srv.start()  # back, on the same port: the re-run, from the items as the first run left them
        sent = len(srv.completions)
        second = run_rollup(first.items, cache, settings)
        resent = asked(srv.completions[sent:])
        sent = len(srv.completions)
        run_rollup(items, tmp_path / "fresh", settings)  # a whole run from nothing: every request the data needs
        reference = set(asked(srv.completions[sent:]))
        sent = len(srv.completions)
        third = run_rollup(second.items, cache, settings)
        assert len(srv.completions) == sent and third.usage.cache_hits == 6 * 9
    assert_complete(second.items)
    assert not outage_records(second.items)
    # exactly the requests of a whole run whose answers the first run did not get, each once
    assert len(resent) == len(set(resent)) and set(resent) == reference - answered
    assert second.usage.requests == len(resent) and second.usage.cache_hits == 6 * 9 - len(resent)


def test_a_request_the_live_server_keeps_dropping_fails_alone(tmp_path):
    """A connection dropped while the server answers everything else is that request's trouble, not an outage:
    it gets its counted tries and `llm_request_failed`; the run does not wait out `outage_s`."""
    def responder(body):
        if schema_name(body) == "SummaryOut" and "[6.0-10.0 s]" in body["messages"][1]["content"]:
            return Drop()
        return Reply(json.dumps(grounded_answer(body)))

    with FakeOpenAI(responder) as srv:
        started = time.monotonic()
        run = run_rollup([cut_item("d0", offset_s=1.0), cut_item("d1")], tmp_path / "cache",
                         rollup_settings(srv, outage_s=300, max_attempts=3))
        took = time.monotonic() - started
        dropped = [s for s in srv.completions if s.action == "Drop"]
    bad, good = run.items
    [failure] = bad.quarantine
    assert (failure.item_id, failure.stage, failure.reason) == ("d0_E0", "summarize", reasons.LLM_REQUEST_FAILED)
    # its first drop counts only if the server answered another request meanwhile: it may look like an outage
    assert "failed 3 times" in failure.detail and len(dropped) in (3, 4)
    assert_complete([good])
    assert took < 60


def test_an_error_in_one_video_is_raised_not_lost(tmp_path):
    """Not a request failure (those are records) but a bug or a failed save: the run raises it once the videos in
    flight are done, instead of dropping that video without a word."""
    def save(item) -> None:
        if item.video_id == "e1":
            raise RuntimeError("could not save e1")

    with FakeOpenAI() as srv:
        with pytest.raises(RuntimeError, match="could not save e1"):
            # one video at a time: e1 fails and is done long before the last video starts
            run_rollup([cut_item(f"e{i}", offset_s=i) for i in range(3)], tmp_path / "cache", rollup_settings(srv),
                       on_done=save, window=1)
        assert len(srv.completions) == 2 * 9  # e0 and e1: no new video after the failure


def one_clip_videos(tmp_path, n: int) -> Workspace:
    """`n` cut one-clip videos, each of its own hue (so that no two caption requests are the same)."""
    ws = Workspace.at(tmp_path / "ws")
    for i in range(n):
        video = make_video(tmp_path / "videos" / f"o{i}.mp4", 2.0, fps=25, size="64x48", gop=25,
                           extra=("-vf", f"hue=h={40 * i}"))
        item = VideoItem(video_id=f"o{i}", path=str(video), source_format="hivau", labels=["Fighting"],
                         events=[AnnotatedEvent(start_s=0.2, end_s=1.8, clips=[AnnotatedClip(start_s=0.2, end_s=1.8)])])
        ws.put_video(cut_video(plan_video(probe_item(item), PlanSettings()), ws, "copy"))
    return ws


def test_server_gone_mid_captioning_then_back_during_the_rerun(tmp_path):
    """Captioning: the clips the server did not answer get `llm_unreachable`; a re-run started while it is still
    gone waits for it and sends only those clips."""
    ws = one_clip_videos(tmp_path, 6)

    def captioner(srv: FakeOpenAI, outage_s: float) -> CaptionSettings:
        return CaptionSettings(backend="openai", model="tiny-vlm", frames_per_clip=2,
                               llm=LLMSettings(base_url=srv.base_url, **{**FAST, "concurrency": 2,
                                                                         "outage_s": outage_s}))

    with FakeOpenAI(latency_s=0.2) as srv:
        run = Background(lambda: caption_stream(ws.iter_videos(), ws, captioner(srv, 1.5), ws.put_video))
        stop_after(srv, answered=2)
        run.join(60)
        answered = asked(srv.answered)
        first = list(ws.iter_videos())
        records = outage_records(first)
        assert len(records) == 6 - len(answered)  # every clip not answered, and only those
        assert all(q.stage == "caption" and q.level == "clip" and srv.base_url in q.detail for q in records)
        assert sum(1 for it in first for c in it.captions if c.provenance == "auto_draft") == len(answered)

        sent = len(srv.completions)
        rerun = Background(lambda: caption_stream(ws.iter_videos(), ws, captioner(srv, 60), ws.put_video))
        time.sleep(2.0)  # still gone when the re-run starts: it waits
        srv.start()
        usage = rerun.join(60)
        resent = asked(srv.completions[sent:])
    assert len(resent) == len(records) and not set(resent) & set(answered)
    assert usage.unreachable_s > 0
    for item in ws.iter_videos():
        assert not item.quarantine and [c.provenance for c in item.captions] == ["auto_draft"]


def test_public_url_leaves_out_credentials():
    assert public_url("https://user:sk-123@llm.example.com:8443/v1?key=sk-123") == "https://llm.example.com:8443/v1"
    assert public_url(None) == "https://api.openai.com/v1"
