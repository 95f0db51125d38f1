"""Demo data: deterministic, in the HIVAU raw format, and its captions true to the rendered pixels."""

import json
import re

import numpy as np
import pytest

from hivau.demo import COLORS, build_scenes, describe, hivau_entry
from hivau.tasks.build.frames import sample_frames
from hivau.tasks.build.probe import probe_video


def test_scripts_are_deterministic_per_seed():
    first = [hivau_entry(s) for s in build_scenes(3)]
    assert first == [hivau_entry(s) for s in build_scenes(3)]
    assert first != [hivau_entry(s) for s in build_scenes(4)]


def test_demo_annotations_load_and_match_videos(demo_dir):
    annotations = json.loads((demo_dir / "annotations.json").read_text())
    kinds = {tuple(v["label"]) for v in annotations.values()}
    assert {("Falling",), ("Fighting",), ("Running",), ("RoadAccidents",), ("Explosion",), ()} <= kinds
    for vid, entry in annotations.items():
        if vid == "demo_broken_000":
            continue
        info = probe_video(demo_dir / "videos" / f"{vid}.mp4", vid)
        assert info.n_frames == entry["n_frames"] and info.fps == pytest.approx(entry["fps"])


def _shirt_x(frame_rgb: np.ndarray, color: str, y: int) -> float:
    """Mean x of the pixels of a shirt colour in the rows where a person of baseline `y` wears it."""
    bgr = np.array(COLORS[color])
    rows = frame_rgb[max(y - 12, 0): y, :, ::-1].astype(int)
    mask = np.abs(rows - bgr).max(axis=2) < 20
    assert mask.sum() > 5, f"no {color} shirt visible near y={y}"
    return float(np.nonzero(mask)[1].mean())


def test_walking_directions_in_captions_match_pixels(demo_dir):
    checked = 0
    for scene in build_scenes(0):
        path = str(demo_dir / "videos" / f"{scene.video_id}.mp4")
        for actor in scene.actors:
            if actor.kind != "person":
                continue
            for key, nxt in zip(actor.keys, actor.keys[1:]):
                if key.pose not in ("walk", "run") or abs(nxt.x - key.x) < 50:
                    continue
                a, b = key.t + 0.3 * (nxt.t - key.t), key.t + 0.6 * (nxt.t - key.t)
                caption = describe(scene, a, b)
                said = re.search(rf"{actor.name} (?:walks|runs fast) from (left to right|right to left)", caption)
                assert said, caption
                frames = sample_frames(path, indices=[int(a * scene.fps), int(b * scene.fps)]).frames
                moved = _shirt_x(frames[1], actor.color, int(key.y)) - _shirt_x(frames[0], actor.color, int(key.y))
                assert (moved > 10) if said.group(1) == "left to right" else (moved < -10), (caption, moved)
                checked += 1
    assert checked >= 8


def test_anomalies_are_in_the_pixels_at_their_annotated_times(demo_dir):
    scenes = {s.video_id: s for s in build_scenes(0)}
    ann = json.loads((demo_dir / "annotations.json").read_text())

    boom = scenes["demo_explosion_000"]
    start = ann["demo_explosion_000"]["events"][0][0]
    f = sample_frames(str(demo_dir / "videos/demo_explosion_000.mp4"),
                      indices=[int((start - 1) * boom.fps), int(start * boom.fps) + 1]).frames
    assert f[1].mean() > f[0].mean() + 60  # the flash

    crash = scenes["demo_collision_000"]
    s, e = ann["demo_collision_000"]["events"][0]
    idx = [int(t * crash.fps) for t in (s - 4, s - 3.9, e - 1, e - 0.9)]
    f = sample_frames(str(demo_dir / "videos/demo_collision_000.mp4"), indices=idx).frames.astype(int)
    road = slice(92, 168)
    moving = np.abs(f[1][road] - f[0][road]).mean()
    stopped = np.abs(f[3][road] - f[2][road]).mean()
    assert moving > 3 * stopped  # the cars drive before the collision and stand still after it
    assert "crashes into" in ann["demo_collision_000"]["clips_caption"][0][0]

    fall = scenes["demo_fall_000"]
    s, e = ann["demo_fall_000"]["events"][0]
    color = fall.actors[0].color
    f = sample_frames(str(demo_dir / "videos/demo_fall_000.mp4"), indices=[int((s - 2) * fall.fps), int((s + 3) * fall.fps)]).frames
    bgr = np.array(COLORS[color])
    height = lambda fr: np.ptp(np.nonzero((np.abs(fr[:, :, ::-1].astype(int) - bgr).max(axis=2) < 20))[0])
    assert height(f[0]) > 2 * height(f[1])  # upright before, lying after
    assert "lies motionless" in ann["demo_fall_000"]["clips_caption"][0][1]
