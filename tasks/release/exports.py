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
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence, Union

from hivau.schemas.records import InstructionRow, VauTaskRow

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


# VAU-R1's VAU-Bench CSV (GVCLab/VAU-R1 `annotations/test_ucf_crime.csv`): one row per video, `-1` where a field
# does not apply, `Reasoning` a dict string of its six parts
VAU_R1_COLUMNS = ("Video Name", "Question", "Option 1", "Option 2", "Option 3", "Option 4", "Correct Option",
                  "Key Object", "Description", "Reasoning", "Anomaly Class", "Start Time", "End Time")
NOT_GIVEN = "-1"


def vau_r1_rows(tasks: list[VauTaskRow]) -> list[dict]:
    """VAU-R1's CSV rows from a release's video-level tasks: its question is our description choice (else the
    class choice), its times our grounding answer ([-1, -1] for a normal video, as VAU-R1 answers)."""
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
        if choice is not None:
            row.update({"Question": choice.question.split("\n", 1)[0], "Correct Option": choice.solution,
                        **{f"Option {i + 1}": text for i, text in enumerate(choice.options)}})
        rows.append(row)
    return rows

