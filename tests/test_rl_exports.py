"""The verifiable tasks' SFT and GRPO exports: VAU-R1's tags in prompts and targets, and each framework's own loader
reading the files as a user would: TRL 1.16's GRPOTrainer (real training steps on a tiny LLaVA, CPU), ms-swift 4.6.0's
`load_dataset` and LLaMA-Factory 0.9.5's `dataset_info.json` + converter path. The last two run in venvs of their own,
.venv-exports/{swift,llamafactory} (scripts/bootstrap_exports.sh, which `make test` runs): their pins differ from ours
and from each other's."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from hivau.prompts.vau import sft_target
from hivau.schemas.records import CHOICE_LETTERS, VauTaskRow, read_release_rows, read_vau_rows
from hivau.tasks.release.exports import sft_record
from hivau.tasks.release.publish import RL_EXPORT_FOLDERS, SFT_DATASET_PREFIX, verify_release

ROOT = Path(__file__).resolve().parents[1]
EXPORTS_VENVS = ROOT / ".venv-exports"  # one venv per framework: swift/, llamafactory/
SPLITS = ("train", "test")
TASKS = {"choice", "grounding", "classify", "detect"}
SPAN = re.compile(r"\[-?\d+(?:\.\d+)?, -?\d+(?:\.\d+)?\]")
REWARD_COLUMNS = ("id", "task", "solution", "options", "duration_s")
LF_TAGS = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def target_of(t: VauTaskRow) -> str:
    """What the assistant must write for a task, in VAU-R1's tags (the glue inside the answer)."""
    if t.task == "grounding":
        assert SPAN.fullmatch(t.solution), t.solution
        return f"<answer><glue>{t.solution}</glue></answer>"
    assert t.solution in {"choice": CHOICE_LETTERS, "detect": ("yes", "no")}.get(t.task, (t.solution,))
    return f"<answer>{t.solution}</answer>"


def grounding_task(**fields) -> VauTaskRow:
    return VauTaskRow(**{
        "id": "v1:grounding", "item_id": "v1", "split": "train", "level": "video", "task": "grounding",
        "media_path": "media/hivau/videos/train/v1.mp4", "source_video": "v1", "start_s": 0.0, "end_s": 30.0,
        "duration_s": 30.0, "question": "When does the anomaly happen in this video?", "solution": "[12.5, 20.0]",
        "answer_text": "[12.5, 20.0]", "provenance": "human", "seed": 0, **fields})


# ---------------------------------------------------------------- the rows
def test_sft_record_puts_a_reasoning_chain_in_think_before_the_answer():
    task = grounding_task()
    plain = sft_record(task)
    assert plain["videos"] == ["media/hivau/videos/train/v1.mp4"]
    assert plain["messages"][1] == {"role": "assistant", "content": "<answer><glue>[12.5, 20.0]</glue></answer>"}
    asked = plain["messages"][0]["content"]
    assert asked.startswith("<video>\nWhen does the anomaly happen in this video?\n\n")
    assert "<answer> </answer>" in asked and "<glue>[start, end]</glue>" in asked and "<think>" not in asked

    chained = sft_record(task, chain="  The car hits the man at 12.5 s; he lies still until 20 s. ")
    assert chained["messages"][1]["content"] == ("<think>The car hits the man at 12.5 s; he lies still until 20 s."
                                                 "</think><answer><glue>[12.5, 20.0]</glue></answer>")
    assert "<think> </think>" in chained["messages"][0]["content"]  # the prompt asks for what the target shows
    framed = sft_record(task, video=("frames/v1/000001.jpg", "frames/v1/000009.jpg"))
    assert framed["videos"] == [["frames/v1/000001.jpg", "frames/v1/000009.jpg"]]
    normal = grounding_task(solution="[-1, -1]", answer_text="[-1, -1]", is_anomaly=False)
    assert sft_target(normal) == "<answer><glue>[-1, -1]</glue></answer>"


