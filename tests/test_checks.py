"""The draft checks: each one failing and passing, on the real HIVAU-70k texts where they exist; the verify stage
over a stored record; the release policy; the queue routed by flags; the repair loop over real HTTP."""

from __future__ import annotations

import json

import pytest
from openai_server import FakeOpenAI, Reply, grounded_answer
from rollup_items import cut_item

from hivau.schemas.item import Tables
from hivau.schemas.records import HUMAN, CheckRecord, Generator, Summary
from hivau.tasks.release.publish import ReleaseSettings, instruction_rows
from hivau.tasks.review.audit import check_gate_table
from hivau.tasks.review.queue import QueueItem, queue_order
from hivau.tasks.text import checks as C
from hivau.tasks.text.checks import EventEvidence, Evidence, ItemTexts, Text, run_checks, times_in
from hivau.tasks.text.llm import LLMSettings
from hivau.tasks.text.rollup import RollupSettings, run_rollup
from hivau.tasks.text.verify import verify_item

FAST = dict(backoff_s=0.05, backoff_max_s=0.2, timeout_s=5.0)


@pytest.fixture(scope="module")
def hivau(fixtures_dir) -> dict:
    return json.loads((fixtures_dir / "annotations" / "hivau_ucf_database_test.json").read_text())


def event_of(db: dict, video_id: str, index: int = 0, **fields) -> tuple[ItemTexts, Evidence]:
    """An event of the real file as texts and evidence; `fields` replace its texts."""
    v = db[video_id]
    split = dict(v["events_summary_split"][index])
    texts = {"summary": v["events_summary"][index], **split, **fields}
    start, end = v["events"][index]
    item = ItemTexts(f"{video_id}_E{index}", "event", [Text(k, t) for k, t in texts.items() if t is not None], True)
    return item, Evidence("event", v["label"], bool(v["label"]), start, end, list(v["clips_caption"][index]))


def names(flags, severity=None) -> set[str]:
    return {f.check for f in flags if severity is None or f.severity == severity}


def test_unsupported_content_passes_the_real_text_and_catches_new_things(hivau):
    texts, evidence = event_of(hivau, "Arrest024_x264")
    assert not names(C.unsupported_content(texts, evidence), "error")
    texts, evidence = event_of(hivau, "Arrest024_x264", description="A woman with a knife climbs a ladder while a "
                                                                      "dog waits in the truck.")
    (flag,) = [f for f in C.unsupported_content(texts, evidence) if f.target == "description"]
    assert flag.severity == "error" and {"woman", "knife", "ladder", "dog"} <= set(flag.evidence.split(", "))
    # paraphrase passes: policemen -> officers, car -> vehicle
    texts, evidence = event_of(hivau, "Arrest024_x264", description="Officers leave their vehicle and check the car.")
    assert not [f for f in C.unsupported_content(texts, evidence) if f.target == "description"]
    # a count the captions never give
    texts, evidence = event_of(hivau, "Abuse028_x264", description="Three dogs bark at the postman.")
    assert [f for f in C.unsupported_content(texts, evidence) if f.target == "description"][0].severity == "error"


def test_unsupported_content_reads_things_not_words(hivau):
    """What HIVAU-70k's own summaries say, on which an earlier version of the check raised errors."""
    # "a store or a shop" is one thing no caption named, not two, so a warning
    texts, evidence = event_of(hivau, "Normal_Videos_453_x264")
    (flag,) = [f for f in C.unsupported_content(texts, evidence) if f.target == "summary"]
    assert flag.severity == "warn" and flag.evidence.count("store") + flag.evidence.count("shop") == 1
    # "the woman's behavior deviates from ...": a verb the tagger took for a noun
    texts, evidence = event_of(hivau, "Shoplifting028_x264")
    assert "deviates" not in " ".join(f.evidence for f in C.unsupported_content(texts, evidence))
    # "leading a little boy ... and a little boy ..." gives the "two little boys" of the summary
    texts, evidence = event_of(hivau, "Normal_Videos_015_x264")
    assert not names(C.unsupported_content(texts, evidence), "error")
    # ... and a third is still a count no caption gives
    texts, evidence = event_of(hivau, "Normal_Videos_015_x264", description="A woman leads three little boys.")
    assert names(C.unsupported_content(texts, evidence), "error") == {"unsupported_content"}


