"""Verifiable-task scoring (`hivau.models.rewards`): the parser, each scorer and metric on hand-computed cases, the
TRL GRPOTrainer reward signature, VAU-R1's test CSV, and `hivau-eval --predictions` on verifiable tasks."""

from __future__ import annotations

import csv
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hivau.models.rewards import (
    Parsed,
    VauReference,
    accuracy_reward,
    choice_letter,
    choice_score,
    class_key,
    classify_score,
    detect_score,
    format_reward,
    grounding_score,
    iou,
    iou_reward,
    parse_completion,
    predicted_class,
    read_vau_r1_csv,
    seconds,
    vau_metrics,
    yes_no,
)

BIN = Path(sys.executable).parent
needs_java = pytest.mark.skipif(not shutil.which("java"), reason="pycocoevalcap's PTBTokenizer runs Java")
TAGGED = "<think>The man takes the bag and runs.</think>\n<answer>{}</answer>"


# --- the parser -------------------------------------------------------------------------------------------------

def test_parser_reads_tagged_answers_with_their_glue():
    p = parse_completion("  <think> a man runs </think> <answer>Anomaly</answer>\n<glue>[5.2, 10.4]</glue> ")
    assert p == Parsed("a man runs", "Anomaly", (5.2, 10.4), True)
    inside = parse_completion("<think>x</think><answer>Anomaly <glue>[5, 10]</glue></answer>")
    assert (inside.answer, inside.glue, inside.well_formed) == ("Anomaly", (5.0, 10.0), True)
    before = parse_completion("<think>x</think><glue>[-1, -1]</glue><answer>Normal</answer>")
    assert (before.answer, before.glue, before.well_formed) == ("Normal", (-1.0, -1.0), True)
    # no glue: the span is the answer's own "[s, e]"
    span = parse_completion(TAGGED.format("[3, 7.5]"))
    assert span.glue is None and span.span == (3.0, 7.5) and span.well_formed


def test_parser_reads_plain_answers_whole():
    p = parse_completion("B. A man steals a bag")
    assert p == Parsed(None, "B. A man steals a bag", None, False)
    assert parse_completion("The anomaly is at [12, 20].").span == (12.0, 20.0)
    assert parse_completion("").answer == ""


def test_parser_marks_malformed_answers():
    # a second answer, text after the answer, no reasoning, reasoning never closed, a glue that is no span,
    # a reversed span: none is well-formed (VAU-R1's format reward would give the first two 1.0 and 0.0)
    assert not parse_completion("<think>a</think><answer>b</answer><answer>c</answer>").well_formed
    assert not parse_completion("<think>a</think><answer>b</answer> trailing words").well_formed
    no_think = parse_completion("<answer>C</answer>")
    assert (no_think.answer, no_think.well_formed) == ("C", False)
    unclosed = parse_completion("<think>it could be B or C")
    assert (unclosed.think, unclosed.answer, unclosed.well_formed) == ("it could be B or C", "", False)
    bad_glue = parse_completion("<think>x</think><answer>A</answer><glue>[5, abc]</glue>")
    assert bad_glue.glue is None and not bad_glue.well_formed
    reversed_ = parse_completion("<think>x</think><answer>A</answer><glue>[10, 5]</glue>")
    assert reversed_.glue == (10.0, 5.0) and not reversed_.well_formed
    # after a closed reasoning with no answer tag, the answer is what follows it
    assert parse_completion("<think>x</think> B").answer == "B"


def test_times_in_seconds_mm_ss_and_hh_mm_ss():
    assert seconds("12.5") == 12.5 and seconds("12.5s") == 12.5 and seconds("-1") == -1.0
    assert seconds("01:05") == 65.0 and seconds("1:05.5") == 65.5 and seconds("1:02:03.5") == 3723.5
    assert parse_completion("<glue>[01:05, 01:10.5]</glue>").glue == (65.0, 70.5)
    assert parse_completion("[0:01:02, 0:01:10]").span == (62.0, 70.0)
    assert parse_completion("(4 s, 9 seconds)").span == (4.0, 9.0)
    assert parse_completion("[4 to 9]").span == (4.0, 9.0)


