"""A release's rows in the formats other trainers read: HIVAU-70k JSONL, LLaMA-Factory, ms-swift, VAU-R1's CSV.

Field names were checked against the frameworks' own sources:
- HolmesVAU (github.com/pipixin321/HolmesVAU): `internvl_chat/shell/data_example.jsonl` for the row keys,
  `internvl_chat/internvl/train/internvl_chat_finetune.py` (`os.path.join(meta['root'], item['video'])`) and
  `HIVAU-70k/split_video.py` (`videos/{dataset}/{videos,events,clips}/{split}/`) for the paths.
- LLaMA-Factory (github.com/hiyouga/LLaMA-Factory): `data/README.md` ("Multimodal Video Dataset", "OpenAI
  Format"), `data/dataset_info.json` (`mllm_video_demo`), `src/llamafactory/data/converter.py` (`_find_medias`
  joins each path, or each frame of a frame list, to `media_dir`, which defaults to `dataset_dir`).
- ms-swift (github.com/modelscope/ms-swift): `docs/source_en/Customization/Custom-dataset.md` ("Multimodal":
  `messages` + `videos`, frame lists for the Qwen-VL families) and `swift/template/vision_utils.py`
  (`_check_path`: relative paths resolve against the working directory, or `ROOT_IMAGE_DIR`).
- VAU-R1 (github.com/GVCLab/VAU-R1): `annotations/test_ucf_crime.csv` for the CSV's columns and `-1` cells.

The verifiable tasks' SFT and GRPO rows (`sft_record`, `swift_grpo_record`, `trl_grpo_record`) were checked against
VAU-R1's repository and the wheels of the framework versions named (`pip download --no-deps`, unzipped):
- VAU-R1: `src/open_r1/grpo_gqa.py` (`<think>..</think><answer>..</answer>` and `<glue>[s, e]</glue>`, `format_reward`,
  `iou_glue_reward`), `src/evaluation/inference_tag_qwen.py` (`<glue>[-1.0, -1.0]</glue>` for a normal video). Here
  the glue sits inside the answer; hivau.models.rewards reads it there, before or after the answer.
- TRL 1.16.0: `trl/trainer/grpo_trainer.py` `GRPOTrainer._generate_and_score_completions` (reads `x["prompt"]`, and
  images only from an `images` (list) or `image` column, put into a conversational prompt by
  `trl/data_utils.py` `prepare_multimodal_messages`; nothing reads a video column, and the forward pass builds its
  pixel inputs from those images alone), `GRPOTrainer._calculate_rewards` (every column but `prompt`, `completion`,
  `completion_ids` goes to each reward function as a keyword list: `solution`, `task`, `options`, ...; a `None`
  reward is NaN, left out of the sum), `trl/trainer/grpo_config.py` (`remove_unused_columns` defaults to False so
  those columns stay), `trl/data_utils.py` `is_conversational` (a `prompt` list of `role` dicts).
- ms-swift 4.6.0: `swift/dataset/preprocessor/core.py` (`RowPreprocessor.standard_keys`: `messages`, `videos`, ...;
  "compat GRPO: the solution field will be retained"), `swift/dataset/loader.py` `load_dataset(remove_unused_columns=)`,
  `swift/arguments/rlhf_args.py` (rlhf sets `remove_unused_columns = False`, so extra columns reach the rewards),
  `swift/rl_core/grpo_algorithm.py` `compute_rewards_per_func` (`reward_func(completions, **kwargs)`: kwargs are the
  row's columns, batched, plus `trainer_state`; `None` -> NaN), `swift/rlhf_trainers/rollout_mixin.py`
  `_preprocess_inputs` (`remove_response`: a trailing assistant turn is dropped before rollout, so a GRPO row needs
  none; ours has only the user turn); the repository's docs/source_en/Instruction/GRPO/DeveloperGuide/
  reward_function.md ("the original assistant response in the dataset will be discarded"; extra columns as kwargs).
- LLaMA-Factory 0.9.5: `llamafactory/data/converter.py` `SharegptDatasetConverter` (user/assistant turns in pairs,
  `_find_medias` joins paths to `media_dir`), `llamafactory/data/parser.py` `get_dataset_list` (`dataset_info.json`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Union

from hivau.prompts.vau import rl_prompt, sft_target
from hivau.schemas.chains import vau_r1_reasoning
from hivau.schemas.records import VAU_R1_COLUMNS, InstructionRow, VauTaskRow

MEDIA_DIR = "media"  # HolmesVAU's `root` inside a release: its `video` paths are relative to this folder
KIND_OF_LEVEL = {"clip": "clips", "event": "events", "video": "videos"}
VIDEO_TAG = "<video>\n"
Video = Union[str, Sequence[str]]  # a file, or the frames of one video as image files


def hivau_media_path(dataset: str, level: str, split: str, name: str) -> str:
    """HIVAU-70k's layout, `{dataset}/{clips,events,videos}/{split}/{name}`, under the release's media folder."""
    return f"{MEDIA_DIR}/{dataset}/{KIND_OF_LEVEL[level]}/{split}/{name}"


def hivau_record(index: int, row: InstructionRow) -> dict:
    """A row of HolmesVAU's InternVL fine-tuning data; QA rows (not in HIVAU-70k) add their `qa_type`."""
    record = {"id": index, "type": row.level, "task": row.task}
    if row.qa_type is not None:
        record["qa_type"] = row.qa_type
    record["video"] = row.media_path.removeprefix(f"{MEDIA_DIR}/")
    record["conversations"] = [{"from": "human", "value": f"{VIDEO_TAG}{row.prompt}"},
                               {"from": "gpt", "value": row.answer}]
    return record


