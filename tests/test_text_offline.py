"""Offline text stages with the real spaCy model: motion phrases, the extractive backend, prompt templates."""

from __future__ import annotations

import re

import pytest
from rollup_items import cut_item

from hivau.prompts import load_prompt, parse_prompt
from hivau.schemas.item import Tables
from hivau.tasks.text.extractive import NOT_STATED, ExtractiveBackend
from hivau.tasks.text.motion import hawk_baseline_phrases, merged_motion_records, motion_phrases, motion_records
from hivau.tasks.text.rollup import QA_TYPES, RollupSettings, event_contexts, run_rollup


@pytest.mark.parametrize("text,expected,baseline_misses", [
    # subject inherited through coordination, and a prepositional object of the verb
    ("A man in a red shirt breaks the window and steals a bag, then runs into the street.",
     ["man breaks window", "man steals bag", "man runs into street"], "man steals bag"),
    # passive agent
    ("The car was hit by a truck.", ["car hit by truck"], "car hit by truck"),
    # particle, and negation kept
    ("A woman picks up the phone and does not move.", ["woman picks up phone", "woman not move"],
     "woman picks up phone"),
    # prepositional place of the verb
    ("A person walks on the sidewalk and falls to the ground.", ["person walks on sidewalk", "person falls to ground"],
     "person falls to ground"),
])
def test_motion_phrases_go_past_hawk(text, expected, baseline_misses):
    assert [p.text for p in motion_phrases(text)] == expected
    assert baseline_misses not in hawk_baseline_phrases(text)


def test_motion_phrase_parts():
    [phrase] = motion_phrases("Two police officers chase the thief and the driver.")
    assert phrase.lemma == "chase" and phrase.subjects == ["two police officers"]
    assert phrase.objects == ["thief", "driver"] and phrase.preps == []


def test_motion_records_cover_captions_and_summaries():
    item = run_rollup([cut_item("vm")], None, RollupSettings(backend="extractive")).items[0]
    records = motion_records(item)
    sources = {(r.level, r.source) for r in records}
    assert ("clip", "caption") in sources and ("event", "description") in sources and ("video", "description") in sources
    breaks = [r for r in records if r.item_id == "vm_E0C0"]
    assert [r.text for r in breaks] == ["man breaks shop window"] and breaks[0].text_provenance == "human"
    assert {r.generator.backend for r in records} == {"spacy"}


def test_merged_motion_phrases_follow_the_reviewed_text_and_parse_only_edits(monkeypatch):
    from hivau.tasks.text import motion

    item = run_rollup([cut_item("vr")], None, RollupSettings(backend="extractive")).items[0]
    drafts = Tables.of([item.model_copy(update={"status": "done", "motion_phrases": motion_records(item)})])
    captions = {c.item_id: c for c in drafts.captions}
    edited = captions["vr_E0C0"].model_copy(update={"text": "A woman climbs the fence.", "provenance": "edited"})
    rejected = captions["vr_E0C1"].model_copy(update={"provenance": "rejected"})
    kept = captions["vr_E1C0"].model_copy(update={"provenance": "accepted"})
    merged = Tables(captions=[edited, rejected, kept], motion_phrases=drafts.motion_phrases)
    parsed = []
    monkeypatch.setattr(motion, "motion_phrases", lambda text: parsed.append(text) or motion_phrases(text))
    records, kept = merged_motion_records(merged, {})
    by_item = {}
    for r in records:
        by_item.setdefault(r.item_id, []).append(r)
    assert [r.text for r in by_item["vr_E0C0"]] == ["woman climbs fence"] and parsed == ["A woman climbs the fence."]
    assert "vr_E0C1" not in by_item  # a rejected text trains nothing
    assert [r.text for r in by_item["vr_E1C0"]] == [r.text for r in drafts.motion_phrases if r.item_id == "vr_E1C0"]
    assert {r.text_provenance for r in by_item["vr_E1C0"]} == {"accepted"}
    # the next write (another process: the workspace keeps `kept` as JSON) parses nothing again
    import json

    again, kept_again = merged_motion_records(merged, json.loads(json.dumps(kept)))
    assert parsed == ["A woman climbs the fence."] and again == records and kept_again == kept
    assert list(kept) == [motion.edited_key("vr_E0C0", "caption", "A woman climbs the fence.")]


