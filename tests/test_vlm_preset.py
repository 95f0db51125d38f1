"""`--preset vlm` on tiny random Qwen2-VL, Qwen2.5-VL, LLaVA-OneVision and InternVL checkpoints that the tests build and
load as a user's folder would be: prompts through the chat template, loss on the answer only, which weights
each loss term reaches, the motion branch's own weights, save/load as adapters or merged, and the recipe
(DataLoader workers, trainable-only checkpoints, --keep-last, exact resume, hivau-eval) on the demo release."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")  # the families' video processors need it

from tiny_video_vlms import (  # noqa: E402
    INTERNVL_TEMPLATE,
    OV_TEMPLATE,
    QWEN_TEMPLATE,
    build_tiny_internvl,
    build_tiny_llava_onevision,
    build_tiny_qwen2_vl,
)

from hivau.models.vlm import IGNORE, PretrainedVideoLLM, VLMConfig  # noqa: E402

FAMILIES = {"qwen2_vl": build_tiny_qwen2_vl,
            "qwen2_5_vl": lambda folder: build_tiny_qwen2_vl(folder, family="qwen2_5_vl"),
            "llava_onevision": build_tiny_llava_onevision, "internvl": build_tiny_internvl}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("vlms")
    return {name: build(root / name) for name, build in FAMILIES.items()}


def load(path: Path, **options) -> PretrainedVideoLLM:
    torch.manual_seed(0)
    return PretrainedVideoLLM(VLMConfig(model_path=str(path), n_frames=4, frame_size=64, **options))


def samples(n: int = 2, seed: int = 0):
    rng = np.random.default_rng(seed)
    clip = lambda: rng.integers(0, 255, (4, 64, 64, 3), dtype=np.uint8)  # noqa: E731
    texts = [("Describe the video.", "a man in a red shirt walks into the street", "man walks street"),
             ("Is there an anomaly?", "yes, a white car crashes into a blue car", "")]
    return [(p, a, clip(), clip(), m) for p, a, m in (texts * n)[:n]]


def reached(module) -> bool:
    return any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())


def lora(module, which: str = "lora_B") -> list:
    return [p for n, p in module.named_parameters() if which in n]


def grads_after(model: PretrainedVideoLLM, term: str) -> PretrainedVideoLLM:
    model.zero_grad(set_to_none=True)
    getattr(model(model.collator()(samples())["batch"], t1=1.0, t2=1.0), term).backward()
    return model


def nudge_lora_b(model: PretrainedVideoLLM) -> None:
    """LoRA's B starts at zero; give it values so that gradients reach A as well and the branch differs."""
    with torch.no_grad():
        for p in lora(model):
            p.normal_(0, 0.02)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_labels_cover_the_answer_and_its_end_of_turn_only(checkpoints, family):
    model = load(checkpoints[family])
    from hivau.models.interface import VideoLLM

    assert isinstance(model, VideoLLM)  # the recipe's declared interface
    collate = model.collator()
    long_answer = " ".join(["the man walks into the street and the car stops"] * 30)  # far past 96 tokens
    item = collate.encode("Describe the video.", long_answer, [samples()[0][2], samples()[0][3]])
    answer = item["labels"][item["labels"] != IGNORE]
    assert collate.tokenizer.decode(answer) == long_answer + collate.answer_suffix  # nothing cut, nothing else
    assert (item["labels"][: len(item["labels"]) - len(answer)] == IGNORE).all()
    prompt_ids = item["input_ids"][: len(item["input_ids"]) - len(answer)]
    assert int((prompt_ids == collate.placeholder_id).sum()) == 2 * collate.visual_tokens(4, 64)  # video, motion
    assert not item["over_length"]

    class Row:
        prompt, answer = "Describe the video.", long_answer

    short = model.collator()
    short.max_length = len(item["input_ids"]) - 1
    report = short.length_report([Row(), Row()], 4, 64)
    assert report["rows_over_length"] == 2 and report["longest_row"] == len(item["input_ids"])
    assert short.encode(Row.prompt, Row.answer, [samples()[0][2], samples()[0][3]])["over_length"]