@pytest.mark.prefect_server
def test_sft_and_grpo_rows_hold_each_task_in_vau_r1_s_format(demo_release):
    manifest = verify_release(demo_release)  # every new file is in the manifest, with its hash
    assert {f"{folder}/{s}.jsonl" for folder in RL_EXPORT_FOLDERS for s in SPLITS} \
        | {"sft/llamafactory/dataset_info.json"} <= set(manifest["files"])
    card = (demo_release / "README.md").read_text()
    assert all(f"`{folder}/" in card for folder in RL_EXPORT_FOLDERS) and "<think>chain</think>" in card
    info = json.loads((demo_release / "sft" / "llamafactory" / "dataset_info.json").read_text())
    assert info == {f"{SFT_DATASET_PREFIX}_{s}": {
        "file_name": f"{s}.jsonl", "formatting": "sharegpt", "columns": {"messages": "messages", "videos": "videos"},
        "tags": LF_TAGS} for s in SPLITS}
    seen = set()
    chains = {r.item_id: r.answer for split in SPLITS for r in read_release_rows(demo_release, split)
              if r.task == "reasoning"}
    thought = set()
    for split in SPLITS:
        tasks = read_vau_rows(demo_release, split)
        sft = read_jsonl(demo_release / "sft" / "llamafactory" / f"{split}.jsonl")
        assert sft == read_jsonl(demo_release / "sft" / "swift" / f"{split}.jsonl")
        swift = read_jsonl(demo_release / "grpo" / "swift" / f"{split}.jsonl")
        trl = read_jsonl(demo_release / "grpo" / "trl" / f"{split}.jsonl")
        assert len(sft) == len(swift) == len(trl) == len(tasks) > 0
        for t, s, g, r in zip(tasks, sft, swift, trl):
            seen.add(t.task)
            assert (demo_release / t.media_path).is_file()
            # SFT: the item's released chain in <think>, then the answer; the answer alone, asked for alone, for an
            # item without one (a clip)
            (user, assistant), (video,) = s["messages"], s["videos"]
            assert set(s) == {"messages", "videos"} and video == t.media_path
            assert user["role"] == "user" and user["content"].startswith(f"<video>\n{t.question}\n\n")
            chain = chains.get(t.item_id)
            thought.add(chain is not None)
            assert "<answer> </answer>" in user["content"] and ("<think>" in user["content"]) == (chain is not None)
            think = f"<think>{chain}</think>" if chain else ""
            assert assistant == {"role": "assistant", "content": think + target_of(t)}
            # ms-swift GRPO: the user turn only, asking for think + answer, and the columns the rewards receive
            assert set(g) == {"messages", "videos", *REWARD_COLUMNS}
            (asked,) = g["messages"]
            assert asked["role"] == "user" and asked["content"].startswith(f"<video>\n{t.question}\n\n")
            assert "<think> </think>" in asked["content"] and "<answer> </answer>" in asked["content"]
            assert ("<glue>[start, end]</glue>" in asked["content"]) == (t.task == "grounding")
            assert g["videos"] == [t.media_path]
            assert (g["id"], g["task"], g["solution"], g["options"]) == (t.id, t.task, t.solution, t.options)
            assert g["duration_s"] == pytest.approx(t.duration_s, abs=1e-3)
            assert len(g["options"]) == (4 if t.task == "choice" else 0)
            # TRL GRPO: the same prompt without the media tag (TRL adds image blocks), the same columns, the path
            assert set(r) == {"prompt", "video", *REWARD_COLUMNS}
            assert r["prompt"] == [{"role": "user", "content": asked["content"].removeprefix("<video>\n")}]
            assert "<video>" not in r["prompt"][0]["content"] and r["video"] == t.media_path
            assert {k: r[k] for k in REWARD_COLUMNS} == {k: g[k] for k in REWARD_COLUMNS}
    assert seen == TASKS and thought == {True, False}


