"""Reasoning chains: their text form both ways, the checks that read them, VAU-R1's six parts, and the offline
chains of HIVAU-70k's real test file (its human captions and analyses) checked at full size."""

from __future__ import annotations

import ast
import json
from collections import Counter
from pathlib import Path

import pytest
from rollup_items import cut_item

from hivau.schemas.chains import VAU_R1_REASONING_KEYS, Chain, format_chain, parse_chain, vau_r1_reasoning
from hivau.schemas.records import HUMAN, ReasoningChain
from hivau.tasks.text.checks import EventEvidence, Evidence, ItemTexts, run_checks
from hivau.tasks.text.contracts import TextContext
from hivau.tasks.text.extractive import ExtractiveBackend
from hivau.tasks.text.rollup import RollupSettings, run_rollup, within
from hivau.tasks.text.verify import chain_texts, evidence_of, verify_item

ROBBERY = Chain(scene="A shop with a counter.", observations=[(5.0, 9.0, "A man breaks the shop window."),
                                                            (9.0, 13.0, "The man grabs a bag from the counter.")],
                what_happens="A man breaks in and takes a bag: a robbery.", why="Taking goods by force is a crime.",
                cause="The man wants the bag.", consequence="The shop loses the bag.",
                conclusion="An anomaly occurs: Robbery, from 5.0 s to 13.0 s.")


# ---------------------------------------------------------------- the text form
def test_a_chain_reads_back_as_written_and_as_a_reviewer_leaves_it():
    text = format_chain(ROBBERY)
    assert text.splitlines()[:3] == ["Perception:", "Scene: A shop with a counter.",
                                     "[5.0-9.0 s] A man breaks the shop window."]
    assert parse_chain(text) == ROBBERY
    # a reviewer drops the part headers, writes lower-case labels and lets fields run over two lines
    edited = ("Scene: A shop\nwith a counter.\n[5.0-9.0 s] A man breaks\nthe shop window.\nwhat happens: A robbery.\n"
              "WHY: Force.\nConclusion: An anomaly occurs: Robbery.")
    back = parse_chain(edited)
    assert back.scene == "A shop with a counter." and back.observations == [(5.0, 9.0, "A man breaks the shop window.")]
    assert (back.what_happens, back.why, back.conclusion) == ("A robbery.", "Force.", "An anomaly occurs: Robbery.")
    assert back.missing(anomalous=True) == ["cause", "consequence"] and back.missing(anomalous=False) == []
    assert parse_chain("").missing(anomalous=False) == ["scene", "observations", "what_happens", "why", "conclusion"]


def test_vau_r1_reasoning_has_its_six_parts_and_python_reads_it():
    cell = vau_r1_reasoning(format_chain(ROBBERY), "Robbery")
    parsed = ast.literal_eval(cell)
    assert parsed == json.loads(cell) and tuple(parsed) == VAU_R1_REASONING_KEYS
    assert parsed["Specific Anomaly Type"] == "Robbery" and parsed["Location"] == "A shop with a counter."
    assert parsed["Key Evidence"].startswith("[5.0-9.0 s] A man breaks") and "[9.0-13.0 s]" in parsed["Key Evidence"]
    assert parsed["Cause and Effect"] == "The man wants the bag. The shop loses the bag."
    assert parsed["Conclusion"] == ROBBERY.conclusion


# ---------------------------------------------------------------- the checks read chains
def _flags(chain: Chain, anomalous: bool = True) -> set[tuple[str, str]]:
    item = cut_item("vc", anomalous=anomalous, n_events=1)
    evidence = evidence_of(item)["vc_E0"]
    record = ReasoningChain(item_id="vc_E0", level="event", video_id="vc", text=format_chain(chain),
                            provenance="auto_draft", generator=HUMAN)
    texts = ItemTexts("vc_E0", "event", chain_texts(record), chain=record.text)
    return {(f.check, f.target) for f in run_checks(texts, evidence) if f.severity == "error"}


@pytest.mark.parametrize("change,caught", [
    ({"conclusion": "Nothing abnormal happens; this is a normal event."}, ("label_contradiction", "chain:conclusion")),
    ({"conclusion": "An anomaly occurs: Explosion, from 5.0 s to 13.0 s."}, ("label_contradiction", "chain:conclusion")),
    ({"observations": [(5.0, 9.0, "A man breaks the shop window."), (40.0, 44.0, "He leaves.")]},
     ("time_outside_span", "chain:perception")),
    ({"why": ""}, ("missing_part", "chain:cognition")),
    ({"observations": []}, ("missing_part", "chain:perception")),
    ({"scene": "A bank with a knife, a helicopter and a horse on the counter."},
     ("unsupported_content", "chain:perception")),
    ({"why": "It is a robbery robbery robbery robbery robbery robbery robbery."}, ("repeated_phrase", "chain:cognition")),
], ids=["says-normal", "other-class", "time-outside", "no-why", "no-observation", "invented-objects", "loop"])
def test_each_seeded_chain_defect_is_caught_on_its_part(change, caught):
    assert _flags(ROBBERY) == set()  # the clean chain passes
    bad = Chain(**{**ROBBERY.__dict__, **change})
    assert caught in _flags(bad)