# each family's published template, and what it writes after an assistant message's text
PUBLISHED = {"qwen2_vl": (QWEN_TEMPLATE, "<|im_end|>\n"), "qwen2_5_vl": (QWEN_TEMPLATE, "<|im_end|>\n"),
             "llava_onevision": (OV_TEMPLATE, "<|im_end|>"), "internvl": (INTERNVL_TEMPLATE, "<|im_end|>\n")}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_published_templates_label_the_answer_after_the_inference_prompt(checkpoints, family):
    """Labels are the answer and its end of turn, after exactly the prompt that generation is given (llava-hf's
    LLaVA-OneVision template opens turns "<|im_start|>assistant " but prompts "<|im_start|>assistant\\n")."""
    template, end_of_turn = PUBLISHED[family]
    model = load(checkpoints[family])
    assert model.processor.chat_template == template
    collate = model.collator()
    prompt, answer, frames, motion, _ = samples(1)[0]
    item = collate.encode(prompt, answer, [frames, motion])
    n_label = int((item["labels"] != IGNORE).sum())
    assert (item["labels"][-n_label:] != IGNORE).all()  # one run at the end, after the prompt
    assert collate.tokenizer.decode(item["labels"][-n_label:]) == answer + end_of_turn

    turn = [{"role": "user", "content": [{"type": "video"}, {"type": "video"}, {"type": "text", "text": prompt}]}]
    rendered = model.processor.apply_chat_template(turn, add_generation_prompt=True, tokenize=False)
    assert rendered.endswith("<|im_start|>assistant\n")
    asked = model.processor(text=[rendered], videos=[frames, motion], return_tensors="pt")["input_ids"][0]
    inference = collate([(prompt, None, frames, motion, "")], train=False)["batch"]["main"]["input_ids"][0]
    assert torch.equal(item["input_ids"][:-n_label], asked) and torch.equal(inference, asked)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_one_training_step_on_each_published_template_lowers_the_loss(checkpoints, family):
    model = load(checkpoints[family])
    trainable = [p for p in model.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in trainable]
    batch = model.collator()(samples())["batch"]
    losses = model(batch, t1=1.0, t2=1.0)
    assert torch.isfinite(losses.total)
    losses.total.backward()
    torch.optim.SGD(trainable, lr=1e-2).step()
    assert any(not torch.equal(p, b) for p, b in zip(trainable, before))
    with torch.no_grad():
        assert model(batch, t1=1.0, t2=1.0).total < losses.total  # one step down the gradient lowers the loss


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_each_loss_term_reaches_exactly_the_weights_it_should(checkpoints, family):
    model = load(checkpoints[family])
    nudge_lora_b(model)
    lm, motion = model.core.language_model, model.motion_tower
    motion_projector = model.motion_projector or getattr(motion, model.spec.projector)
    projector = model.appearance_projector()

    mv = grads_after(model, "mv")  # 1 - cos(C_v, C_m): both pooled paths, no language model
    assert reached(mv.compress_v) and reached(mv.compress_m) and reached(projector)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in lora(motion, "lora_A"))
    assert reached(motion_projector) and not any(p.grad is not None for p in lora(lm))

    ml = grads_after(model, "ml")  # motion tokens alone -> motion phrases
    assert reached(motion_projector) and any(p.grad.abs().sum() > 0 for p in lora(motion))
    assert any(p.grad.abs().sum() > 0 for p in lora(lm))
    assert not reached(projector) and not reached(ml.compress_v) and not reached(ml.compress_m)

    vl = grads_after(model, "vl")  # video + motion video + instruction -> answer
    assert reached(projector) and reached(motion_projector) and any(p.grad.abs().sum() > 0 for p in lora(lm))
    assert not reached(vl.compress_v) and not reached(vl.scorer)

    frozen = [p for n, p in model.vlm.named_parameters() if "lora_" not in n and
              not n.startswith(f"model.{model.spec.tower}.{model.spec.projector}") and "multi_modal_projector" not in n]
    assert frozen and all(p.grad is None and not p.requires_grad for p in frozen)  # the base never trains