def messages_record(row: InstructionRow, video: Video) -> dict:
    """The `messages` + `videos` row that both LLaMA-Factory (OpenAI-style sharegpt) and ms-swift read; one
    `<video>` tag for the one video, which may be a path or a list of frame paths."""
    return {"messages": [{"role": "user", "content": f"{VIDEO_TAG}{row.prompt}"},
                         {"role": "assistant", "content": row.answer}],
            "videos": [video if isinstance(video, str) else list(video)]}


def llamafactory_dataset_info(file_names: dict[str, str], prefix: str = "hivau") -> dict:
    """`dataset_info.json` entries `{prefix}_{split}` for files beside it, in the documented sharegpt form."""
    return {f"{prefix}_{split}": {
        "file_name": name, "formatting": "sharegpt",
        "columns": {"messages": "messages", "videos": "videos"},
        "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"},
    } for split, name in file_names.items()}


NOT_GIVEN = "-1"  # VAU-R1's CSV cell for a field that does not apply


def vau_r1_rows(tasks: list[VauTaskRow], chains: Optional[dict[str, str]] = None) -> list[dict]:
    """VAU-R1's CSV rows from a release's video-level tasks: its question is our description choice (else the
    class choice), its times our grounding answer ([-1, -1] for a normal video, as VAU-R1 answers), its
    `Reasoning` the video's released chain in VAU-R1's six parts (`chains`: item id -> chain text)."""
    chains = chains or {}
    by_video: dict[str, dict[str, VauTaskRow]] = {}
    for t in tasks:
        if t.level == "video":
            by_video.setdefault(t.source_video, {})[t.id.split(":", 1)[1]] = t
    rows = []
    for video_id, own in by_video.items():
        choice = own.get("choice:description") or own.get("choice:class")
        described = own.get("choice:description")
        span = own["grounding"].solution.strip("[]").split(", ") if "grounding" in own else [NOT_GIVEN, NOT_GIVEN]
        row = dict.fromkeys(VAU_R1_COLUMNS, NOT_GIVEN)
        row.update({"Video Name": Path(next(iter(own.values())).media_path).name,  # all show the whole video
                    "Anomaly Class": own["classify"].solution if "classify" in own else NOT_GIVEN,
                    "Description": described.answer_text if described else NOT_GIVEN,
                    "Start Time": span[0], "End Time": span[1]})
        if video_id in chains:
            row["Reasoning"] = vau_r1_reasoning(chains[video_id], row["Anomaly Class"])
        if choice is not None:
            row.update({"Question": choice.question.split("\n", 1)[0], "Correct Option": choice.solution,
                        **{f"Option {i + 1}": text for i, text in enumerate(choice.options)}})
        rows.append(row)
    return rows


# ---------------------------------------------------------------- verifiable tasks for SFT and GRPO (VAU-R1's format)
def sft_record(task: VauTaskRow, chain: Optional[str] = None, video: Optional[Video] = None) -> dict:
    """A `messages` + `videos` SFT row (LLaMA-Factory sharegpt/OpenAI style, ms-swift): the prompt asks for the
    think-then-answer format only when a chain is given, so that prompt and target agree; `video` defaults to the
    task's media path (relative to the release), or is a list of frame paths."""
    video = task.media_path if video is None else video
    return {"messages": [{"role": "user", "content": f"{VIDEO_TAG}{rl_prompt(task, think=chain is not None)}"},
                         {"role": "assistant", "content": sft_target(task, chain)}],
            "videos": [video if isinstance(video, str) else list(video)]}


def _reward_columns(task: VauTaskRow) -> dict:
    """Beside the prompt, what the reward functions receive: `id`, `task`, `solution`, `options`, `duration_s`."""
    return {"id": task.id, "task": task.task, "solution": task.solution, "options": list(task.options),
            "duration_s": round(task.duration_s, 3)}


def swift_grpo_record(task: VauTaskRow, video: Optional[Video] = None) -> dict:
    """An ms-swift GRPO row: `messages` with the user turn only (swift drops a trailing assistant turn anyway),
    `videos`, and the columns swift hands each reward function as keyword lists (`solution`, `task`, ...)."""
    video = task.media_path if video is None else video
    return {"messages": [{"role": "user", "content": f"{VIDEO_TAG}{rl_prompt(task)}"}],
            "videos": [video if isinstance(video, str) else list(video)], **_reward_columns(task)}


def trl_grpo_record(task: VauTaskRow) -> dict:
    """A TRL GRPOTrainer row: a conversational `prompt` (no media tag: TRL puts one image block per image before
    the text), the reward columns, and `video`, the media path relative to the release: TRL 1.16 takes no video,
    so a user turns it into an `images` column of frames (PIL images) before training."""
    return {"prompt": [{"role": "user", "content": rl_prompt(task)}], **_reward_columns(task),
            "video": task.media_path}