def test_label_contradiction(hivau):
    assert not C.label_contradiction(*event_of(hivau, "Arrest024_x264"))
    for judgement in ("No anomaly exists in this video.", "Everything appears normal here.",
                      "An anomaly exists, specifically Arson."):
        flags = C.label_contradiction(*event_of(hivau, "Arrest024_x264", judgement=judgement))
        assert any(f.target == "judgement" and f.severity == "error" for f in flags), judgement
    # a class of the same family is not a contradiction (a robbery is a kind of stealing)
    v = {"Robbery": ItemTexts("x", "event", [Text("judgement", "An anomaly exists: stealing.")], True)}
    assert not C.label_contradiction(v["Robbery"], Evidence("event", ["Robbery"], True, 0, 5))
    # the real file's own contradiction: an anomalous event whose judgement says there is none
    assert C.label_contradiction(*event_of(hivau, "Shooting024_x264"))
    normal = next(k for k, v in hivau.items() if not v["label"])
    assert not C.label_contradiction(*event_of(hivau, normal))
    assert C.label_contradiction(*event_of(hivau, normal, judgement="An anomaly exists: a fight breaks out."))


def test_times_are_parsed_in_every_form_and_checked_against_the_span(hivau):
    assert [t.seconds for t in times_in("between 2.5s and 6.2s, at 01:12, from 3.5 to 7 s, a 7-second clip")] == \
        [72.0, 2.5, 6.2, 3.5, 7.0, 7.0]
    assert [t.kind for t in times_in("for 9 seconds, at 4 s, at the 12-second mark")] == ["duration", "point", "point"]
    normal = "Normal_Videos_003_x264"
    assert not C.time_outside_span(*event_of(hivau, normal))
    (flag,) = C.time_outside_span(*event_of(hivau, normal, description="A dog appears at 02:10."))
    assert flag.severity == "error" and "02:10" in flag.evidence
    # the real file's own slip: 8.667s-11.9s for an event that ends at 10.0 s
    assert C.time_outside_span(*event_of(hivau, "RoadAccidents011_x264"))


def test_missing_part(hivau):
    assert not C.missing_part(*event_of(hivau, "Arrest024_x264"))
    texts, evidence = event_of(hivau, "Arrest024_x264", analysis=None, description="")
    assert {f.target for f in C.missing_part(texts, evidence)} == {"analysis", "description"}
    qa = ItemTexts("e", "event", [Text(f"qa:{t}", "An answer.") for t in ("what", "who")], qa_types=["what", "who"])
    (flag,) = C.missing_part(qa, Evidence("event", [], False, 0, 5))
    assert "where" in flag.evidence and "why" in flag.evidence


def test_degenerate_text(hivau):
    texts, evidence = event_of(hivau, "Arrest024_x264")
    assert not names(run_checks(texts, evidence)) & {"repeated_phrase", "dominant_word", "low_word_variety",
                                                     "length_outlier"}
    loop = "The police shoot at the car. " * 4
    assert names(C.repeated_phrase(*event_of(hivau, "Arrest024_x264", description=loop))) == {"repeated_phrase"}
    loop = "the car stops, the car stops, the car stops"  # a trigram three times, no five-word phrase
    assert names(C.repeated_phrase(*event_of(hivau, "Arrest024_x264", description=loop))) == {"repeated_phrase"}
    # "The man in black pushed the man in white from behind, and the man in white was ...": several men, no loop
    caption = hivau["Arrest001_x264"]["clips_caption"][0][0]
    assert caption.lower().count("the man in") == 3
    assert not C.repeated_phrase(ItemTexts("c", "clip", [Text("caption", caption)]), Evidence("clip", [], False, 0, 1))
    half = "car " * 8 + "the police stop it"
    assert names(C.dominant_word(*event_of(hivau, "Arrest024_x264", description=half))) == {"dominant_word"}
    (flag,) = C.length_outlier(*event_of(hivau, "Arrest024_x264", judgement="Yes."))
    assert flag.target == "judgement"
    caption = hivau["Arrest024_x264"]["clips_caption"][0][0]
    assert not C.low_word_variety(ItemTexts("c", "clip", [Text("caption", caption)]), Evidence("clip", [], False, 0, 1))
    stuck = "the car and the car and the man and the car " * 3
    (flag,) = C.low_word_variety(ItemTexts("c", "clip", [Text("caption", stuck)]), Evidence("clip", [], False, 0, 1))
    assert flag.severity == "warn" and flag.score < 0.4


def test_near_duplicate_neighbours_and_answers(hivau):
    caption = hivau["Arrest024_x264"]["clips_caption"][0]
    clip = ItemTexts("c1", "clip", [Text("caption", caption[1])])
    assert not C.near_duplicate(clip, Evidence("clip", [], False, 0, 1, neighbours=[caption[0]]))
    assert C.near_duplicate(clip, Evidence("clip", [], False, 0, 1, neighbours=[caption[1]]))[0].severity == "error"
    answers = ItemTexts("e", "event", [Text("qa:what", "The police shoot at the white car."),
                                       Text("qa:how", "The police shoot at the white car!")])
    assert C.near_duplicate(answers, Evidence("event", [], False, 0, 5))[0].target == "qa:how"


