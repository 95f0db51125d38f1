"""The video LLM and its recipe on a 2-layer, 64-dim model: loss terms reach the right weights, save/load,
a two-process DDP step, the CLIs on the demo release, and the caption metrics (exact resume, after a stop or
--stop-at: tests/test_faults_stop.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from hivau.models.composed_vlm import HivauVLM  # noqa: E402
from hivau.models.presets import tiny, train_tokenizer  # noqa: E402

TEXTS = ["A person in a red shirt walks from left to right on the road.", "Describe the clip.",
         "person walks", "Motion:", "A white car crashes into the blue car."]


def small_model(**update) -> HivauVLM:
    torch.manual_seed(0)
    tok = train_tokenizer(TEXTS * 3, vocab_size=300)
    cfg = tiny(len(tok), image_size=64, d_vision=64, d_lm=64, layers=2).model_copy(update=update)
    return HivauVLM(cfg, tok)


def batch(model):
    g = torch.Generator().manual_seed(1)
    frames = torch.randint(0, 255, (2, model.cfg.n_frames, 64, 64, 3), dtype=torch.uint8, generator=g)
    motion = torch.randint(0, 255, (2, model.cfg.n_frames, 64, 64, 3), dtype=torch.uint8, generator=g)
    return frames, motion, ["Describe the clip."] * 2, TEXTS[:1] + TEXTS[4:5], ["person walks", "car crashes"]


def reached(module) -> bool:
    return any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())


def grads_after(model, term: str) -> HivauVLM:
    model.zero_grad(set_to_none=True)
    losses = model(*batch(model), t1=1.0, t2=1.0)
    getattr(losses, term).backward()
    return model


def test_each_loss_term_reaches_exactly_the_weights_it_should():
    model = small_model()
    mv = grads_after(model, "mv")  # 1 - cos(C_v, C_m): both compression paths, no language model
    assert reached(mv.video.compress) and reached(mv.motion.compress)
    assert reached(mv.video.proj_in) and reached(mv.motion.proj_in)
    assert reached(mv.video.encoder) and reached(mv.motion.encoder)
    assert not reached(mv.lm) and not reached(mv.video.proj_out) and not reached(mv.motion.proj_out)

    ml = grads_after(model, "ml")  # motion tokens alone -> motion phrases
    assert reached(ml.motion.proj_out) and reached(ml.motion.encoder) and reached(ml.lm)
    assert not reached(ml.video) and not reached(ml.motion.compress)

    vl = grads_after(model, "vl")  # video + motion tokens + instruction -> answer
    assert reached(vl.video.proj_out) and reached(vl.motion.proj_out) and reached(vl.lm)
    assert not reached(vl.video.compress) and not reached(vl.motion.compress)
    assert not reached(vl.scorer)


def test_the_model_declares_the_recipe_interface():
    from hivau.models.interface import VideoLLM

    model = small_model()  # (the vlm preset's class is checked in tests/test_vlm_preset.py)
    assert isinstance(model, VideoLLM) and model.collator().length_report([], 4, 64) == {}


def test_switched_off_terms_are_zero_and_frozen_or_lora_weights_stay_put():
    model = small_model(freeze_encoders=True, lm_train="lora", lora_targets=["q_proj", "v_proj"])
    losses = model(*batch(model), t1=0.0, t2=0.0)
    assert float(losses.mv) == 0.0 and float(losses.ml) == 0.0
    assert float(losses.total.detach()) == pytest.approx(float(losses.vl.detach()))
    model(*batch(model), t1=0.1, t2=0.1).total.backward()
    assert all(p.grad is None for p in model.video.encoder.parameters())
    assert all(p.grad is None for p in model.motion.encoder.parameters())
    lora = {n: p for n, p in model.lm.named_parameters() if "lora_" in n}
    base = {n: p for n, p in model.lm.named_parameters() if "lora_" not in n}
    assert lora and all(p.requires_grad for p in lora.values())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in lora.items() if "lora_B" in n)
    assert all(p.grad is None for p in base.values())


def test_save_and_load_round_trip(tmp_path):
    from hivau.models.io import load_model, save_model

    model = small_model(lm_train="lora", lora_targets=["q_proj", "v_proj"]).eval()
    frames, motion, prompts, _, _ = batch(model)
    said = model.generate(frames, motion, prompts, max_new_tokens=6)
    save_model(model, tmp_path / "m", card="# test\n")
    assert {"config.json", "model.safetensors", "tokenizer", "README.md"} <= {p.name for p in (tmp_path / "m").iterdir()}
    assert (tmp_path / "m" / "tokenizer" / "tokenizer.json").is_file()
    loaded = load_model(tmp_path / "m")
    for (name, a), (_, b) in zip(sorted(model.state_dict().items()), sorted(loaded.state_dict().items())):
        assert torch.equal(a, b), name
    assert loaded.generate(frames, motion, prompts, max_new_tokens=6) == said
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text('{"model_type": "llama"}')
    with pytest.raises(ValueError, match="not a hivau model"):
        load_model(tmp_path / "bad")


# ---------------------------------------------------------------- the recipe on the demo release
def _train(release: Path, out: Path, *extra: str, world: int = 1) -> subprocess.CompletedProcess:
    args = ["--release", str(release), "--preset", "tiny", "--out", str(out), "--batch-size", "2",
            "--scorer-epochs", "2", "--log-every", "1", "--num-threads", "1",
            "--preset-options", '{"image_size": 64}', *extra]
    if world == 1:
        cmd = [sys.executable, "-m", "hivau.models.train", *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={world}",
               "-m", "hivau.models.train", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    failed = "\n".join(line for line in proc.stderr.splitlines() if "[rank1]" in line or "Error" in line)
    assert proc.returncode == 0, proc.stdout[-2000:] + failed[-4000:] + proc.stderr[-2000:]
    return proc


def test_two_process_ddp_step_keeps_ranks_identical(demo_release, tmp_path):
    _train(demo_release, tmp_path / "ddp", "--max-steps", "2", "--grad-accum", "2", world=2)
    digests = [json.loads((tmp_path / "ddp" / f"rank{r}.json").read_text())["digest"] for r in (0, 1)]
    assert digests[0] == digests[1]
    config = json.loads((tmp_path / "ddp" / "model" / "config.json").read_text())
    assert config["summary"]["world"] == 2 and config["summary"]["steps"] == 2


def test_train_and_eval_clis_on_the_demo_release(demo_release, tmp_path):
    out = tmp_path / "run"
    train = subprocess.run(["hivau-train", "--release", str(demo_release), "--preset", "tiny", "--out", str(out),
                            "--max-steps", "3", "--scorer-epochs", "2", "--batch-size", "4",
                            "--preset-options", '{"image_size": 64}'],
                           capture_output=True, text=True, timeout=600, env={**os.environ, "PATH": _venv_path()})
    assert train.returncode == 0, train.stderr[-3000:]
    assert "trained by `hivau-train`" in (out / "model" / "README.md").read_text()
    ev = subprocess.run(["hivau-eval", "--model", str(out / "model"), "--release", str(demo_release)],
                        capture_output=True, text=True, timeout=600, env={**os.environ, "PATH": _venv_path()})
    assert ev.returncode == 0, ev.stderr[-3000:]
    metrics = json.loads((out / "model" / "metrics.json").read_text())
    assert {"clip", "event", "video"} <= set(metrics["text"])
    for group in metrics["text"].values():
        assert all(0.0 <= group[k] <= 1.0 for k in ("BLEU-1", "BLEU-4", "ROUGE-L") if group.get("n"))
    assert set(metrics["ablation"]) == {"ats", "ats_holmes", "uniform", "topk"}
    assert metrics["scorer"]["videos"] >= 1 and 0.0 <= metrics["scorer"]["auc"] <= 1.0
    assert "| clip:caption |" in ev.stdout


def _venv_path() -> str:
    return f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"


# ---------------------------------------------------------------- metrics on known strings
def test_caption_metrics_on_known_strings():
    from hivau.models.metrics import CaptionScorer

    refs = {"a": ["a man runs across the road"], "b": ["a white car crashes into a blue car"]}
    with CaptionScorer(meteor=True) as scorer:
        same = scorer.score(refs, {"a": "a man runs across the road", "b": "a white car crashes into a blue car"})
        # "a man runs" vs the reference: 3 of 3 unigrams match, brevity penalty exp(1 - 6/3)
        part = scorer.score({"a": refs["a"]}, {"a": "a man runs"})
        none = scorer.score(refs, {"a": "sparks fly", "b": "nothing happens"})
    assert same["BLEU-1"] == pytest.approx(1.0, abs=1e-6) and same["BLEU-4"] == pytest.approx(1.0, abs=1e-6)
    assert same["ROUGE-L"] == pytest.approx(1.0) and same["METEOR"] > 0.9
    assert part["BLEU-1"] == pytest.approx(np.exp(1 - 6 / 3), rel=1e-3)
    assert none["BLEU-1"] < 1e-6 and none["ROUGE-L"] == 0.0 and none["CIDEr"] == 0.0


def test_roc_auc_and_frame_labels():
    from hivau.models.scorer import frame_labels, roc_auc, snippet_targets

    assert roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert roc_auc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)  # ties count half
    assert np.isnan(roc_auc([1, 1], [0.2, 0.3]))
    assert frame_labels(10, 5.0, [(0.4, 1.0)]).tolist() == [0, 0, 1, 1, 1, 0, 0, 0, 0, 0]
    assert snippet_targets(4, 5, 5.0, [(1.0, 2.0)]).tolist() == [0, 1, 0, 0]


def test_mil_ranking_pushes_the_anomalous_top_snippet_up():
    from hivau.models.scorer import mil_ranking

    anomalous = torch.zeros(6, requires_grad=True)
    normal = torch.zeros(6)
    mil_ranking(anomalous, normal).backward()
    assert anomalous.grad.argmin() == 0 and anomalous.grad[0] < 0  # gradient descent raises the top snippet


def test_pretrained_preset_loads_local_checkpoints_and_trains_lora_only(demo_release, tmp_path):
    """The real loading path (local folders, frozen encoders, LoRA), on checkpoints this test builds."""
    from safetensors.torch import load_file
    from transformers import CLIPVisionConfig, CLIPVisionModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    vision = CLIPVisionModel(CLIPVisionConfig(image_size=64, patch_size=16, hidden_size=64, intermediate_size=128,
                                              num_hidden_layers=2, num_attention_heads=4))
    vision.save_pretrained(tmp_path / "vision")
    tok = train_tokenizer(TEXTS * 3, vocab_size=300)
    lm = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=4, bos_token_id=0, eos_token_id=1,
                                      pad_token_id=2))
    lm.save_pretrained(tmp_path / "lm")
    tok.save_pretrained(tmp_path / "lm")
    options = json.dumps({"vision_path": str(tmp_path / "vision"), "text_path": str(tmp_path / "lm"), "n_frames": 4})
    args = ["--release", str(demo_release), "--preset", "pretrained", "--preset-options", options,
            "--out", str(tmp_path / "run"), "--max-steps", "2", "--batch-size", "2", "--scorer-epochs", "1"]
    proc = subprocess.run([sys.executable, "-m", "hivau.models.train", *args], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    trained = load_file(str(tmp_path / "run" / "model" / "model.safetensors"))
    base_lm = LlamaForCausalLM.from_pretrained(tmp_path / "lm").state_dict()
    q_name = next(k for k in trained if k.endswith("layers.0.self_attn.q_proj.base_layer.weight"))
    assert torch.equal(trained[q_name], base_lm["model.layers.0.self_attn.q_proj.weight"])  # LoRA leaves it
    lora_b = [k for k in trained if "lora_B" in k]
    assert lora_b and any(trained[k].abs().sum() > 0 for k in lora_b)  # ...and trains its adapters
    enc = CLIPVisionModel.from_pretrained(tmp_path / "vision").state_dict()
    key = next(k for k in enc if k.endswith("layers.0.mlp.fc1.weight"))
    assert torch.equal(trained[f"video.encoder.{key}"], enc[key]) and torch.equal(trained[f"motion.encoder.{key}"], enc[key])
    from hivau.models.io import load_model

    assert load_model(tmp_path / "run" / "model").cfg.vision_path is None  # self-contained once saved


def test_a_trained_model_captions_clips_as_the_hivau_backend(built_demo, tmp_path):
    from hivau.models.io import save_model
    from hivau.models.registry import record_decision
    from hivau.schemas import reasons
    from hivau.tasks.text.caption import CaptionFailure, CaptionSettings, ClipFrames, make_captioner
    from hivau.workspace import Workspace

    model = small_model().eval()
    save_model(model, tmp_path / "models" / "m1", card="# test\n")
    record_decision(tmp_path / "models", {"name": "m1", "path": str(tmp_path / "models" / "m1")}, registered=True)
    ws = Workspace.at(built_demo)
    captioner = make_captioner(CaptionSettings(backend="hivau", model=str(tmp_path / "models"), max_new_tokens=8), ws)
    assert captioner.generator.backend == "hivau" and captioner.generator.model == str(tmp_path / "models" / "m1")
    clip = next(c for c in ws.read_records("clips") if c.media_path)
    good = ClipFrames(clip.clip_id, clip.start_s, clip.end_s, np.zeros((1, 8, 8, 3), np.uint8), [0.0],
                      str(ws.root / clip.media_path))
    broken = ClipFrames("x", 0.0, 1.0, np.zeros((1, 8, 8, 3), np.uint8), [0.0], str(tmp_path / "missing.mp4"))
    said, failed = captioner.caption([good]) + captioner.caption([broken])
    frames, motion = captioner._inputs(good)
    expected = model.generate(torch.from_numpy(frames[None]), torch.from_numpy(motion[None]), [captioner.prompt],
                              max_new_tokens=8)[0]
    assert said == (expected or CaptionFailure(reasons.CAPTION_FAILED, "the model generated no text"))
    assert isinstance(failed, CaptionFailure) and failed.reason == reasons.CAPTION_FAILED