def test_a_normal_item_s_chain_must_conclude_normal():
    normal = Chain(scene="A shop.", observations=[(5.0, 9.0, "A man breaks the shop window.")],
                   what_happens="A man is in a shop.", why="Nothing unusual.", conclusion="This event is normal.")
    assert _flags(normal, anomalous=False) == set()
    claims = Chain(**{**normal.__dict__, "conclusion": "A robbery happens here."})
    assert ("label_contradiction", "chain:conclusion") in _flags(claims, anomalous=False)


def test_the_verify_stage_flags_a_chain_on_the_chain_record():
    item = run_rollup([cut_item("vv", n_events=1)], None, RollupSettings(backend="extractive")).items[0]
    assert {c.item_id for c in item.chains} == {"vv_E0", "vv"}
    bad = item.chains[0].model_copy(update={"text": item.chains[0].text.replace("An anomaly occurs", "No anomaly occurs")})
    item = item.model_copy(update={"chains": [bad, *item.chains[1:]], "status": "done"})
    flags = [c for c in verify_item(item).checks if c.target.startswith("chain")]
    assert [(c.item_id, c.check, c.target, c.severity, c.text_provenance) for c in flags] == [
        ("vv_E0", "label_contradiction", "chain:conclusion", "error", "auto_draft")]


# ---------------------------------------------------------------- HIVAU-70k's real test file, at full size
def hivau_chain_cases(path: Path):
    """Every event and video of the file as a chain context (its human captions, description and analysis) with
    the evidence its chain is checked against."""
    for video_id, v in json.loads(path.read_text()).items():
        labels, splits = v["label"] or [], v.get("events_summary_split") or [{}] * len(v["events"])
        anomalous, all_captions, rolled_up, events, lines, facts = bool(labels), [], [], [], [], []
        for i, ((start, end), clips, captions) in enumerate(zip(v["events"], v["clips"], v["clips_caption"])):
            event_id, split = f"{video_id}_E{i}", splits[i] or {}
            timed = [x for (s, e), c in zip(clips, captions) if c.strip() and (x := within(s, e, start, end, c))]
            yield (TextContext(event_id, "event", video_id, labels, anomalous, start, end, timed,
                               description=split.get("description"), analysis=split.get("analysis")),
                   Evidence("event", labels, anomalous, start, end, list(captions)))
            all_captions += captions
            rolled_up += [t for t in (v["events_summary"][i], split.get("description")) if t and t.strip()]
            lines.append((start, end, f"({', '.join(labels) or 'normal'}) {v['events_summary'][i]}"))
            facts.append((start, end, split.get("description") or v["events_summary"][i]))
            if anomalous:
                events.append(EventEvidence(event_id, start, end, labels, list(captions)))
        whole = v.get("video_summary_split") or {}
        duration = v["n_frames"] / v["fps"]
        yield (TextContext(video_id, "video", video_id, labels, anomalous, 0.0, duration, lines, facts,
                           [(e.start_s, e.end_s) for e in events], whole.get("description"), whole.get("analysis")),
               Evidence("video", labels, anomalous, 0.0, duration, all_captions, rolled_up, events=events))


def test_offline_chains_of_hivau_70k_pass_their_checks(fixtures_dir):
    """The extractive chain of every event and video of HIVAU-70k's UCF-Crime test file, from its human texts:
    fewer than 2% carry an error flag (the draft checks' bar for human text), and every chain is complete."""
    path = fixtures_dir / "annotations" / "hivau_ucf_database_test.json"
    backend, checked, flagged, by_check = ExtractiveBackend(), 0, 0, Counter()
    for ctx, evidence in hivau_chain_cases(path):
        if not ctx.lines:
            continue  # every clip of the event lies outside it: no texts to reason from (the roll-up skips it too)
        record = ReasoningChain(item_id=ctx.item_id, level=ctx.level, video_id=ctx.video_id, provenance="auto_draft",
                                text=format_chain(backend.reason_now(ctx).chain()), generator=HUMAN)
        assert not parse_chain(record.text).missing(ctx.is_anomaly), record.text
        errors = [f for f in run_checks(ItemTexts(ctx.item_id, ctx.level, chain_texts(record), chain=record.text),
                                        evidence) if f.severity == "error"]
        checked += 1
        flagged += bool(errors)
        by_check.update({f.check for f in errors})
    print(f"{checked} chains, {flagged} with an error flag ({flagged / checked:.2%}): {dict(by_check)}")
    assert checked >= 580 and flagged / checked < 0.02, dict(by_check)  # 337 events and 251 videos in the file