# --- the scorers ------------------------------------------------------------------------------------------------

OPTIONS = ["A man waves", "A dog barks at the postman", "Cars wait at the light", "A fire starts"]


@pytest.mark.parametrize("answer, letter", [
    ("B", "B"), ("b", "B"), ("(B)", "B"), ("B.", "B"), ("B. A dog barks at the postman", "B"), ("(B) a dog", "B"),
    ("Option B", "B"), ("option (b)", "B"), ("The answer is B.", "B"), ("I would pick C here", "C"),
    ("A dog barks at the postman", "B"),  # the option's exact text, no letter
    ("a dog barks at the postman.", "B"),  # case and punctuation aside
    ("A man runs away", None),  # "A" is an article here, and no option reads so
    ("A or B", None), ("the answer is a man", None), ("", None),
])
def test_choice_letter(answer, letter):
    assert choice_letter(answer, OPTIONS) == letter


def test_choice_score_reads_the_answer_not_the_reasoning():
    assert choice_score(TAGGED.format("B"), "B", OPTIONS) == 1.0
    assert choice_score("<think>Not A, not C.</think><answer>D</answer>", "D") == 1.0
    assert choice_score(TAGGED.format("C"), "B", OPTIONS) == 0.0
    assert choice_score("<think>B seems right", "B") == 0.0  # never answered


def test_iou_by_hand():
    assert iou((4, 8), (2, 6)) == pytest.approx(2 / 6)  # overlap [4, 6] = 2; union [2, 8] = 6
    assert iou((0, 10), (5, 15)) == pytest.approx(5 / 15)
    assert iou((0, 5), (5, 10)) == 0.0  # touching, no overlap
    assert iou((3, 3), (0, 10)) == 0.0  # start == end: IoU 0, as VAU-R1's evaluation_tag.py
    assert iou((8, 4), (2, 6)) == 0.0  # reversed


def test_grounding_score():
    assert grounding_score("<think>x</think><answer>Anomaly</answer><glue>[4, 8]</glue>", "[2.0, 6.0]") == \
        pytest.approx(1 / 3)
    assert grounding_score("[0:02, 0:06]", "[2.0, 6.0]") == 1.0
    assert grounding_score("[-1, -1]", "[2.0, 6.0]") == 0.0  # "nothing" on an anomalous video
    assert grounding_score("no span given", "[2.0, 6.0]") == 0.0
    # a normal video: 1.0 for [-1, -1] only
    assert grounding_score(TAGGED.format("[-1.0, -1.0]"), "[-1.0, -1.0]") == 1.0
    assert grounding_score("[0, 5]", "[-1, -1]") == 0.0
    assert grounding_score("Normal", "[-1, -1]") == 0.0
    with pytest.raises(ValueError, match="grounding solution"):
        grounding_score("[1, 2]", "Robbery")


@pytest.mark.parametrize("answer, solution, right", [
    ("Robbery", "Robbery", True), ("robbery.", "Robbery", True), ("It is a robbery.", "Robbery", True),
    ("Road Accidents", "RoadAccidents", True), ("road_accident", "RoadAccidents", True),
    ("Traffic_accident", "RoadAccidents", True), ("RoadAccidents", "Traffic_accident", True),
    ("Normal", "Normal", True), ("normal event", "Normal", True), ("No anomaly", "Normal", True),
    ("There is no anomaly in this video.", "Normal", True), ("People falling", "People_falling", True),
    ("Stealing", "Robbery", False), ("Normal", "Robbery", False), ("", "Normal", False),
])
def test_classify_score(answer, solution, right):
    assert classify_score(TAGGED.format(answer), solution) == float(right)
    assert classify_score(answer, solution) == float(right)  # plain


def test_class_key_and_first_named_class():
    assert class_key("Road Accidents") == class_key("RoadAccidents") == class_key("road-accident") == "roadaccidents"
    assert class_key("No anomaly") == class_key("normal event") == "normal"
    assert predicted_class("Looks like shoplifting, maybe a robbery") == "shoplifting"
    assert predicted_class("abnormal behaviour") is None  # "abnormal" is no "normal"