def test_event_omitted(hivau):
    v = hivau["Arrest024_x264"]
    events = [EventEvidence("E0", *v["events"][0], v["label"], v["clips_caption"][0])]
    evidence = Evidence("video", v["label"], True, 0, 120, events=events)
    real = ItemTexts("v", "video", [Text("summary", v["video_summary"])], True)
    assert not C.event_omitted(real, evidence)
    vague = ItemTexts("v", "video", [Text("summary", "A quiet street with parked cars is shown.")], True)
    assert C.event_omitted(vague, evidence)[0].check == "event_omitted"


def test_verify_stage_keeps_human_texts_out_of_errors():
    item = cut_item("vidH")
    item.status = "done"
    event = item.planned_events[0]
    item.summaries = [Summary(item_id=event.event_id, level="event", video_id="vidH", text="No anomaly at all.",
                              judgement="No anomaly exists.", description="Nothing happens at 300 s.",
                              analysis="none", provenance="human", generator=HUMAN)]
    human = verify_item(item)
    assert human.checks and {c.severity for c in human.checks} == {"warn"}
    item.summaries[0] = item.summaries[0].model_copy(update={"provenance": "auto_draft",
                                                             "generator": Generator(backend="openai")})
    drafted = verify_item(item)
    assert {"label_contradiction", "time_outside_span"} <= {c.check for c in drafted.checks if c.severity == "error"}
    # checking clips again replaces only clip flags
    assert verify_item(drafted, ("clip",)).checks == drafted.checks


def flag(item_id: str, target: str, check: str, severity: str = "error") -> CheckRecord:
    return CheckRecord(item_id=item_id, level="event", video_id="v", target=target, check=check, severity=severity,
                       text_provenance="auto_draft", generator=Generator(backend="openai"))


def test_release_policy_holds_back_flagged_drafts_only():
    item = cut_item("vidR")
    item.status = "done"
    e0, e1 = (e.event_id for e in item.planned_events)
    item.summaries = [Summary(item_id=e, level="event", video_id="vidR", text="t", judgement="j", description="d",
                              analysis="a", provenance=p, generator=Generator(backend="openai"))
                      for e, p in ((e0, "auto_draft"), (e1, "accepted"))]
    tables = Tables.of([item])
    tables.checks = [flag(e0, "description", "time_outside_span"), flag(e1, "summary", "repeated_phrase"),
                     flag(e0, "analysis", "low_word_variety", "warn")]
    media = {e0: "a.mp4", e1: "b.mp4"}

    def tasks(policy: str) -> set:
        held = __import__("collections").Counter()
        rows = instruction_rows(tables, ReleaseSettings(include_unreviewed=True, exclude_flagged=policy), media, held)
        return {(r.item_id, r.task) for r in rows}, dict(held)

    kept, held = tasks("error")
    assert (e0, "description") not in kept and (e0, "judgement") in kept and (e0, "analysis") in kept
    assert {(e1, t) for t in ("judgement", "description", "analysis")} <= kept  # reviewed text is never held back
    assert held == {"time_outside_span": 1}
    kept, held = tasks("warn")
    assert (e0, "analysis") not in kept and held == {"time_outside_span": 1, "low_word_variety": 1}
    assert len(tasks("none")[0]) == 6


def test_queue_puts_errors_first_after_the_random_audit_sample():
    items = [QueueItem(f"k{i}", "a draft text of some words", ["Robbery"], ["openai"], errors=e, warnings=w)
             for i, (e, w) in enumerate([(0, 0), (0, 3), (2, 0), (1, 0), (0, 0), (0, 1)])]
    order = queue_order(items, audit_size=2, seed="s")
    audit = [it for it, _, a in order if a]
    rest = [it for it, _, a in order if not a]
    assert len(audit) == 2
    assert [it.errors for it in rest] == sorted((it.errors for it in rest), reverse=True)
    # the sample does not depend on the flags: the same keys are drawn with or without them
    bare = [QueueItem(it.key, it.text, it.labels, it.generators) for it in items]
    assert {it.key for it, _, a in queue_order(bare, 2, "s") if a} == {it.key for it in audit}


def test_check_gate_counts_precision_and_recall_on_the_audit_sample():
    from hivau.schemas.records import Caption, ReviewRecord

    captions = [Caption(item_id=f"c{i}", level="clip", video_id="v", text="x", provenance=p, annotation_id=i,
                        generator=Generator(backend="openai")) for i, p in enumerate(
        ["rejected", "edited", "accepted", "accepted", "rejected"])]
    tables = Tables(captions=captions, checks=[flag("c0", "caption", "repeated_phrase"),
                                               flag("c2", "caption", "repeated_phrase"),
                                               flag("c9", "caption", "repeated_phrase")])
    reviews = [ReviewRecord(item_id=f"c{i}", level="clip", video_id="v", project="p", task_id=i, annotation_id=i,
                            audit=i < 4) for i in range(5)]
    (row, _) = check_gate_table(tables, reviews)
    # audited: c0..c3; changed among them: c0, c1; flagged and audited: c0, c2
    assert row["flagged"] == 3 and row["audited_flagged"] == 2
    assert row["precision"]["value"] == 0.5 and row["recall"]["value"] == 0.5


