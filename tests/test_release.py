"""Releases: immutable versioned folders, parquet that pandas and HF datasets read, HIVAU JSONL, manifest, card."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest
from helpers import prefect_cli, served_deployments

from hivau.tasks.release.publish import (
    TEMPLATES,
    ReleaseError,
    ReleaseSettings,
    build_release,
    split_of,
    verify_release,
)
from hivau.workspace import Workspace

pytestmark = pytest.mark.prefect_server


def test_split_is_per_video_and_stable():
    ids = [f"video_{i:03d}" for i in range(400)]
    splits = {v: split_of(v, 0.2, "hivau") for v in ids}
    assert splits == {v: split_of(v, 0.2, "hivau") for v in reversed(ids)}  # order and company do not matter
    assert 0.13 < sum(s == "test" for s in splits.values()) / len(ids) < 0.27
    assert {v: split_of(v, 0.2, "other-seed") for v in ids} != splits


def test_release_folder_is_versioned_immutable_and_readable(fresh_workspace, fixtures_dir):
    ws = Workspace.at(fresh_workspace)
    with pytest.raises(ReleaseError, match="no reviewed rows"):
        build_release(Workspace.at(fresh_workspace.parent / "empty-ws"), ReleaseSettings())
    reviewed_only = build_release(ws, ReleaseSettings(test_fraction=0.3))
    rows = pd.concat([pd.read_parquet(reviewed_only / "data" / f"{s}.parquet") for s in ("train", "test")])
    assert set(rows.provenance) == {"human"} and set(rows.task) == {"caption"}  # the demo's own captions only
    first = build_release(ws, ReleaseSettings(include_unreviewed=True, test_fraction=0.3))
    second = build_release(ws, ReleaseSettings(include_unreviewed=True, test_fraction=0.3))
    assert (reviewed_only.name, first.name, second.name) == ("v0001", "v0002", "v0003")
    m1, m2 = verify_release(first), verify_release(second)
    assert m2["previous"] == "v0002" and m1["previous"] == "v0001"
    assert m2["content_sha256"] == m1["content_sha256"] and m2["same_content_as_previous"]
    assert not m1["same_content_as_previous"]
    with pytest.raises(ReleaseError, match="never rewritten"):
        build_release(ws, ReleaseSettings(include_unreviewed=True, name="v0001"))
    assert not os.access(first / "data" / "train.parquet", os.W_OK) or os.geteuid() == 0
    assert oct((first / "manifest.json").stat().st_mode & 0o777) == "0o444"

    # rows: one per instruction, split by source video, every media file inside the release
    train = pd.read_parquet(first / "data" / "train.parquet")
    test = pd.read_parquet(first / "data" / "test.parquet")
    assert len(train) and len(test) and m1["counts"]["rows"] == len(train) + len(test)
    assert not set(train.source_video) & set(test.source_video)
    assert set(train.provenance) | set(test.provenance) <= {"human", "auto_draft"}
    for path in pd.concat([train, test]).media_path:
        assert (first / path).is_file()
    assert {"caption", "judgement", "description", "analysis", "qa", "reasoning"} == set(train.task) | set(test.task)
    # caption and description rows carry the motion phrases of their answer (the trainer's L_ML targets), and
    # no other row does; the trainer reads them as they are
    from hivau.models.data import motion_targets
    from hivau.schemas.records import read_release_rows
    from hivau.tasks.text.motion import motion_phrases

    both = read_release_rows(first, "train") + read_release_rows(first, "test")
    with_phrases = [r for r in both if r.motion_phrases]
    assert with_phrases and {r.task for r in with_phrases} == {"caption", "description"}
    for r in both:
        if r.task in ("caption", "description"):
            assert r.motion_phrases == [p.text for p in motion_phrases(r.answer)], r.id
    targets = motion_targets(both)
    assert all(targets[r.item_id] == "; ".join(r.motion_phrases) for r in with_phrases if r.task == "caption")

    from datasets import load_dataset

    hf = load_dataset("parquet", data_files={"train": str(first / "data" / "train.parquet"),
                                             "test": str(first / "data" / "test.parquet")})
    assert hf["train"].num_rows == len(train) and hf["test"][0]["answer"] == test.iloc[0]["answer"]

    # JSONL: the same rows in HolmesVAU's conversation format
    example = json.loads((fixtures_dir / "annotations" / "hivau_train_format_example.jsonl").read_text().splitlines()[0])
    lines = [json.loads(x) for x in (first / "hivau" / "train.jsonl").read_text().splitlines()]
    assert len(lines) == len(train)
    for line, row in zip(lines, train.itertuples()):
        assert set(line) == set(example) | ({"qa_type"} if row.task == "qa" else set())
        assert [t["from"] for t in line["conversations"]] == ["human", "gpt"]
        human = line["conversations"][0]["value"]
        assert human.startswith("<video>\n") and human[len("<video>\n"):] == row.prompt
        # `video` is relative to media/, the `root` HolmesVAU's script is given
        assert line["conversations"][1]["value"] == row.answer and f"media/{line['video']}" == row.media_path
        if row.task != "qa":
            assert row.prompt in TEMPLATES[(row.level, row.task)]

    # tampering is caught; the card carries the statistics and the chart
    card = (first / "README.md").read_text()
    assert "![items per anomaly class and level](chart.svg)" in card and "| provenance | rows |" in card
    assert (first / "chart.svg").read_text().startswith("<svg")
    victim = first / "hivau" / "test.jsonl"
    victim.chmod(0o644)
    victim.write_text("{}\n")
    with pytest.raises(ReleaseError, match="changed"):
        verify_release(first)


def test_publishing_a_release_fires_retrain_which_trains_evaluates_and_registers(prefect_server, fresh_workspace,
                                                                               tmp_path):
    # a short training run: the deployment's default settings come from the serving process's environment
    short = {"max_steps": 3, "batch_size": 4, "eval_batch_size": 32, "scorer_epochs": 2,
             "preset_options": {"image_size": 64}}
    env = {**prefect_server["env"], "HIVAU_RETRAIN_SETTINGS": json.dumps(short)}
    with served_deployments(env, "retrain/local", tmp_path / "serve.log"):
        params = json.dumps({"workspace": str(fresh_workspace), "release": {"include_unreviewed": True}})
        run = prefect_cli(env, "deployment", "run", "publish-release/local", "--params", params, "--watch",
                       "--watch-timeout", "300", timeout=360)
        assert run.returncode == 0 and "Completed" in run.stdout, run.stdout[-2000:] + run.stderr[-2000:]
        release = str(Workspace.at(fresh_workspace).releases / "v0001")

        from prefect.settings import PREFECT_API_URL, temporary_settings

        from hivau.flows.release import wait_for_retrain

        with temporary_settings(updates={PREFECT_API_URL: prefect_server["url"]}):
            fired = wait_for_retrain(release, timeout_s=600)
            from prefect.client.orchestration import get_client

            with get_client(sync_client=True) as client:
                deployment = client.read_deployment_by_name("retrain/local")
                result_run = client.read_flow_run(fired["id"])
        assert fired["state"] == "COMPLETED" and fired["parameters"]["release"] == release
        assert fired["parameters"]["settings"]["max_steps"] == 3
        assert fired["deployment_id"] == str(deployment.id)
        assert result_run.state.is_completed()
    from hivau.models.registry import current_model, read_registry

    models = Workspace.at(fresh_workspace).root / "models"
    # the decision is recorded with what the model was measured against: its untrained start (built by the same
    # recipe with no step, and evaluated on the same test split); registered only if it learned
    (entry,) = read_registry(models)["models"]
    assert entry["release"] == "v0001" and entry["registered"] == entry["learned"]
    assert set(entry["untrained_headline"]) == set(entry["headline"]) and entry["reasons"]
    untrained = json.loads((Path(entry["path"]).parent / "untrained" / "model" / "config.json").read_text())
    assert untrained["summary"]["steps"] == 0
    assert (current_model(models) or {}).get("name") == (entry["name"] if entry["registered"] else None)
    metrics = json.loads((Path(entry["path"]) / "metrics.json").read_text())
    assert metrics["headline"] == entry["headline"] and metrics["scorer"]["videos"] >= 1
    config = json.loads((Path(entry["path"]) / "config.json").read_text())
    assert config["summary"]["steps"] == 3 and config["release"] == release


def test_registration_needs_a_model_that_learned():
    from hivau.tasks.release.retrain_policy import learned

    start = {"bleu4": 0.0, "cider": 0.0, "auc": 0.49}
    ok, why = learned({"bleu4": 0.31, "cider": 1.2, "auc": 0.94}, start, test_videos=21)
    assert ok and why[2] == "auc rose from 0.4900 to 0.9400"
    # `make run`'s short demo retrain: a scorer worse than chance is not a model worth registering
    ok, why = learned({"bleu4": 0.05, "cider": 0.3, "auc": 0.28}, start, test_videos=3)
    assert not ok and "auc 0.2800 is no better than chance (0.5)" in why
    assert any("3 videos: too few to show learning" in w for w in why)
    ok, why = learned({"bleu4": 0.0, "cider": 0.4, "auc": 0.7}, start, test_videos=21)
    assert not ok and why[0] == "bleu4 0.0000 is no better than the untrained start's 0.0000"


def test_registration_needs_a_model_not_worse_than_the_current_one(tmp_path):
    from hivau.models.evaluate import not_worse
    from hivau.models.registry import current_model, record_decision, resolve_model

    assert not_worse({"bleu4": 0.2, "auc": 0.8}, None) == (True, ["no previous model"])
    assert not_worse({"bleu4": 0.195, "auc": 0.9}, {"bleu4": 0.2, "auc": 0.8})[0]  # within tolerance
    ok, why = not_worse({"bleu4": 0.3, "auc": 0.7}, {"bleu4": 0.2, "auc": 0.8})
    assert not ok and why == ["auc fell from 0.8000 to 0.7000"]
    (tmp_path / "m1").mkdir()
    (tmp_path / "m1" / "config.json").write_text("{}")
    record_decision(tmp_path, {"name": "m1", "path": str(tmp_path / "m1")}, registered=True)
    record_decision(tmp_path, {"name": "m2", "path": str(tmp_path / "m2")}, registered=False)
    assert current_model(tmp_path)["name"] == "m1" and resolve_model(tmp_path) == tmp_path / "m1"
    with pytest.raises(FileNotFoundError):
        resolve_model(tmp_path / "nothing")
