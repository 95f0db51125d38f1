"""Fault 7: kill -9 during builds, review pulls and releases: readable after each kill, and re-runs end as unbroken runs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from helpers import manifest_digest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_faults as bf  # noqa: E402 (the campaign's own functions: benchmarks/bench_faults.py kills at scale)

pytestmark = [pytest.mark.slow, pytest.mark.prefect_server]
SEED = 7
WINDOW = "lock"  # with so few kills, each one lands inside the operation, not in the interpreter's start-up


def assert_survived(result: dict, kills: int) -> None:
    assert result["kills"] >= kills, f"only {result['kills']} kills landed: {result['trials_detail']}"
    for t in result["trials_detail"]:
        where = f"trial {t['trial']} ({t['start']}, kills at {[k['at_s'] for k in t['kills']]} s; {t['log']})"
        for k in t["kills"]:
            assert not k["problems"], f"{where}: unreadable after the kill at {k['at_s']} s: {k['problems']}"
        assert t["resume"]["rc"] == 0, f"{where}: the re-run failed:\n{t.get('log_tail')}"
        assert not t["resume"]["problems"], f"{where}: after the re-run: {t['resume']['problems']}"
        assert t["same"], f"{where}: resumed to {t['digest']}, not {t['reference_digest']}"


def test_killed_builds_resume_to_the_same_manifests(demo_dir, prefect_server, built_demo, tmp_path):
    op = bf.build_operation(demo_dir, prefect_server["env"])
    ref = bf.reference(op, "empty", tmp_path, runs=1)
    assert not ref["problems"], ref["problems"]
    assert ref["digest"] == manifest_digest(built_demo)  # the command line builds what the flow does
    assert_survived(bf.kill_trials(op, {"empty": ref}, 3, SEED, tmp_path, WINDOW), 3)


def test_killed_review_pulls_resume_to_the_same_manifests(label_studio, fresh_workspace, prefect_server, tmp_path):
    ls = label_studio
    env = bf.review_env(prefect_server["env"], ls["url"], ls["token"], ls["document_root"])
    dataset = "kill-9-pulls"
    bf.push_for_review(fresh_workspace, env, dataset, tmp_path / "push.log")
    reviewed = bf.review_some(ls["url"], ls["token"], dataset)
    op = bf.pull_operation(env, dataset, {"pushed": fresh_workspace})
    ref = bf.reference(op, "pushed", tmp_path, runs=1)
    assert not ref["problems"], ref["problems"]
    pulled = list((Path(ref["workspace"]) / "state" / "annotations").rglob("*.json"))
    assert len(pulled) == sum(reviewed.values())
    assert_survived(bf.kill_trials(op, {"pushed": ref}, 2, SEED, tmp_path, WINDOW), 2)


def test_killed_releases_resume_to_the_same_release(fresh_workspace, prefect_server, tmp_path):
    op = bf.release_operation(bf.clean_env(prefect_server["env"]), {"unreleased": fresh_workspace})
    refs = {"unreleased": bf.reference(op, "unreleased", tmp_path, runs=1)}
    op.starts["released"] = Path(refs["unreleased"]["workspace"])  # the kill then cuts off v0002
    refs["released"] = bf.reference(op, "released", tmp_path, runs=1)
    assert not refs["unreleased"]["problems"] + refs["released"]["problems"]
    assert refs["released"]["digest"] == refs["unreleased"]["digest"]
    result = bf.kill_trials(op, refs, 2, SEED, tmp_path, WINDOW)
    assert_survived(result, 2)
    assert {t["start"] for t in result["trials_detail"]} == {"unreleased", "released"}


# ---------------------------------------------------------------- targeted kills: the moment a segment is re-cut
# A segment cut again with other times (a re-plan, a reviewer's moved boundary) must not change the file the current
# manifests name: a kill after the new cut and before the new manifests are linked would leave them describing
# frames the file no longer holds. The re-cut goes beside it (tasks/build/cut.py `recut_path`).


def assert_manifests_match_media(ws: Path) -> None:
    problems = bf.check_workspace(ws)
    assert not problems, f"after a kill at the moment of a re-cut: {problems}"


def test_a_rebuild_killed_after_a_clip_is_recut_leaves_manifests_that_match_their_media(demo_dir, prefect_server,
                                                                                        fresh_workspace, tmp_path):
    op = bf.build_operation(demo_dir, prefect_server["env"])
    proc = bf.start(op.command(fresh_workspace) + ["--clip-mode", "even", "--clip-k", "3"], op.env,
                    tmp_path / "build.log")
    if not bf.kill_when(proc, bf.recut(fresh_workspace / "media" / "clips")):
        pytest.fail(f"the re-build re-cut no clip:\n{bf.tail(tmp_path / 'build.log')}")
    assert_manifests_match_media(fresh_workspace)  # (a re-run after a kill: the campaign's tests above)


def test_a_pull_killed_after_a_moved_event_is_recut_leaves_manifests_that_match_their_media(
        label_studio, fresh_workspace, prefect_server, tmp_path):
    ls = label_studio
    env = bf.review_env(prefect_server["env"], ls["url"], ls["token"], ls["document_root"])
    dataset = "kill-9-recut"
    bf.push_for_review(fresh_workspace, env, dataset, tmp_path / "push.log")
    bf.review_some(ls["url"], ls["token"], dataset)
    proc = bf.start(bf.pull_operation(env, dataset, {}).command(fresh_workspace), env, tmp_path / "pull.log")
    if not bf.kill_when(proc, bf.recut(fresh_workspace / "media" / "events")):
        pytest.fail(f"the pull re-cut no event:\n{bf.tail(tmp_path / 'pull.log')}")
    assert_manifests_match_media(fresh_workspace)  # (a re-run after a kill: the campaign's tests above)