@pytest.mark.parametrize("answer, said", [
    ("Yes", "yes"), ("yes, a man is hit", "yes"), ("There is an anomaly.", "yes"), ("Anomaly", "yes"),
    ("abnormal", "yes"), ("It is not normal", "yes"), ("No", "no"), ("no anomaly", "no"),
    ("There is no anomaly.", "no"), ("No anomalies were detected", "no"), ("Normal", "no"),
    ("The video shows nothing unusual", "no"), ("I cannot tell", None), ("", None),
])
def test_yes_no(answer, said):
    assert yes_no(answer) == said


def test_detect_score():
    assert detect_score(TAGGED.format("Yes"), "yes") == 1.0
    assert detect_score("there is no anomaly", "no") == 1.0
    assert detect_score("Anomaly", "no") == 0.0
    assert detect_score("maybe", "no") == 0.0


# --- TRL's GRPOTrainer ------------------------------------------------------------------------------------------

def _row(id_: str, task: str, solution: str, options=(), split="test"):
    from hivau.schemas.records import VauTaskRow

    return VauTaskRow(id=id_, item_id=id_.split(":")[0], split=split, level="video", task=task,
                      media_path="media/v.mp4", source_video="v", start_s=0.0, end_s=30.0, duration_s=30.0,
                      labels=[], is_anomaly=solution not in ("no", "Normal", "[-1.0, -1.0]"), question="?",
                      options=list(options), solution=solution, answer_text=solution, provenance="human", seed=0)


def _as_grpo_trainer_calls(func, inputs: list[dict], completions: list) -> list:
    """As trl 1.16.0's `GRPOTrainer._calculate_rewards` calls a custom reward function (grpo_trainer.py):
    keys = [key for key in inputs[0] if key not in ["prompt", "completion", "completion_ids"]];
    reward_kwargs = {key: [example[key] for example in inputs] for key in keys} plus trainer_state, log_extra,
    log_metric; reward_func(prompts=prompts, completions=completions, completion_ids=completion_ids_list,
    **reward_kwargs), then `None` -> NaN."""
    keys = [key for key in inputs[0] if key not in ["prompt", "completion", "completion_ids"]]
    reward_kwargs = {key: [example[key] for example in inputs] for key in keys}
    reward_kwargs.update(trainer_state=object(), log_extra=lambda *a, **k: None, log_metric=lambda *a, **k: None)
    out = func(prompts=[example["prompt"] for example in inputs], completions=completions,
               completion_ids=[[101, 102]] * len(completions), **reward_kwargs)
    assert len(out) == len(inputs)
    return [math.nan if r is None else r for r in out]


GRPO_ROWS = [_row("v1:choice:class", "choice", "B", OPTIONS), _row("v1:grounding", "grounding", "[2.0, 6.0]"),
             _row("v2:grounding", "grounding", "[-1.0, -1.0]"), _row("v1:classify", "classify", "RoadAccidents"),
             _row("v2:detect", "detect", "no")]
GRPO_COMPLETIONS = [
    TAGGED.format("B"),  # right, well-formed
    "<think>x</think><answer>Anomaly</answer><glue>[4, 8]</glue>",  # IoU 2 / 6
    "[-1, -1]",  # right, plain (not well-formed)
    TAGGED.format("road accident"),  # right
    "<think>x</think><answer>Yes</answer>",  # wrong
]