@pytest.mark.prefect_server
def test_the_targets_score_full_marks_with_hivau_s_rewards(demo_release):
    """The SFT targets, with a chain, are what hivau's GRPO rewards pay for; the GRPO
    rows' columns are what those rewards take (called as TRL calls them)."""
    from hivau.models.rewards import accuracy_reward, format_reward, iou_reward

    for split in SPLITS:
        tasks = {t.id: t for t in read_vau_rows(demo_release, split)}
        for row in read_jsonl(demo_release / "grpo" / "trl" / f"{split}.jsonl"):
            t = tasks[row["id"]]
            columns = {k: [v] for k, v in row.items() if k != "prompt"}
            right = [sft_target(t, chain="What I see, step by step.")]
            assert format_reward(prompts=[row["prompt"]], completions=right, completion_ids=None, **columns) == [1.0]
            paid = iou_reward if t.task == "grounding" else accuracy_reward
            assert paid(prompts=[row["prompt"]], completions=right, completion_ids=None, **columns) == [1.0], t.id
            if t.task == "choice":
                wrong = CHOICE_LETTERS[(CHOICE_LETTERS.index(t.solution) + 1) % 4]
                assert accuracy_reward(prompts=[row["prompt"]], completions=[f"<answer>{wrong}</answer>"],
                                       completion_ids=None, **columns) == [0.0]


# ---------------------------------------------------------------- TRL 1.16: GRPOTrainer itself
@pytest.mark.prefect_server
def test_trl_grpo_trainer_trains_on_the_rows_with_frames_as_images(demo_release, tmp_path):
    trl = pytest.importorskip("trl")
    if trl.__version__ != "1.16.0":
        pytest.skip(f"the rows are checked against trl 1.16.0's GRPOTrainer (pinned in pyproject's dev extra), "
                    f"found {trl.__version__}")
    from datasets import load_dataset
    from PIL import Image
    from tiny_vlm import build_tiny_llava
    from trl import GRPOConfig, GRPOTrainer
    from trl.data_utils import is_conversational

    from hivau.models.rewards import accuracy_reward, format_reward, iou_reward
    from hivau.tasks.build.frames import sample_frames

    files = {s: str(demo_release / "grpo" / "trl" / f"{s}.jsonl") for s in SPLITS}
    data = load_dataset("json", data_files=files, cache_dir=str(tmp_path / "hf-cache"))
    for split in SPLITS:
        assert set(data[split].column_names) == {"prompt", "video", *REWARD_COLUMNS}
        assert all(is_conversational(row) for row in data[split])
    # one row per task; each video's frames as its `images`, as the card tells a TRL user to do
    train = data["train"]
    picked = [next(i for i, task in enumerate(train["task"]) if task == kind) for kind in sorted(TASKS)]

    def with_frames(row):
        frames = sample_frames(str(demo_release / row["video"]), n=2, short_side=32).frames
        return {"images": [Image.fromarray(f) for f in frames]}

    rows = train.select(picked).map(with_frames)
    by_id = {r["id"]: r for r in rows}
    calls = []

    def recorder(prompts, completions, completion_ids, **columns):
        calls.append((prompts, completions, columns))
        return [float(len(c[0]["content"]) % 2) for c in completions]  # anything, as long as it varies

    model = build_tiny_llava(tmp_path / "tiny-llava")
    args = GRPOConfig(output_dir=str(tmp_path / "grpo"), per_device_train_batch_size=2, num_generations=2,
                      max_completion_length=6, max_steps=len(picked), learning_rate=1e-3, use_cpu=True, bf16=False,
                      report_to=[], save_strategy="no", logging_steps=1, seed=0, dataloader_num_workers=0)
    trainer = GRPOTrainer(model=str(model), reward_funcs=[recorder, format_reward, accuracy_reward, iou_reward],
                          args=args, train_dataset=rows)  # hivau's rewards take the columns as TRL passes them
    trainer.train()

    assert {i for _, _, columns in calls for i in columns["id"]} == set(by_id)  # every task went through
    for prompts, completions, columns in calls:
        assert len(prompts) == len(completions) == len(columns["id"]) == 2
        for i, row_id in enumerate(columns["id"]):
            row = by_id[row_id]
            for name in (*REWARD_COLUMNS, "video"):
                assert columns[name][i] == row[name], name  # the row's columns reach the reward as keyword lists
            (user,) = prompts[i]  # TRL put one image block per frame before our text
            assert [part["type"] for part in user["content"]] == ["image", "image", "text"]
            assert user["content"][2]["text"] == row["prompt"][0]["content"]
    assert trainer.state.global_step == len(picked)


