"""Review identity, the annotation rule, the queue and the audit figures: the pure parts, without a server."""

import pytest

from hivau.schemas.item import Tables
from hivau.schemas.records import (
    Caption,
    Clip,
    Event,
    Generator,
    QAPair,
    ReviewedText,
    ReviewRecord,
    Summary,
    segment_key,
)
from hivau.tasks.review.audit import wilson_interval
from hivau.tasks.review.merge import ReviewRule, merge, winners
from hivau.tasks.review.queue import QueueItem, label_disagrees, queue_order

DRAFT = Generator(backend="extractive")


def review(annotation_id: int, level: str, start=None, end=None, caption=None, verdict="accept", user=1,
           updated="2026-01-01T00:00:00", moved=None, item_id="v_E0C0", **kw) -> ReviewRecord:
    texts = [ReviewedText(name="caption", text=caption)] if caption else []
    return ReviewRecord(item_id=item_id, level=level, video_id="v", project="p", task_id=annotation_id,
                        annotation_id=annotation_id, seen_start_s=start, seen_end_s=end, verdict=verdict,
                        texts=texts, completed_by=user, updated_at=updated,
                        start_s=moved[0] if moved else None, end_s=moved[1] if moved else None, **kw)


def drafts() -> Tables:
    event = Event(video_id="v", index=0, start_s=2.0, end_s=8.0, event_id="v_E0")
    clips = [Clip(video_id="v", index=j, start_s=2.0 + 2 * j, end_s=4.0 + 2 * j, clip_id=f"v_E0C{j}", event_id="v_E0")
             for j in range(3)]
    captions = [Caption(item_id=c.clip_id, level="clip", video_id="v", text=f"draft {c.clip_id}",
                        provenance="auto_draft", generator=DRAFT) for c in clips]
    summary = Summary(item_id="v_E0", level="event", video_id="v", text="two men fight", provenance="auto_draft",
                      generator=DRAFT)
    qa = [QAPair(item_id="v_E0", level="event", video_id="v", qa_type="why", question="why?", answer="anger",
                 provenance="auto_draft", generator=DRAFT)]
    return Tables(events=[event], clips=clips, captions=captions, summaries=[summary], qa=qa)


def test_segment_keys_are_times_to_the_millisecond_not_positions():
    assert segment_key("clip", "v", 2.0, 4.0) == segment_key("clip", "v", 2.0000004, 3.9999996) == "clip|v|2000|4000"
    assert segment_key("clip", "v", 2.0, 4.0) != segment_key("clip", "v", 2.0, 4.002)
    assert segment_key("video", "v") == "video|v"
    assert review(1, "clip", 2.0, 4.0).key == "clip|v|2000|4000"
    assert review(1, "clip").key == "id|clip|v_E0C0"  # pulled before spans were recorded


def test_a_review_applies_to_its_times_only():
    tables = drafts()
    reviews = winners([review(7, "clip", 4.0, 6.0, caption="the reviewer's words", item_id="v_E0C1")], ReviewRule())
    merged, used = merge(tables, reviews)
    captions = {c.item_id: c for c in merged.captions}
    assert (captions["v_E0C1"].text, captions["v_E0C1"].provenance, captions["v_E0C1"].annotation_id) == \
        ("the reviewer's words", "edited", 7) and used == {7}
    # re-planned: the same positional id now covers other times, and gets nothing
    replanned = drafts()
    replanned.clips[1] = replanned.clips[1].model_copy(update={"start_s": 5.0, "end_s": 8.0})
    merged, used = merge(replanned, reviews)
    assert {c.item_id: c.provenance for c in merged.captions}["v_E0C1"] == "auto_draft" and used == set()


def test_a_moved_boundary_makes_every_text_of_the_old_span_stale():
    reviews = winners([review(9, "event", 2.0, 8.0, moved=(3.0, 8.0), item_id="v_E0")], ReviewRule())
    merged, used = merge(drafts(), reviews)
    (event,) = merged.events
    assert (event.start_s, event.provenance, event.corrected_by) == (3.0, "boundaries_corrected", 9)
    assert {s.provenance for s in merged.summaries} == {"boundaries_corrected"}
    assert {q.provenance for q in merged.qa} == {"boundaries_corrected"}
    assert {c.item_id: c.provenance for c in merged.captions}["v_E0C0"] == "boundaries_corrected"  # clamped
    assert used == {9}
    # the rebuilt plan already carries the move: its new drafts are not the old span's review
    rebuilt = drafts()
    rebuilt.events[0] = event.model_copy(update={"cut_start_s": 3.0})
    merged, _ = merge(rebuilt, reviews)
    assert {s.provenance for s in merged.summaries} == {"auto_draft"}


def test_the_rule_picks_latest_or_by_precedence_and_skips_cancelled():
    a = review(1, "clip", 2.0, 4.0, caption="first", user=10, updated="2026-01-01T10:00:00")
    b = review(2, "clip", 2.0, 4.0, caption="second", user=20, updated="2026-01-02T10:00:00")
    c = review(3, "clip", 2.0, 4.0, caption="skipped", user=30, updated="2026-01-03T10:00:00", was_cancelled=True)
    assert ReviewRule().pick([a, b, c]) is b
    assert ReviewRule(rule="precedence", precedence=[10]).pick([a, b, c]) is a
    assert ReviewRule(rule="precedence", precedence=[99, 20]).pick([a, b, c]) is b
    assert ReviewRule(rule="precedence", precedence=[99]).pick([a, b]) is b  # nobody listed: latest
    assert ReviewRule().pick([c]) is None


def test_wilson_interval_matches_reference_values():
    low, high = wilson_interval(8, 10)
    assert (round(low, 3), round(high, 3)) == (0.490, 0.943)
    low, high = wilson_interval(0, 20)
    assert low == 0.0 and round(high, 3) == 0.161
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_label_disagreement():
    assert label_disagrees("A man walks to his car.", ["Fighting"])
    assert not label_disagrees("Two men fight near the door.", ["Fighting"])
    assert label_disagrees("A car crashes into a wall.", ["Normal"])
    assert not label_disagrees("People walk through the hall.", ["Normal"])
    assert not label_disagrees("", ["Fighting"])


@pytest.mark.parametrize("n,audit", [(10, 3), (5, 10), (0, 3)])
def test_queue_puts_a_seeded_audit_sample_first_then_risk(n, audit):
    def items():
        return [QueueItem(f"clip|v{i}|0|1000", "" if i % 4 == 0 else "two men fight near a door", ["Fighting"],
                          ["human" if i % 5 == 1 else "extractive" if i % 3 == 0 else "openai"]) for i in range(n)]

    order = queue_order(items(), audit, seed="ws:clip")
    assert [pos for _, pos, _ in order] == list(range(1, n + 1))
    sampled = [it.key for it, _, a in order if a]
    drafts = [it.key for it in items() if it.text and it.generators != ["human"]]
    assert set(sampled) <= set(drafts)  # only machine drafts are audited: no empty editors, no annotation text
    assert len(sampled) == min(audit, len(drafts)) and [a for _, _, a in order[:len(sampled)]] == [True] * len(sampled)
    risks = [it.risk for it, _, a in order if not a]
    assert risks == sorted(risks, reverse=True)
    again = queue_order(list(reversed(items())), audit, seed="ws:clip")  # the same sample whatever the order
    assert [it.key for it, _, a in again if a] == sampled
    assert all("no_draft" in it.reasons for it, _, _ in order if not it.text)