@pytest.mark.parametrize("branch", ["lora", "copy"])
def test_the_motion_branch_has_weights_of_its_own(checkpoints, branch):
    model = load(checkpoints["qwen2_vl"], motion_branch=branch)
    tower, twin = model.appearance_tower(), model.motion_tower
    base = next(n for n, _ in tower.named_parameters() if n.endswith("blocks.0.attn.qkv.weight"))
    shared = tower.get_parameter(base).data_ptr() == twin.get_parameter(base.replace(
        "attn.qkv.weight", "attn.qkv.base_layer.weight") if branch == "lora" else base).data_ptr()
    assert shared == (branch == "lora")  # LoRA: the twin costs no memory for the base weights
    videos = model.collator()(samples(1))["batch"]
    same = lambda: torch.allclose(model.appearance_features(videos["appearance"])[0],  # noqa: E731
                                  model.motion_features(videos["appearance"])[0])
    assert same()  # it starts as the model's own tower and projector...
    with torch.no_grad():
        for p in twin.parameters():
            if p.requires_grad:
                p.add_(0.05)
    assert not same()  # ...and moving its weights moves the motion features only
    assert torch.equal(model.appearance_features(videos["appearance"])[0],
                       load(checkpoints["qwen2_vl"]).appearance_features(videos["appearance"])[0])


@pytest.mark.parametrize("mode", ["adapters", "merged"])
def test_save_and_load_give_the_same_answers(checkpoints, tmp_path, mode):
    from transformers import AutoModelForImageTextToText

    from hivau.models.io import load_model, save_model

    model = load(checkpoints["qwen2_vl"]).eval()
    nudge_lora_b(model)
    batch = model.collator()(samples(), train=False)
    batch.pop("over_length")
    said = model.generate(**batch, max_new_tokens=6)
    assert len(said) == 2
    trainable = set(model.trainable_state())
    save_model(model, tmp_path / "m", card="# test\n", mode=mode)
    files = {p.name for p in (tmp_path / "m").iterdir()}
    assert {"config.json", "trainable.safetensors", "processor", "README.md"} <= files
    assert ("hf" in files) == (mode == "merged")
    loaded = load_model(tmp_path / "m")
    assert loaded.generate(**batch, max_new_tokens=6) == said
    if mode == "merged":  # a plain Hugging Face checkpoint, LoRA folded in, that any tool loads
        plain = AutoModelForImageTextToText.from_pretrained(tmp_path / "m" / "hf")
        assert not any("lora_" in n for n, _ in plain.named_parameters())
    else:
        from safetensors.torch import load_file

        assert set(load_file(str(tmp_path / "m" / "trainable.safetensors"))) == trainable