@pytest.mark.parametrize("conversational", [False, True])
def test_rewards_called_as_grpo_trainer_calls_them(conversational):
    inputs = [{"prompt": [{"role": "user", "content": r.question}] if conversational else r.question,
               **r.model_dump(mode="json")} for r in GRPO_ROWS]  # every dataset column, as TRL passes them
    completions = ([[{"role": "assistant", "content": c}] for c in GRPO_COMPLETIONS] if conversational
                   else GRPO_COMPLETIONS)
    assert _as_grpo_trainer_calls(format_reward, inputs, completions) == [1.0, 1.0, 0.0, 1.0, 1.0]
    accuracy = _as_grpo_trainer_calls(accuracy_reward, inputs, completions)
    assert accuracy[0] == 1.0 and accuracy[3] == 1.0 and accuracy[4] == 0.0
    assert math.isnan(accuracy[1]) and math.isnan(accuracy[2])  # grounding rows: iou_reward's
    ious = _as_grpo_trainer_calls(iou_reward, inputs, completions)
    assert ious[1] == pytest.approx(1 / 3) and ious[2] == 1.0
    assert all(math.isnan(ious[i]) for i in (0, 3, 4))


def test_conversational_completions_with_typed_parts_and_a_grounding_row_without_span():
    inputs = [{"prompt": "?", "task": "grounding", "solution": "[2.0, 6.0]"}]
    parts = [[{"role": "assistant", "content": [{"type": "text", "text": TAGGED.format("Anomaly")}]}]]
    # well-formed tags but no span anywhere: a grounding row's format needs one
    assert _as_grpo_trainer_calls(format_reward, inputs, parts) == [0.0]
    assert _as_grpo_trainer_calls(iou_reward, inputs, parts) == [0.0]


def test_real_trl_calculate_rewards():
    """Where trl 1.16 is importable: its own `_calculate_rewards` on a stand-in trainer."""
    trl = pytest.importorskip("trl")
    if not trl.__version__.startswith("1.16."):
        pytest.skip(f"written against trl 1.16's _calculate_rewards, found {trl.__version__}")
    import types

    import torch
    from trl.trainer.grpo_trainer import GRPOTrainer

    funcs = [format_reward, accuracy_reward, iou_reward]
    trainer = types.SimpleNamespace(
        accelerator=types.SimpleNamespace(device=torch.device("cpu"), is_main_process=True),
        args=types.SimpleNamespace(report_to=[]), state=types.SimpleNamespace(global_step=0), reward_funcs=funcs,
        reward_processing_classes=[None] * 3, reward_func_names=[f.__name__ for f in funcs],
        _log_completion_extra=lambda *a, **k: None, _log_metric=lambda *a, **k: None, environments=None)
    inputs = [{"prompt": r.question, **r.model_dump(mode="json")} for r in GRPO_ROWS]
    got = GRPOTrainer._calculate_rewards(trainer, inputs, [i["prompt"] for i in inputs], GRPO_COMPLETIONS,
                                         [[1]] * len(inputs))
    want = torch.tensor([[1.0, 1.0, math.nan], [1.0, math.nan, 1 / 3], [0.0, math.nan, 1.0],
                         [1.0, 1.0, math.nan], [1.0, 0.0, math.nan]])
    assert torch.allclose(got, want, equal_nan=True)


# --- the metrics ------------------------------------------------------------------------------------------------

def _ref(id_: str, task: str, solution: str, options=()) -> VauReference:
    return VauReference(id_, task, solution, tuple(options))