def test_a_failed_llm_draft_is_repaired_with_the_evidence_and_cached(tmp_path):
    """The server's first summary of each event puts it at a time past the end; asked again with the failed
    check's evidence, it answers well. A second run sends nothing."""

    def responder(body):
        answer = grounded_answer(body)
        text = json.dumps(body["messages"])
        if "SummaryOut" in json.dumps(body.get("response_format", {})) and "failed these checks" not in text \
                and "labelled as an anomaly: Robbery" in text and "from 5.0 s" not in text:
            answer["description"] += " It ends at 900 s."
        return Reply(json.dumps(answer))

    with FakeOpenAI(responder) as server:
        settings = RollupSettings(backend="openai", llm=LLMSettings(base_url=server.base_url, model="m", **FAST))
        (item,) = run_rollup([cut_item("vidP")], tmp_path / "cache", settings).items
        repair_requests = [s for s in server.completions if "failed these checks" in json.dumps(s.body["messages"])]
        assert repair_requests and "time_outside_span" in json.dumps(repair_requests[0].body["messages"])
        assert "900 s" in json.dumps(repair_requests[0].body["messages"])
        repaired = {r.item_id: r for r in item.repairs}
        assert repaired and all(r.repaired and r.failed_before == ["time_outside_span"] for r in repaired.values())
        assert all("900 s" not in (s.description or "") for s in item.summaries)
        assert not [c for c in verify_item(item.model_copy(update={"status": "done"})).checks
                    if c.check == "time_outside_span"]
        sent = len(server.completions)
        again = run_rollup([cut_item("vidP")], tmp_path / "cache", settings)
        assert len(server.completions) == sent and again.usage.cache_hits == sent


def test_a_draft_that_stays_wrong_keeps_its_flags(tmp_path):
    def responder(body):
        answer = grounded_answer(body)
        if "SummaryOut" in json.dumps(body.get("response_format", {})):
            answer["description"] += " It ends at 900 s."
        return Reply(json.dumps(answer))

    with FakeOpenAI(responder) as server:
        settings = RollupSettings(backend="openai", repair_attempts=2,
                                  llm=LLMSettings(base_url=server.base_url, model="m", **FAST))
        (item,) = run_rollup([cut_item("vidS", n_events=1)], tmp_path / "cache", settings).items
    assert {r.attempts for r in item.repairs} == {2} and not any(r.repaired for r in item.repairs)
    checked = verify_item(item.model_copy(update={"status": "done"}))
    stale = [c for c in checked.checks if c.check == "time_outside_span"]
    assert stale and all(c.severity == "error" and c.attempts == 2 for c in stale)


def test_the_optional_llm_judge_flags_what_it_would_discard(tmp_path):
    def responder(body):
        if "JudgeOut" in json.dumps(body.get("response_format", {})):
            discard = "event from 25.0 s" in json.dumps(body["messages"])
            return Reply(json.dumps({"faithfulness": 1 if discard else 5, "label_consistency": 5, "completeness": 4,
                                     "verdict": "discard" if discard else "keep", "reason": "invents a weapon"}))
        return Reply(json.dumps(grounded_answer(body)))

    with FakeOpenAI(responder) as server:
        settings = RollupSettings(backend="openai", judge=True,
                                  llm=LLMSettings(base_url=server.base_url, model="m", **FAST))
        run = run_rollup([cut_item("vidJ")], tmp_path / "cache", settings)
        judged = [s for s in server.completions if "JudgeOut" in json.dumps(s.body.get("response_format", {}))]
        assert len(judged) == 3 and run.usage.by_prompt["judge@1"] == 3  # two events and the video, counted
        (item,) = run.items
        (flag,) = [c for c in item.checks if c.check == "llm_judge"]
        assert flag.item_id == "vidJ_E1" and flag.severity == "error" and "invents a weapon" in flag.evidence
        # the verify stage keeps the judge's flag beside its own
        assert "llm_judge" in {c.check for c in verify_item(item.model_copy(update={"status": "done"})).checks}
        run_rollup([cut_item("vidJ")], tmp_path / "cache", settings)
        assert len(server.completions) == 3 * 4  # summary, QA, judge, chain of each; a second run: from the cache
    off = RollupSettings()
    assert off.judge is False
