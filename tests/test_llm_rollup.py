"""LLM roll-up through the real `openai` client against a real HTTP server: answers, every fault, the cache."""

from __future__ import annotations

import json

import pytest
from openai_server import FakeOpenAI, Hang, MalformedBody, Reply, Status, grounded_answer
from rollup_items import cut_item

from hivau.schemas import reasons
from hivau.schemas.chains import parse_chain
from hivau.tasks.text.llm import LLMSettings, extract_json, strict_schema
from hivau.tasks.text.rollup import RollupSettings, SummaryOut, run_rollup

FAST = dict(backoff_s=0.05, backoff_max_s=0.2, timeout_s=5.0)


@pytest.fixture()
def server():
    with FakeOpenAI() as srv:
        yield srv


def settings_for(server: FakeOpenAI, **llm) -> RollupSettings:
    return RollupSettings(backend="openai", llm=LLMSettings(**{"base_url": server.base_url, "model": "test-model",
                                                               **FAST, **llm}))


def roll(items, server, tmp_path, **llm):
    return run_rollup(items, tmp_path / "cache", settings_for(server, **llm))


def failures(item, stage=None):
    return [q for q in item.quarantine if stage is None or q.stage == stage]


def test_valid_rollup_lands_on_the_right_items(server, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-unit")
    run = roll([cut_item("vidA"), cut_item("vidN", anomalous=False, n_events=1)], server, tmp_path)
    a, n = run.items
    assert run.backend == "openai" and run.model == "test-model"
    by_id = {s.item_id: s for s in a.summaries}
    assert set(by_id) == {"vidA_E0", "vidA_E1", "vidA"}
    for event in a.planned_events:
        s = by_id[event.event_id]
        assert s.provenance == "auto_draft"
        assert (s.generator.backend, s.generator.model, s.generator.prompt_version) == \
               ("openai", "test-model", "event_summary@1")
        # the server quotes the first timed caption of the prompt it was sent: this event's, not another's
        assert f"[{event.start_s:.1f}-{event.start_s + 4:.1f} s]" in s.description and s.analysis
    assert by_id["vidA"].generator.prompt_version == "video_summary@1"
    normal = {s.item_id: s for s in n.summaries}
    assert normal["vidN_E0"].analysis is None and normal["vidN"].analysis is None
    assert normal["vidN_E0"].judgement.startswith("No anomaly")
    # 5W2H: seven pairs per event and per video; "when" carries the real times
    qa = [p for p in a.qa if p.item_id == "vidA_E1"]
    assert [p.qa_type for p in qa] == ["what", "who", "where", "when", "how", "how_much", "why"]
    assert "25.0 s to 33.0 s" in next(p.answer for p in qa if p.qa_type == "when")
    assert {p.item_id for p in a.qa} == {"vidA_E0", "vidA_E1", "vidA"}
    # every request asked for a strict JSON schema
    assert len(server.completions) == run.usage.requests == 15  # 5 summaries, 5 QA sets and 5 reasoning chains
    assert all(s.body["response_format"]["type"] == "json_schema" for s in server.completions)
    assert run.usage.prompt_tokens > 0 and run.usage.completion_tokens > 0
    assert not failures(a) and not failures(n)
    # a reasoning chain per event and video, on its own item: its observations carry that item's times
    chains = {c.item_id: c for c in a.chains + n.chains}
    assert set(chains) == {"vidA_E0", "vidA_E1", "vidA", "vidN_E0", "vidN"}
    for c in chains.values():
        assert c.provenance == "auto_draft" and c.generator.prompt_version == "reasoning_chain@1"
    for event in a.planned_events:
        parsed = parse_chain(chains[event.event_id].text)
        assert [(s, e) for s, e, _ in parsed.observations] == [(event.start_s, event.start_s + 4),
                                                                (event.start_s + 4, event.end_s)]
        assert "Robbery" in parsed.conclusion and parsed.cause and parsed.consequence
    assert parse_chain(chains["vidN"].text).conclusion.startswith("No anomaly")
    assert not parse_chain(chains["vidN"].text).cause  # a normal item's chain has no cause or consequence


def test_rerun_answers_from_cache_without_requests(server, tmp_path):
    items = [cut_item(f"v{i}", offset_s=i) for i in range(3)]
    first = roll(items, server, tmp_path)
    sent = len(server.completions)
    assert sent == first.usage.requests == 3 * 9
    second = roll(items, server, tmp_path)
    assert len(server.completions) == sent and second.usage.requests == 0
    assert second.usage.cache_hits == sent
    dump = lambda run: [[x.model_dump() for x in [*it.summaries, *it.qa, *it.chains]] for it in run.items]
    assert dump(first) == dump(second)
    # another model, or another prompt text, is a different question
    roll(items[:1], server, tmp_path, model="other-model")
    assert len(server.completions) == sent + 9


def test_json_text_fallback_parses_fenced_answers(tmp_path):
    def fenced(body):
        assert "response_format" not in body and "matching this JSON schema" in body["messages"][0]["content"]
        return Reply("Sure, here it is:\n```json\n" + json.dumps(grounded_answer(body)) + "\n```")

    with FakeOpenAI(responder=fenced) as srv:
        run = roll([cut_item("vidT")], srv, tmp_path, structured_output="json_text")
    assert len(run.items[0].summaries) == 3 and len(run.items[0].qa) == 21 and not failures(run.items[0])
    assert len(run.items[0].chains) == 3


def test_429_honours_retry_after(server, tmp_path):
    server.script.extend([Status(429, retry_after="1")])
    run = roll([cut_item("vidR", n_events=1)], server, tmp_path, concurrency=1)
    assert not failures(run.items[0]) and run.usage.retries == 1
    first = server.completions[0]
    again = next(s for s in server.completions[1:] if s.body["messages"] == first.body["messages"])
    assert again.t - first.t >= 0.95  # waited as told, not the 0.05 s backoff


@pytest.mark.parametrize("fault", [Status(500), Status(503), MalformedBody(), Reply("this is not JSON"),
                                   Reply('{"summary": "A man', finish_reason="length"), Hang(3.0),
                                   Reply(json.dumps({"summary": "x", "judgement": "y", "description": "z",
                                                     "analysis": None}))],
                         ids=["500", "503", "malformed-body", "not-json", "truncated", "hung", "no-analysis"])
def test_one_fault_is_recovered(server, tmp_path, fault):
    server.script.append(fault)
    run = roll([cut_item("vidF", n_events=1)], server, tmp_path, concurrency=1, timeout_s=1.0)
    item = run.items[0]
    assert not failures(item), failures(item)
    assert len(item.summaries) == 2 and len(item.qa) == 14 and len(item.chains) == 2
    assert run.usage.retries == 1 and run.usage.requests == 6 + 1


@pytest.mark.parametrize("fault,reason,tries", [
    (Status(500), reasons.LLM_REQUEST_FAILED, 3),
    (Status(429, retry_after="0"), reasons.LLM_REQUEST_FAILED, 3),
    (Hang(3.0), reasons.LLM_REQUEST_FAILED, 3),
    (Reply("no json here"), reasons.LLM_INVALID_OUTPUT, 2),
    (MalformedBody(), reasons.LLM_INVALID_OUTPUT, 2),
    (Reply('{"summary": "cut', finish_reason="length"), reasons.LLM_TRUNCATED_OUTPUT, 2),
    (Status(400), reasons.LLM_REQUEST_REJECTED, 1),
    (Status(401), reasons.LLM_REQUEST_REJECTED, 1),
], ids=["500", "429", "hung", "not-json", "malformed-body", "truncated", "400", "401"])
def test_persistent_fault_is_recorded_and_the_run_goes_on(tmp_path, fault, reason, tries):
    """The first event's summary request always fails; everything else still gets done."""
    def responder(body):
        if "[6.0-10.0 s]" in body["messages"][1]["content"] and "SummaryOut" == body["response_format"]["json_schema"]["name"]:
            return fault
        return Reply(json.dumps(grounded_answer(body)))

    with FakeOpenAI(responder=responder) as srv:
        run = roll([cut_item("vidP", n_events=2, offset_s=1.0), cut_item("vidOK")], srv, tmp_path, max_attempts=3,
                   invalid_retries=1, timeout_s=1.0)
        bad_requests = [s for s in srv.completions if "[6.0-10.0 s]" in s.body["messages"][1]["content"]
                        and s.body["response_format"]["json_schema"]["name"] == "SummaryOut"]
    vid_p, vid_ok = run.items
    [failure] = failures(vid_p)
    assert (failure.item_id, failure.level, failure.stage, failure.reason) == ("vidP_E0", "event", "summarize", reason)
    assert failure.detail
    assert len(bad_requests) == tries
    # no placeholder: the failed event has no summary; its sibling, the video and the QA are all there
    assert {s.item_id for s in vid_p.summaries} == {"vidP_E1", "vidP"}
    assert len(vid_p.qa) == 21 and all(p.answer for p in vid_p.qa)
    assert not failures(vid_ok) and len(vid_ok.summaries) == 3
    assert run.usage.failed_items == 1
    # a failed answer is not cached: a later run asks again (and here succeeds)
    with FakeOpenAI() as srv:
        again = roll([vid_p], srv, tmp_path)
        # the missing event summary, then the event's chain (it now sees the summary), the video's summary, QA and
        # chain (their input changed); nothing else
        assert len(srv.completions) == 5
    assert not failures(again.items[0]) and {s.item_id for s in again.items[0].summaries} == {"vidP_E0", "vidP_E1", "vidP"}


def test_concurrency_cap_is_respected(tmp_path):
    with FakeOpenAI(latency_s=0.1) as srv:
        import threading

        inflight, peak, lock = [0], [0], threading.Lock()
        base = srv.responder

        def counting(body):
            with lock:
                inflight[0] += 1
                peak[0] = max(peak[0], inflight[0])
            try:
                import time
                time.sleep(0.05)
                return base(body)
            finally:
                with lock:
                    inflight[0] -= 1

        srv.responder = counting
        roll([cut_item(f"c{i}", offset_s=i) for i in range(4)], srv, tmp_path, concurrency=3)
    assert peak[0] <= 3 and len(srv.completions) == 36


def test_strict_schema_and_json_extraction():
    schema = strict_schema(SummaryOut)
    assert schema["additionalProperties"] is False
    assert schema["required"] == ["summary", "judgement", "description", "analysis"]
    assert extract_json('text before {"a": 1} after') == {"a": 1}
    assert extract_json('```json\n{"a": [1, 2]}\n```') == {"a": [1, 2]}
    with pytest.raises(Exception, match="not JSON"):
        extract_json("no braces at all")


def test_unconfigured_means_extractive_and_says_so(tmp_path, monkeypatch):
    for var in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "HIVAU_LLM_MODEL"):
        monkeypatch.delenv(var, raising=False)
    run = run_rollup([cut_item("vidX")], tmp_path / "cache", RollupSettings())
    assert run.backend == "extractive" and "no LLM configured" in run.note
    assert {s.generator.backend for s in run.items[0].summaries} == {"extractive"}
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    with pytest.raises(ValueError, match="HIVAU_LLM_MODEL"):
        run_rollup([cut_item("vidX")], tmp_path / "cache", RollupSettings())