METRIC_CASES = [
    # choice: 2 of 3 right
    (_ref("c1", "choice", "B"), TAGGED.format("B")),  # right
    (_ref("c2", "choice", "A"), TAGGED.format("Option C")),  # wrong
    (_ref("c3", "choice", "D", OPTIONS), "a fire starts"),  # right, by the option's text
    # classify: refs Robbery, Robbery, Normal, RoadAccidents
    (_ref("k1", "classify", "Robbery"), TAGGED.format("robbery")),  # right
    (_ref("k2", "classify", "Robbery"), TAGGED.format("Normal")),  # wrong, says normal
    (_ref("k3", "classify", "Normal"), "no anomaly"),  # right
    (_ref("k4", "classify", "RoadAccidents"), TAGGED.format("Road Accidents")),  # right
    # detect: refs yes, yes, no, no, yes
    (_ref("d1", "detect", "yes"), TAGGED.format("Yes")),  # TP
    (_ref("d2", "detect", "yes"), "There is no anomaly."),  # FN
    (_ref("d3", "detect", "no"), TAGGED.format("No")),  # TN
    (_ref("d4", "detect", "no"), TAGGED.format("Anomaly")),  # FP
    # d5 (yes) unanswered: FN
    (_ref("d5", "detect", "yes"), None),
    # grounding, anomalous: IoU 1/3, 1, 0 (start == end), 0 ([-1, -1] on an anomaly)
    (_ref("g1", "grounding", "[2.0, 6.0]"), "<think>x</think><answer>Anomaly</answer><glue>[4, 8]</glue>"),
    (_ref("g2", "grounding", "[10.0, 20.0]"), "[0:10, 0:20]"),
    (_ref("g3", "grounding", "[0.0, 10.0]"), TAGGED.format("[5, 5]")),
    (_ref("g4", "grounding", "[30.0, 40.0]"), TAGGED.format("[-1, -1]")),
    # grounding, normal: 1 of 2 answer [-1, -1]
    (_ref("n1", "grounding", "[-1.0, -1.0]"), TAGGED.format("[-1, -1]")),
    (_ref("n2", "grounding", "[-1.0, -1.0]"), "[0, 5]"),
]