# ---------------------------------------------------------------- ms-swift 4.6.0 and LLaMA-Factory 0.9.5
# hivau's rewards as ms-swift reward functions (the README's plugin, `swift rlhf --external_plugins`)
SWIFT_PLUGIN = """
from swift.rewards import ORM, orms

from hivau.models import rewards


class _Hivau(ORM):  # ms-swift calls reward(completions, **columns of the rows, trainer_state)
    def __call__(self, completions, messages=None, **columns):
        return self.reward(prompts=messages, completions=completions, **columns)


class HivauFormat(_Hivau):
    reward = staticmethod(rewards.format_reward)


class HivauAccuracy(_Hivau):
    reward = staticmethod(rewards.accuracy_reward)


class HivauIoU(_Hivau):
    reward = staticmethod(rewards.iou_reward)


orms.update(hivau_format=HivauFormat, hivau_accuracy=HivauAccuracy, hivau_iou=HivauIoU)
"""

SWIFT_LOADER = """
import json, sys

import torch
from swift.dataset import load_dataset
from swift.rewards import orms
from swift.rl_core.data import GRPOSample
from swift.rl_core.grpo_algorithm import compute_rewards_per_func

import hivau_swift_rewards  # noqa: F401  (registers hivau_format, hivau_accuracy, hivau_iou)

out = {}
for folder, remove in (("sft/swift", True), ("grpo/swift", False)):  # `swift rlhf` keeps the extra columns
    for split in ("train", "test"):
        data, _ = load_dataset([f"{folder}/{split}.jsonl"], remove_unused_columns=remove, strict=True, num_proc=1,
                               load_from_cache_file=False)
        out[f"{folder}/{split}"] = [dict(row) for row in data]
# swift's own reward call on the GRPO rows, each answered with the SFT target given with the row
samples = []
for row, answer in zip(out["grpo/swift/train"], json.loads(sys.argv[2])):
    sample = GRPOSample.from_row(row)
    sample.messages.append({"role": "assistant", "content": answer})
    samples.append(sample)
funcs = [orms[name](args=None) for name in ("hivau_format", "hivau_accuracy", "hivau_iou")]
rewards = compute_rewards_per_func(samples, funcs, None, device=torch.device("cpu"))
out["rewards"] = [[None if r != r else r for r in row] for row in rewards.tolist()]  # NaN: not this task's
with open(sys.argv[1], "w") as fh:
    json.dump(out, fh)
"""

LLAMAFACTORY_LOADER = """
import json, sys
from transformers import Seq2SeqTrainingArguments
from llamafactory.data.loader import _get_merged_dataset
from llamafactory.hparams import DataArguments, ModelArguments

out_path, release, out_dir, names = sys.argv[1:5]
data_args = DataArguments(dataset=names, dataset_dir=f"{release}/sft/llamafactory", media_dir=release)
model_args = ModelArguments(model_name_or_path="none")  # no model is loaded: only the datasets are read
training_args = Seq2SeqTrainingArguments(output_dir=out_dir, report_to=[])
merged = _get_merged_dataset(data_args.dataset, model_args, data_args, training_args, stage="sft", return_dict=True)
with open(out_path, "w") as fh:
    json.dump({name: [dict(row) for row in data] for name, data in merged.items()}, fh)
"""


