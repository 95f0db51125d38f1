"""`hivau-train --stage vau-sft | vau-grpo` on a tiny real Qwen2-VL built here: the prompts every stage shares, SFT
that learns its targets, and TRL's GRPOTrainer with hivau's rewards (rewards computed, the policy moved, the
adapters saved and loaded by the next stage)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tiny_video_vlms import build_tiny_internvl, build_tiny_llava_onevision, build_tiny_qwen2_vl

from hivau.models.vau_policy import VauPolicyConfig, encode, load_policy, task_prompt, user_turn
from hivau.prompts.vau import sft_target
from hivau.schemas.records import read_vau_rows

pytestmark = pytest.mark.prefect_server  # the demo release


def hivau_train(*args, timeout: int = 900) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "hivau.models.train", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env={"OMP_NUM_THREADS": "2", **__import__("os").environ})
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def adapter_weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "adapter_model.safetensors")


@pytest.fixture(scope="module")
def tiny_qwen(demo_release, tmp_path_factory) -> Path:
    texts = (demo_release / "sft" / "swift" / "train.jsonl").read_text().splitlines()
    return build_tiny_qwen2_vl(tmp_path_factory.mktemp("policy") / "qwen2-vl", texts=texts)


def test_prompts_agree_across_stages_and_labels_cover_the_target_alone(demo_release, tiny_qwen):
    tasks = read_vau_rows(demo_release, "train")
    grounding = next(t for t in tasks if t.task == "grounding")
    prompt = task_prompt(grounding, [0.0, 2.5])
    assert prompt.startswith("The frames are at 0.0, 2.5 s of the video.\n") and "<glue>" in prompt
    choice = next(t for t in tasks if t.task == "choice")
    assert task_prompt(choice, [0.0, 2.5]).startswith(choice.question)  # only grounding needs the times
    # TRL's conversation for a `prompt` with two `images` is the one SFT and scoring render
    assert user_turn("Q", 2) == [{"role": "user", "content": [{"type": "image"}, {"type": "image"},
                                                             {"type": "text", "text": "Q"}]}]
    cfg = VauPolicyConfig(stage="vau-sft", release=str(demo_release), out="-", model_path=str(tiny_qwen))
    _, processor = load_policy(cfg, None, trainable=False)
    from PIL import Image

    images = [Image.new("RGB", (56, 56), (i * 60, 0, 0)) for i in range(2)]
    target = sft_target(choice, "Perception: a scene.")
    enc = encode(processor, task_prompt(choice, [0.0, 2.5]), images, target)
    labelled = enc["input_ids"][0][enc["labels"][0] != -100]
    assert processor.tokenizer.decode(labelled).startswith(target)  # the target (and its end of turn), no prompt
    assert (enc["input_ids"][0] == processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")).sum() > 0


def test_sft_then_grpo_trains_scores_and_saves_adapters(demo_release, tiny_qwen, tmp_path):
    # a random tiny model learns through adapters on every layer of its LM and its output head (a pretrained one
    # needs neither); the task with the shortest answers, asked for without <think>
    options = {"model_path": str(tiny_qwen), "short_side": 56, "tasks": ["detect"], "think": False,
               "lora_targets": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
               "modules_to_save": ["lm_head"]}
    common = ["--release", demo_release, "--preset", "vlm", "--n-frames", "2", "--max-new-tokens", "24",
              "--preset-options", json.dumps(options)]
    # SFT on the short targets ("<answer>yes</answer>") until the policy writes them: then its samples differ in
    # what they answer, and GRPO's rewards differ within a group
    hivau_train("--stage", "vau-sft", *common, "--out", tmp_path / "sft", "--max-steps", 40, "--batch-size", 2,
                "--lr", 5e-3)
    sft = json.loads((tmp_path / "sft" / "summary.json").read_text())
    assert sft["log"][-1]["loss"] < sft["log"][0]["loss"] / 4
    before, after = sft["test_before"]["detect"], sft["test_after"]["detect"]
    assert after["n"] > 0 and after["accuracy"] > before["accuracy"]  # it answers yes / no where it wrote noise
    tuned = adapter_weights(tmp_path / "sft" / "adapters")
    assert tuned and any(float(w.abs().sum()) > 0 for k, w in tuned.items() if "lora_B" in k)  # B starts at zero

    hivau_train("--stage", "vau-grpo", *common, "--init", tmp_path / "sft" / "adapters", "--out", tmp_path / "grpo",
                "--max-steps", 2, "--batch-size", 4, "--num-generations", 4, "--max-completion-length", 12)
    grpo = json.loads((tmp_path / "grpo" / "summary.json").read_text())
    assert len(grpo["log"]) == 2
    for step in grpo["log"]:  # hivau's rewards, computed by TRL on every step (iou: no grounding task here)
        assert step["rewards/format_reward/mean"] is not None and step["rewards/accuracy_reward/mean"] is not None
    assert any(step["reward_std"] > 0 for step in grpo["log"])
    moved = adapter_weights(tmp_path / "grpo" / "adapters")
    assert moved.keys() == tuned.keys()
    assert any(not torch.equal(moved[k], tuned[k]) for k in tuned)  # the policy changed
    predictions = [json.loads(x) for x in (tmp_path / "grpo" / "predictions.jsonl").read_text().splitlines()]
    assert {p["id"] for p in predictions} == {t.id for t in read_vau_rows(demo_release, "test", tasks=["detect"])}


# the other families of the vlm preset, through both stages in-process (two steps each: they run, they save)
FAMILIES = {"qwen2_5_vl": lambda folder, texts: build_tiny_qwen2_vl(folder, texts, family="qwen2_5_vl"),
            "internvl": build_tiny_internvl, "llava_onevision": build_tiny_llava_onevision}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_each_vlm_family_goes_through_both_stages(demo_release, tmp_path, family):
    from hivau.models.vau_policy import run

    texts = (demo_release / "sft" / "swift" / "train.jsonl").read_text().splitlines()
    model = FAMILIES[family](tmp_path / family, texts)
    frames = 1 if family == "llava_onevision" else 2
    common = dict(release=str(demo_release), model_path=str(model), n_frames=frames, short_side=56, tasks=["detect"],
                  think=False, max_new_tokens=8)
    sft = run(VauPolicyConfig(stage="vau-sft", out=str(tmp_path / "sft"), max_steps=2, batch_size=2, lr=1e-3, **common))
    assert len(sft["log"]) == 2 and (tmp_path / "sft" / "adapters" / "adapter_model.safetensors").is_file()
    grpo = run(VauPolicyConfig(stage="vau-grpo", out=str(tmp_path / "grpo"), init=str(tmp_path / "sft" / "adapters"),
                               max_steps=1, batch_size=2, num_generations=2, max_completion_length=8, **common))
    assert len(grpo["log"]) == 1 and grpo["log"][0]["rewards/accuracy_reward/mean"] is not None
    if family == "llava_onevision":  # TRL 1.16 splits its pixels of several images per prompt wrongly: refused
        with pytest.raises(SystemExit, match="several images"):
            run(VauPolicyConfig(stage="vau-grpo", out=str(tmp_path / "grpo2"), max_steps=1, batch_size=2,
                                num_generations=2, **{**common, "n_frames": 2}))


def _stop_when(cmd: list, out_log: Path, ready: str, timeout_s: float = 600) -> subprocess.Popen:
    """Run `cmd`, and Ctrl-C it (SIGINT to its process group) once its output shows `ready`."""
    import os
    import signal
    import time

    proc = subprocess.Popen([sys.executable, "-m", "hivau.models.train", *map(str, cmd)], stdout=open(out_log, "w"),
                            stderr=subprocess.STDOUT, start_new_session=True, env={"OMP_NUM_THREADS": "2", **os.environ})
    deadline = time.monotonic() + timeout_s
    while ready not in out_log.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, out_log.read_text()[-3000:]
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGINT)
    proc.wait(timeout=120)
    return proc


def test_a_stopped_stage_saves_a_checkpoint_and_resumes_from_it(demo_release, tiny_qwen, tmp_path):
    options = {"model_path": str(tiny_qwen), "short_side": 56, "tasks": ["detect"], "think": False,
               "score_before": False, "eval_per_task": 1}
    common = ["--release", demo_release, "--preset", "vlm", "--n-frames", "2", "--max-new-tokens", "8",
              "--preset-options", json.dumps(options), "--batch-size", 2, "--lr", 1e-3]
    # SFT: Ctrl-C after its 3rd step; it stops at a step with a checkpoint, and a run resumed from it to step S+2
    # ends with the adapters of a run that went to S+2 without stopping
    log = tmp_path / "sft.log"
    proc = _stop_when(["--stage", "vau-sft", *common, "--out", tmp_path / "stopped", "--max-steps", 1000,
                       "--log-every", 1], log, '"step": 3,')
    assert proc.returncode == 130, log.read_text()[-3000:]
    assert "hivau-train stopped by SIGINT during SFT step" in log.read_text()
    step = torch.load(tmp_path / "stopped" / "checkpoint" / "state.pt", weights_only=False)["step"]
    assert step >= 3
    resumed = hivau_train("--stage", "vau-sft", *common, "--out", tmp_path / "stopped", "--max-steps", step + 2)
    assert f'"resumed_from": {step}' in resumed.stdout
    hivau_train("--stage", "vau-sft", *common, "--out", tmp_path / "straight", "--max-steps", step + 2)
    a, b = adapter_weights(tmp_path / "stopped" / "adapters"), adapter_weights(tmp_path / "straight" / "adapters")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    # GRPO (TRL's trainer): Ctrl-C after a step; TRL's checkpoint of that step is where the next run goes on
    grpo = ["--stage", "vau-grpo", *common, "--init", tmp_path / "straight" / "adapters", "--out", tmp_path / "grpo",
            "--num-generations", 2, "--max-completion-length", 8]
    log = tmp_path / "grpo.log"
    proc = _stop_when([*grpo, "--max-steps", 1000], log, "'reward'")
    assert proc.returncode == 130, log.read_text()[-3000:]
    (checkpoint,) = (tmp_path / "grpo" / "grpo").glob("checkpoint-*")
    done = int(checkpoint.name.split("-")[1])
    resumed = hivau_train(*grpo, "--max-steps", done + 1)
    assert f'"resumed_from": "{checkpoint.name}"' in resumed.stdout
    summary = json.loads((tmp_path / "grpo" / "summary.json").read_text())
    assert [s["step"] for s in summary["log"]][-1] == done + 1