def test_vau_metrics_by_hand():
    rows = [r for r, _ in METRIC_CASES]
    answers = {r.id: a for r, a in METRIC_CASES if a is not None}
    m = vau_metrics(rows, answers)
    assert m["n"] == 18 and m["counts"] == {"choice": 3, "classify": 4, "detect": 5, "grounding": 6}
    # well-formed: c1 c2, k1 k2 k4, d1 d3 d4, g1 g3 g4, n1 = 12 of 18
    assert m["format"]["well_formed"] == pytest.approx(12 / 18)
    assert m["choice"] == {"n": 3, "accuracy": pytest.approx(2 / 3)}

    c = m["classify"]
    assert c["accuracy"] == pytest.approx(3 / 4)
    # normal: TP 1 (k3), FP 1 (k2), FN 0 -> P 1/2, R 1, F1 2*1 / (2*1 + 1 + 0) = 2/3
    # robbery: TP 1 (k1), FP 0, FN 1 (k2) -> F1 2 / (2 + 0 + 1) = 2/3;  roadaccidents: TP 1 -> F1 1
    assert c["classes"]["normal"] == {"support": 1, "precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3)}
    assert c["classes"]["robbery"]["f1"] == pytest.approx(2 / 3) and c["classes"]["roadaccidents"]["f1"] == 1.0
    assert c["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)  # = 7/9
    # VAU-R1's binary accuracy of the class answer: k2 (robbery answered normal) is the one wrong: 3/4
    assert c["binary_accuracy"] == pytest.approx(3 / 4)

    d = m["detect"]
    # TP 1, FN 2 (d2, d5), TN 1, FP 1: accuracy 2/5; P 1/2, R 1/3, F1 2*1 / (2*1 + 1 + 2) = 2/5
    assert d["accuracy"] == pytest.approx(2 / 5)
    assert (d["precision"], d["recall"], d["f1"]) == (0.5, pytest.approx(1 / 3), pytest.approx(2 / 5))

    a, n = m["grounding"]["anomalous"], m["grounding"]["normal"]
    assert m["grounding"]["n"] == 6 and a["n"] == 4 and n["n"] == 2
    assert a["mIoU"] == pytest.approx((1 / 3 + 1 + 0 + 0) / 4)  # = 1/3
    assert a["R@0.3"] == 0.5  # 1/3 and 1 reach 0.3 (IoU >= threshold, as VAU-R1)
    assert a["R@0.5"] == 0.25 and a["R@0.7"] == 0.25  # only g2's 1.0
    assert n["no_span"] == 0.5


def test_vau_metrics_takes_aligned_answers_and_leaves_absent_tasks_out():
    rows = [_ref("c1", "choice", "A"), _ref("c2", "choice", "B")]
    m = vau_metrics(rows, ["A", "A"])
    assert m["choice"]["accuracy"] == 0.5 and set(m) == {"n", "counts", "format", "choice"}
    detect = vau_metrics([_ref("d", "detect", "no")], {"d": "no"})["detect"]
    assert detect["f1"] is None and detect["precision"] is None  # no positive anywhere: F1 undefined


# --- VAU-R1's test CSV ------------------------------------------------------------------------------------------

VAU_R1_HEADER = ["Video Name", "Question", "Option 1", "Option 2", "Option 3", "Option 4", "Correct Option",
                 "Key Object", "Description", "Reasoning", "Anomaly Class", "Start Time", "End Time"]
REASONING = str({"Specific Anomaly Type": "Animal abuse", "Location": "Residential doorway, outdoors",
                 "Key Evidence": "The postman repeatedly beats the dog with a stick",
                 "Detailed Explanation": "Striking an animal, \"again and again\", is abuse.",
                 "Cause and Effect": "The dog rushes at him; he beats it", "Conclusion": "Abuse"})


def _vau_r1_csv(path: Path) -> Path:
    rows = [
        ["Abuse028_x264.mp4", "What was the key behavioral clue?",
         "The postman repeatedly beating the dog with a stick, and the dog's distressed reactions",
         "The postman placing a letter in the mailbox", "The dog lying on the ground", "The postman's gray coat",
         "A", "stick", "The video shows a gray-coated postman, a mailbox, a dog.", REASONING, "Abuse", "2.5", "10.0"],
        # only times (VAU-R1's `-1` where a field does not apply)
        ["Abuse030_x264.mp4", "-1", "-1", "-1", "-1", "-1", "-1", "-1", "-1", "-1", "-1", "42.5", "45.33"],
        # a normal video: times 0.0, 0.0
        ["Normal_Videos_003_x264.mp4", "Why does the man wave?", "He signals for help", "He greets someone",
         "He scares the dog", "He directs traffic", "B", "man", "Ordinary events.", "{'Specific Anomaly Type': "
         "'Normal'}", "Normal", "0.0", "0.0"],
        # an anomaly without annotated times (-1.0, -1.0); MSAD's "letter. text" Correct Option
        ["Arson011_x264.mp4", "Why is he there?", "To rest", "To buy fuel", "To meet", "To set a fire",
         "D. To set a fire", "man", "A man at a car.", "{'Conclusion': 'Arson'}", "Arson", "-1.0", "-1.0"],
    ]
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(VAU_R1_HEADER)
        writer.writerows(rows)
    return path


def test_read_vau_r1_csv(tmp_path):
    refs = {r.id: r for r in read_vau_r1_csv(_vau_r1_csv(tmp_path / "test_ucf_crime.csv"))}
    assert sorted(refs) == sorted([
        "Abuse028_x264.mp4:choice", "Abuse028_x264.mp4:grounding", "Abuse028_x264.mp4:classify",
        "Abuse030_x264.mp4:grounding",
        "Normal_Videos_003_x264.mp4:choice", "Normal_Videos_003_x264.mp4:grounding",
        "Normal_Videos_003_x264.mp4:classify",
        "Arson011_x264.mp4:choice", "Arson011_x264.mp4:classify"])
    choice = refs["Abuse028_x264.mp4:choice"]
    assert choice.solution == "A" and choice.options[0].endswith("the dog's distressed reactions")
    assert refs["Arson011_x264.mp4:choice"].solution == "D"
    assert refs["Abuse028_x264.mp4:grounding"].solution == "[2.5, 10.0]"
    assert refs["Abuse030_x264.mp4:grounding"].solution == "[42.5, 45.33]"
    assert refs["Normal_Videos_003_x264.mp4:grounding"].solution == "[-1.0, -1.0]"
    assert refs["Abuse028_x264.mp4:classify"].solution == "Abuse"

    bad = tmp_path / "other.csv"
    bad.write_text("Video Name,Question\nx.mp4,q\n")
    with pytest.raises(ValueError, match="not a VAU-R1 test CSV"):
        read_vau_r1_csv(bad)


def test_cli_scores_predictions_against_a_vau_r1_csv(tmp_path):
    refs = _vau_r1_csv(tmp_path / "test_ucf_crime.csv")
    preds = tmp_path / "preds.jsonl"
    answers = {"Abuse028_x264.mp4:choice": TAGGED.format("A"),  # right
               "Normal_Videos_003_x264.mp4:choice": "C",  # wrong
               "Arson011_x264.mp4:choice": "(D)",  # right
               "Abuse028_x264.mp4:grounding": "<think>x</think><answer>Anomaly</answer><glue>[0:05, 0:10]</glue>",
               "Abuse030_x264.mp4:grounding": "[42.5, 45.33]",
               "Normal_Videos_003_x264.mp4:grounding": "[-1, -1]",
               "Abuse028_x264.mp4:classify": "Abuse", "Arson011_x264.mp4:classify": "Explosion",
               "nope.mp4:choice": "A"}  # Normal_Videos_003_x264.mp4:classify left out
    preds.write_text("".join(json.dumps({"id": k, "answer": v}) + "\n" for k, v in answers.items()))
    out = tmp_path / "eval"
    proc = subprocess.run([str(BIN / "hivau-eval"), "--predictions", str(preds), "--references", str(refs),
                           "--out", str(out), "--strict"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr[-3000:]  # --strict: one missing, one unknown
    assert "1 references have no prediction (scored as empty answers): Normal_Videos_003_x264.mp4:classify" \
        in proc.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["protocol"] is None and metrics["text"] == {} and "paper" not in metrics
    vau = metrics["vau"]
    assert vau["choice"]["accuracy"] == pytest.approx(2 / 3)
    # [5, 10] against [2.5, 10]: 5 / 7.5; the exact span: 1 -> mIoU (2/3 + 1) / 2
    assert vau["grounding"]["anomalous"]["mIoU"] == pytest.approx((5 / 7.5 + 1) / 2)
    assert vau["grounding"]["normal"] == {"n": 1, "no_span": 1.0}
    assert vau["classify"]["accuracy"] == pytest.approx(1 / 3)  # Abuse right; Explosion, (missing) wrong
    md = (out / "metrics.md").read_text()
    assert md == proc.stdout.rstrip("\n") + "\n"
    assert "Holmes-VAU protocol" not in md
    assert "| choice | 3 | accuracy | 0.6667 |" in md and "| grounding, anomalous | 2 | R@0.5 | 1.0000 |" in md


# --- evaluate_predictions on a release's verifiable tasks -------------------------------------------------------

def _release(root: Path, vau_test: list, vau_train: list = (), text_rows: list | None = None) -> Path:
    import pyarrow.parquet as pq

    from hivau.schemas.records import InstructionRow, VauTaskRow, to_arrow_table

    (root / "vau").mkdir(parents=True)
    pq.write_table(to_arrow_table(vau_test, VauTaskRow), root / "vau" / "test.parquet")
    if vau_train:
        pq.write_table(to_arrow_table(list(vau_train), VauTaskRow), root / "vau" / "train.parquet")
    if text_rows is not None:
        (root / "data").mkdir()
        pq.write_table(to_arrow_table(text_rows, InstructionRow), root / "data" / "test.parquet")
    return root


def _text_row(id_: str, answer: str):
    from hivau.schemas.records import HUMAN, InstructionRow

    return InstructionRow(id=id_, item_id=id_, split="test", level="clip", task="caption", media_path="m.mp4",
                          source_video="v", start_s=0.0, end_s=1.0, prompt="Describe.", answer=answer,
                          provenance="human", generator=HUMAN)


VAU_TEST = [_row("v1:detect", "detect", "yes"), _row("v2:detect", "detect", "no"),
            _row("v1:grounding", "grounding", "[2.0, 6.0]"), _row("v1:choice:class", "choice", "C", OPTIONS)]
VAU_ANSWERS = {"v1:detect": TAGGED.format("yes"), "v2:detect": TAGGED.format("yes"),
               "v1:grounding": "<think>x</think><answer>Anomaly</answer><glue>[4, 8]</glue>",
               "v1:choice:class": TAGGED.format("Cars wait at the light")}


def _preds(path: Path, answers: dict) -> Path:
    path.write_text("".join(json.dumps({"id": k, "answer": v}) + "\n" for k, v in answers.items()))
    return path


@pytest.mark.parametrize("text", ["none", "empty"])
def test_a_release_with_only_verifiable_tasks(tmp_path, text):
    from hivau.models.holmes_protocol import evaluate_predictions

    # no data/ at all, or an empty data/test.parquet: both are releases of verifiable tasks only
    release = _release(tmp_path / "release", VAU_TEST, vau_train=[_row("v9:detect", "detect", "no", split="train")],
                       text_rows=None if text == "none" else [])
    preds = _preds(tmp_path / "preds.jsonl", {**VAU_ANSWERS, "v9:detect": "no"})
    metrics = evaluate_predictions(preds, release=release, out=tmp_path / "eval")
    cov = metrics["coverage"]
    assert (cov["references"], cov["scored"], cov["missing"]) == (4, 4, 0)
    assert cov["unknown_ids"] == ["v9:detect"] and cov["train_ids"] == ["v9:detect"]  # a train task answered
    assert metrics["protocol"] is None and cov["not_scored"] == {}
    vau = metrics["vau"]
    assert vau["detect"]["accuracy"] == 0.5 and vau["detect"]["f1"] == pytest.approx(2 / 3)  # TP 1, FP 1: 2/(2+1)
    assert vau["grounding"]["anomalous"]["mIoU"] == pytest.approx(1 / 3)
    assert vau["choice"]["accuracy"] == 1.0 and vau["format"]["well_formed"] == 1.0
    md = (tmp_path / "eval" / "metrics.md").read_text()
    assert "| detect | 2 | F1 (yes) | 0.6667 |" in md and "Holmes-VAU protocol" not in md
    assert "rows of the release's train split" in md


def test_text_rows_are_not_scored_when_only_verifiable_tasks_are_answered(tmp_path):
    from hivau.models.holmes_protocol import evaluate_predictions

    release = _release(tmp_path / "release", VAU_TEST, text_rows=[_text_row("t1", "a man runs")])
    metrics = evaluate_predictions(_preds(tmp_path / "p.jsonl", VAU_ANSWERS), release=release, out=tmp_path / "e")
    assert metrics["coverage"]["not_scored"] == {"text": 1} and metrics["coverage"]["missing"] == 0
    assert metrics["protocol"] is None and metrics["vau"]["n"] == 4
    assert "the 1 text rows (Holmes-VAU's protocol) were not scored" in (tmp_path / "e" / "metrics.md").read_text()


@needs_java
def test_text_rows_and_verifiable_tasks_scored_together(tmp_path):
    from hivau.models.holmes_protocol import evaluate_predictions

    same = "a man hits the dog with a stick"
    release = _release(tmp_path / "release", VAU_TEST, text_rows=[_text_row("t1", same), _text_row("t2", same)])
    # t2 and one verifiable task left out: both listed as missing, both scored as empty answers
    answers = {**{k: v for k, v in VAU_ANSWERS.items() if k != "v2:detect"}, "t1": same}
    metrics = evaluate_predictions(_preds(tmp_path / "p.jsonl", answers), release=release, out=tmp_path / "e",
                                   meteor=False)
    cov = metrics["coverage"]
    assert cov["references"] == 6 and sorted(cov["missing_ids"]) == ["t2", "v2:detect"] and cov["unknown"] == 0
    assert metrics["protocol"]["levels"]["clip"]["ROUGE-L"] == pytest.approx(0.5)  # t1 exact, t2 empty
    assert metrics["vau"]["detect"]["accuracy"] == 0.5 and metrics["vau"]["detect"]["n"] == 2  # v2 "": says no "no"
    md = (tmp_path / "e" / "metrics.md").read_text()
    assert "Holmes-VAU protocol" in md and "Verifiable tasks" in md