def _content_words(text: str) -> set[str]:
    return {w.lower() for w in re.findall(r"[A-Za-z]+", text)}


def test_extractive_summary_and_qa_come_from_the_captions():
    backend = ExtractiveBackend()
    item = cut_item("vx")
    ctx = event_contexts(item)[0]
    out = backend.summarize_now(ctx)
    assert out.judgement == "An anomaly (Robbery) occurs in this event from 5.0 s to 13.0 s."
    # the description is the clip captions, in time order
    assert out.description == "A man in a red shirt breaks the shop window. The man grabs a bag from the counter."
    assert "man breaks shop window" in out.analysis
    qa = {p.qa_type: p for p in backend.qa_now(ctx).pairs}
    assert tuple(qa) == QA_TYPES
    assert qa["when"].answer == "The anomaly happens from 5.0 s to 13.0 s."
    captions = _content_words(" ".join(t for _, _, t in ctx.lines))
    for kind in ("who", "where", "how"):
        assert qa[kind].answer != NOT_STATED
        assert _content_words(qa[kind].answer) <= captions | {"and"}, kind  # nothing the captions do not say
    assert qa["how_much"].answer == NOT_STATED  # no count in these captions: it says so instead of guessing
    # deterministic
    assert backend.summarize_now(ctx) == out and backend.qa_now(ctx) == backend.qa_now(ctx)


def test_extractive_normal_item_has_no_analysis_and_the_video_rolls_up():
    run = run_rollup([cut_item("vn", anomalous=False)], None, RollupSettings(backend="extractive"))
    item = run.items[0]
    by_id = {s.item_id: s for s in item.summaries}
    assert set(by_id) == {"vn_E0", "vn_E1", "vn"} and all(s.analysis is None for s in by_id.values())
    assert by_id["vn"].judgement == "No anomaly occurs in this video."
    assert "breaks the shop window" in by_id["vn"].description and "run out of the shop" in by_id["vn"].description
    assert {(s.generator.backend, s.generator.prompt_version) for s in item.summaries} == {("extractive", "extractive@1")}
    assert len(item.qa) == 21 and not item.quarantine


def test_human_summaries_are_kept_and_drafts_never_replace_them():
    from hivau.schemas.records import HUMAN, Summary

    item = cut_item("vh")
    item.summaries.append(Summary(item_id="vh_E0", level="event", video_id="vh", text="Written by a person.",
                                  provenance="human", generator=HUMAN))
    done = run_rollup([item], None, RollupSettings(backend="extractive")).items[0]
    by_id = {s.item_id: s for s in done.summaries}
    assert by_id["vh_E0"].text == "Written by a person." and by_id["vh_E0"].provenance == "human"
    assert by_id["vh_E1"].generator.backend == "extractive"
    redo = run_rollup([item], None, RollupSettings(backend="extractive", keep_provided=False)).items[0]
    assert {s.item_id: s for s in redo.summaries}["vh_E0"].generator.backend == "extractive"


def test_prompts_are_versioned_templates():
    for name in ("clip_caption", "event_summary", "video_summary", "qa_5w2h"):
        prompt = load_prompt(name)
        assert re.fullmatch(rf"{name}@\d+", prompt.tag)
    event = load_prompt("event_summary")
    anomaly = event.messages("anomaly", start_s="1.0", end_s="2.0", labels="Fighting", captions="- x")
    normal = event.messages("normal", start_s="1.0", end_s="2.0", labels="normal", captions="- x")
    assert anomaly[1]["content"] != normal[1]["content"] and "Fighting" in anomaly[1]["content"]
    with pytest.raises(KeyError):
        event.messages("anomaly", start_s="1.0")  # a field left out is an error, not an empty hole
    with pytest.raises(ValueError, match="front matter"):
        parse_prompt("## system\nno header")