# ---------------------------------------------------------------- the recipe on the demo release
def _train(release: Path, out: Path, model: Path, *extra: str) -> subprocess.CompletedProcess:
    options = json.dumps({"model_path": str(model), "n_frames": 4, "frame_size": 64,
                          "scorer": {"stride": 16, "d_model": 32, "epochs": 2}})
    cmd = [sys.executable, "-m", "hivau.models.train", "--release", str(release), "--preset", "vlm",
           "--preset-options", options, "--out", str(out), "--batch-size", "2", "--log-every", "1",
           "--num-threads", "1", "--save-every", "1", *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


def _trainable(run: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(run / "model" / "trainable.safetensors"))


def test_vlm_recipe_trains_resumes_exactly_and_keeps_only_trainable_weights(demo_release, checkpoints, tmp_path):
    model = checkpoints["qwen2_vl"]
    _train(demo_release, tmp_path / "straight", model, "--max-steps", "3", "--workers", "2", "--keep-last", "1")
    _train(demo_release, tmp_path / "resumed", model, "--max-steps", "3", "--stop-at", "2", "--workers", "0")
    proc = _train(demo_release, tmp_path / "resumed", model, "--max-steps", "3", "--workers", "2")
    assert '"resumed_from": "step-0000002.pt"' in proc.stdout
    straight, resumed = _trainable(tmp_path / "straight"), _trainable(tmp_path / "resumed")
    assert straight.keys() == resumed.keys() and all(torch.equal(straight[k], resumed[k]) for k in straight)

    assert [p.name for p in (tmp_path / "straight" / "checkpoints").glob("step-*.pt")] == ["step-0000003.pt"]
    state = torch.load(tmp_path / "straight" / "checkpoints" / "step-0000003.pt", weights_only=False)["model"]
    assert any("lora_" in k for k in state) and any(k.startswith("scorer.") for k in state)
    assert not any(k.endswith("base_layer.weight") or "embed_tokens" in k for k in state)  # no frozen base
    log = [json.loads(line) for line in (tmp_path / "straight" / "train_log.jsonl").read_text().splitlines()]
    lengths = next(r for r in log if r.get("stage") == "lengths")
    assert lengths["rows_over_length"] == 0 and lengths["max_length"] == 4096
    assert [r["step"] for r in log if r.get("stage") == "vlm"] == [1, 2, 3]
    assert all(np.isfinite(r["total"]) and r["ml"] > 0 for r in log if r.get("stage") == "vlm")


@pytest.mark.parametrize("family", ["llava_onevision", "internvl"])
def test_vlm_recipe_merged_then_hivau_eval(demo_release, checkpoints, tmp_path, family):
    run = tmp_path / family
    _train(demo_release, run, checkpoints[family], "--max-steps", "2", "--save", "merged")
    assert (run / "model" / "hf" / "config.json").is_file()
    ev = subprocess.run([sys.executable, "-m", "hivau.models.evaluate", "--model", str(run / "model"), "--release",
                         str(demo_release), "--no-meteor", "--max-rows", "12", "--batch-size", "4"],
                        capture_output=True, text=True, timeout=900)
    assert ev.returncode == 0, ev.stderr[-4000:]
    metrics = json.loads((run / "model" / "metrics.json").read_text())
    assert metrics["text"] and metrics["scorer"]["videos"] >= 1
    predictions = [json.loads(line) for line in (run / "model" / "predictions.jsonl").read_text().splitlines()]
    assert len(predictions) == 12 and all(isinstance(p["answer"], str) for p in predictions)


def test_vlm_two_process_ddp_keeps_ranks_identical(demo_release, checkpoints, tmp_path):
    out = tmp_path / "ddp"
    options = json.dumps({"model_path": str(checkpoints["qwen2_vl"]), "n_frames": 4, "frame_size": 64,
                          "scorer": {"stride": 16, "d_model": 32, "epochs": 1}})
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
           "hivau.models.train", "--release", str(demo_release), "--preset", "vlm", "--preset-options", options,
           "--out", str(out), "--batch-size", "1", "--grad-accum", "2", "--max-steps", "2", "--num-threads", "1",
           "--workers", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    digests = [json.loads((out / f"rank{r}.json").read_text())["digest"] for r in (0, 1)]
    assert digests[0] == digests[1]
    assert json.loads((out / "model" / "config.json").read_text())["summary"]["world"] == 2


def test_a_vlm_preset_model_captions_clips_as_the_hivau_backend(built_demo, checkpoints, tmp_path):
    from hivau.models.io import save_model
    from hivau.tasks.text.caption import CaptionSettings, ClipFrames, make_captioner
    from hivau.workspace import Workspace

    model = load(checkpoints["llava_onevision"]).eval()
    save_model(model, tmp_path / "m", card="# test\n")
    ws = Workspace.at(built_demo)
    captioner = make_captioner(CaptionSettings(backend="hivau", model=str(tmp_path / "m"), max_new_tokens=6), ws)
    clip = next(c for c in ws.read_records("clips") if c.media_path)
    frames = ClipFrames(clip.clip_id, clip.start_s, clip.end_s, np.zeros((1, 8, 8, 3), np.uint8), [0.0],
                        str(ws.root / clip.media_path))
    said = captioner.caption([frames])
    batch = model.collator()([(captioner.prompt, None, *captioner._inputs(frames), "")], train=False)
    batch.pop("over_length")
    expected = model.generate(**batch, max_new_tokens=6)[0]
    assert said == [expected] if expected else said[0].reason == "caption_failed"


def test_qlora_trains_adapters_over_a_4bit_lm_and_round_trips(checkpoints, tmp_path):
    """QLoRA: the LM's base weights load in 4-bit NF4 (bitsandbytes, its CPU path here), LoRA trains over them."""
    bnb = pytest.importorskip("bitsandbytes")
    from hivau.models.io import load_model, save_model

    model = load(checkpoints["qwen2_vl"], quantization="4bit")
    q_proj = model.core.language_model.layers[0].self_attn.q_proj
    assert isinstance(q_proj.base_layer, bnb.nn.Linear4bit)
    assert not isinstance(model.appearance_tower().blocks[0].attn.qkv, bnb.nn.Linear4bit)  # the tower stays
    nudge_lora_b(model)
    grads_after(model, "vl")
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in lora(model.core.language_model))
    model.eval()
    batch = model.collator()(samples(), train=False)
    batch.pop("over_length")
    said = model.generate(**batch, max_new_tokens=5)
    save_model(model, tmp_path / "q", card="# test\n")
    assert load_model(tmp_path / "q").generate(**batch, max_new_tokens=5) == said
    with pytest.raises(ValueError, match="cannot be merged"):
        save_model(model, tmp_path / "merged", card="# test\n", mode="merged")