def run_in_exports_venv(framework: str, script: str, *args: str, cwd: Path, tmp_path: Path,
                        pythonpath: Path | None = None) -> dict:
    python = EXPORTS_VENVS / framework / "bin" / "python"
    if not python.is_file():
        pytest.skip(f"{python.parent.parent.relative_to(ROOT)} is missing: {framework} pins other versions than ours "
                    "and lives there; `make test` installs it (scripts/bootstrap_exports.sh)")
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_DATASETS_CACHE": str(tmp_path / "hf-datasets"),
           "MODELSCOPE_CACHE": str(tmp_path / "modelscope"), "HF_HUB_OFFLINE": "1", "USE_HF": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    env.pop("PYTHONPATH", None)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    out = tmp_path / f"{framework}-rows.json"
    run = subprocess.run([str(python), "-c", script, str(out), *args], cwd=cwd, env=env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    return json.loads(out.read_text())


def importable_hivau_rewards(folder: Path) -> Path:
    """A folder on which `hivau.models.rewards` imports (as where hivau is installed beside ms-swift), with the
    plugin: hivau's package made of links to this checkout's sources."""
    package = folder / "hivau"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text((ROOT / "hivau" / "__init__.py").read_text())
    for name in ("schemas", "models"):
        (package / name).symlink_to(ROOT / name, target_is_directory=True)
    (folder / "hivau_swift_rewards.py").write_text(SWIFT_PLUGIN)
    return folder


@pytest.mark.prefect_server
def test_ms_swift_load_dataset_reads_the_sft_and_grpo_rows(demo_release, tmp_path):
    answers = [sft_target(t, chain="What I see.") for t in read_vau_rows(demo_release, "train")]
    loaded = run_in_exports_venv("swift", SWIFT_LOADER, json.dumps(answers), cwd=demo_release, tmp_path=tmp_path,
                                 pythonpath=importable_hivau_rewards(tmp_path / "plugin"))  # swift runs from the release
    for split in SPLITS:
        tasks = read_vau_rows(demo_release, split)
        sft, grpo = loaded[f"sft/swift/{split}"], loaded[f"grpo/swift/{split}"]
        assert len(sft) == len(grpo) == len(tasks)  # not one row dropped as malformed
        for t, s, g, ours_s, ours_g in zip(tasks, sft, grpo, read_jsonl(demo_release / "sft" / "swift" /
                                                                        f"{split}.jsonl"),
                                           read_jsonl(demo_release / "grpo" / "swift" / f"{split}.jsonl")):
            assert set(s) == {"messages", "videos", "dataset"}  # SFT: swift's standard keys (and its source file)
            assert s["messages"] == ours_s["messages"] and s["videos"] == [t.media_path]
            # GRPO: messages, videos, and every reward column intact (solution kept by swift's GRPO compat)
            assert {k: g[k] for k in ours_g} == ours_g, t.id
            assert (demo_release / g["videos"][0]).is_file()  # relative to the working directory
    # swift's compute_rewards_per_func gave hivau's rewards the columns: format, then accuracy or IoU, in full
    tasks = [t.task for t in read_vau_rows(demo_release, "train")]
    assert loaded["rewards"] == [[1.0, None, 1.0] if task == "grounding" else [1.0, 1.0, None] for task in tasks]


@pytest.mark.prefect_server
def test_llamafactory_reads_the_sft_rows_through_its_dataset_info(demo_release, tmp_path):
    names = f"{SFT_DATASET_PREFIX}_train,{SFT_DATASET_PREFIX}_test"
    loaded = run_in_exports_venv("llamafactory", LLAMAFACTORY_LOADER, str(demo_release), str(tmp_path / "lf"), names,
                                 cwd=tmp_path, tmp_path=tmp_path)
    for split in SPLITS:
        tasks = read_vau_rows(demo_release, split)
        aligned = loaded[f"{SFT_DATASET_PREFIX}_{split}"]
        assert len(aligned) == len(tasks)
        for t, row, ours in zip(tasks, aligned, read_jsonl(demo_release / "sft" / "llamafactory" / f"{split}.jsonl")):
            # the converter's aligned form: a user prompt, the assistant target, the video joined to media_dir
            assert row["_prompt"] == [ours["messages"][0]], t.id  # not skipped as abnormal (it would be empty)
            assert row["_response"] == [ours["messages"][1]] and ours["messages"][1]["content"].endswith(target_of(t))
            assert row["_videos"] == [str(demo_release / t.media_path)] and Path(row["_videos"][0]).is_file()
            assert row["_system"] == "" and not row["_images"]