def test_scorer_features_stay_fixed_while_stage_two_trains(checkpoints):
    """The scorer is trained in stage 1; stage 2 moves the projector and the motion branch, not its inputs."""
    model = load(checkpoints["llava_onevision"])
    frames, motion = samples(1)[0][2:4]
    before = model.snippet_features(frames, motion)
    assert before.shape == (4, 2 * model.d_lm)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.1)
    assert torch.allclose(model.snippet_features(frames, motion), before)
    assert {k.split(".")[0] for k in model.trainable_state()} >= {"scorer", "scorer_projector", "motion_tower"}


def test_the_shipped_vlm_config_parses_and_flags_override_it(checkpoints):
    from hivau.models.train import parse_args, vlm_config

    config = Path(__file__).resolve().parents[1] / "configs" / "qwen2_5-vl-lora.yaml"
    cfg = parse_args(["--config", str(config), "--release", "R", "--out", "O", "--dtype", "fp32",
                      "--preset-options", json.dumps({"model_path": str(checkpoints["qwen2_vl"])})])
    assert cfg.preset == "vlm" and cfg.dtype == "fp32" and cfg.gradient_checkpointing and cfg.keep_last == 2
    assert vlm_config(cfg).dtype == "fp32" and vlm_config(cfg).gradient_checkpointing


def test_gradient_checkpointing_gives_the_same_loss_and_gradients(checkpoints):
    batch = load(checkpoints["qwen2_vl"]).collator()(samples())["batch"]
    grads = []
    for checkpointing in (False, True):
        model = load(checkpoints["qwen2_vl"], gradient_checkpointing=checkpointing)
        assert model.vlm.is_gradient_checkpointing == checkpointing
        nudge_lora_b(model)
        model.train()
        losses = model(batch, t1=1.0, t2=1.0)
        losses.total.backward()
        grads.append((losses.total.item(), [p.grad.clone() for p in lora(model.core.language_model)]))
    assert grads[0][0] == pytest.approx(grads[1][0], rel=1e-5)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(grads[0][1], grads[1][1]))
