"""Deterministic demo data: procedurally drawn surveillance scenes with anomalies at known times.

Every actor follows a track of keyframes; the same tracks drive both the drawing and the captions, so each
caption says what actually moves in its time span (who, what, where, which direction).
"""

from __future__ import annotations

import json
import random
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from hivau.tasks.build.media import require_binary

W, H = 320, 240
COLORS = {  # name -> BGR
    "red": (40, 40, 210), "blue": (200, 90, 30), "green": (60, 160, 60), "yellow": (40, 200, 230),
    "white": (235, 235, 235), "black": (30, 30, 30), "orange": (30, 140, 240), "purple": (150, 50, 130),
}
# Horizontal bands of the scene, top to bottom.
BANDS = [(0, 60, "by the buildings"), (60, 92, "on the upper sidewalk"), (92, 168, "on the road"),
         (168, 200, "on the lower sidewalk"), (200, 240, "on the grass")]


@dataclass
class Key:
    t: float
    x: float
    y: float
    pose: str  # walk, run, stand, fall, lie, fight, drive, stopped, crash
    partner: Optional[str] = None


@dataclass
class Actor:
    name: str  # e.g. "person in a red shirt", "white car"
    kind: str  # person | car
    color: str
    keys: list[Key]

    def state(self, t: float) -> Optional[tuple[float, float, str, float]]:
        """(x, y, pose, progress within the current key) at time t, or None when off screen."""
        if t < self.keys[0].t or t > self.keys[-1].t:
            return None
        for a, b in zip(self.keys, self.keys[1:]):
            if a.t <= t <= b.t:
                u = (t - a.t) / (b.t - a.t) if b.t > a.t else 0.0
                return a.x + (b.x - a.x) * u, a.y + (b.y - a.y) * u, a.pose, u
        last = self.keys[-1]
        return last.x, last.y, last.pose, 1.0


@dataclass
class Effect:
    kind: str  # explosion | sparks
    t0: float
    t1: float
    x: float
    y: float


@dataclass
class Scene:
    video_id: str
    label: list[str]
    duration: float
    fps: int
    actors: list[Actor]
    effects: list[Effect] = field(default_factory=list)
    events: list[tuple[float, float]] = field(default_factory=list)
    clip_splits: list[list[tuple[float, float]]] = field(default_factory=list)


# ---------------------------------------------------------------- drawing

def _background(seed: int) -> np.ndarray:
    import cv2

    rng = np.random.default_rng(seed)
    img = np.zeros((H, W, 3), np.uint8)
    img[:] = (70, 120, 70)
    img[0:60] = (120, 110, 100)
    for x in range(0, W, 64):  # buildings with windows
        shade = int(rng.integers(90, 150))
        cv2.rectangle(img, (x + 4, 8), (x + 58, 59), (shade, shade - 10, shade - 20), -1)
        for wx in range(x + 10, x + 52, 12):
            cv2.rectangle(img, (wx, 16), (wx + 6, 24), (200, 220, 230), -1)
            cv2.rectangle(img, (wx, 34), (wx + 6, 42), (200, 220, 230), -1)
    img[60:92] = (165, 165, 160)
    img[92:168] = (80, 80, 80)
    for x in range(0, W, 30):
        cv2.line(img, (x, 130), (x + 15, 130), (230, 230, 230), 2)
    img[168:200] = (165, 165, 160)
    for x in (30, 150, 270):
        cv2.circle(img, (x, 222), 12, (40, 100, 40), -1)
    return img


def _draw_person(img, x, y, pose, u, color, t):
    import cv2

    x, y = int(x), int(y)
    if pose in ("lie",) or (pose == "fall" and u > 0.5):
        cv2.rectangle(img, (x - 12, y - 4), (x + 8, y + 2), color, -1)
        cv2.circle(img, (x + 12, y - 1), 4, (150, 180, 220), -1)
        return
    lean = int(10 * u) if pose == "fall" else 0
    jitter = int(4 * np.sin(t * 25)) if pose == "fight" else 0
    swing = int(4 * np.sin(t * (18 if pose == "run" else 9))) if pose in ("walk", "run") else 0
    cv2.line(img, (x + jitter, y), (x - 3 + swing + jitter, y + 10), (40, 40, 40), 2)
    cv2.line(img, (x + jitter, y), (x + 3 - swing + jitter, y + 10), (40, 40, 40), 2)
    cv2.rectangle(img, (x - 4 + jitter + lean, y - 12), (x + 4 + jitter + lean, y), color, -1)
    cv2.circle(img, (x + jitter + lean, y - 16), 4, (150, 180, 220), -1)
    if pose == "fight":
        cv2.line(img, (x + jitter, y - 9), (x + jitter + 8 * int(np.sign(np.sin(t * 25)) or 1), y - 10), color, 2)


def _draw_car(img, x, y, pose, color):
    import cv2

    x, y = int(x), int(y)
    cv2.rectangle(img, (x - 18, y - 8), (x + 18, y + 8), color, -1)
    cv2.rectangle(img, (x - 9, y - 6), (x + 9, y + 6), (60, 50, 40), -1)
    if pose == "crash":
        cv2.line(img, (x - 18, y - 8), (x + 18, y + 8), (20, 20, 20), 2)


def _draw_effect(img, effect: Effect, t):
    import cv2

    u = (t - effect.t0) / (effect.t1 - effect.t0)
    x, y = int(effect.x), int(effect.y)
    if effect.kind == "explosion":
        if u < 0.15:
            img[:] = np.clip(img.astype(np.int16) + int(180 * (1 - u / 0.15)), 0, 255).astype(np.uint8)
        radius = int(10 + 50 * min(u * 3, 1.0))
        cv2.circle(img, (x, y), radius, (30, 120, 250) if u < 0.4 else (90, 90, 90), -1)
        cv2.circle(img, (x, y), max(radius // 2, 4), (60, 220, 255) if u < 0.4 else (120, 120, 120), -1)
    elif effect.kind == "sparks":
        rng = np.random.default_rng(int(t * 100))
        for _ in range(12):
            dx, dy = rng.integers(-20, 21, 2)
            cv2.circle(img, (x + int(dx), y + int(dy)), 2, (80, 230, 255), -1)


def render_frame(scene: Scene, background: np.ndarray, t: float, rng: np.random.Generator) -> np.ndarray:
    img = background.copy()
    for actor in sorted(scene.actors, key=lambda a: a.kind != "car"):
        st = actor.state(t)
        if st is None:
            continue
        x, y, pose, u = st
        if actor.kind == "car":
            _draw_car(img, x, y, pose, COLORS[actor.color])
        else:
            _draw_person(img, x, y, pose, u, COLORS[actor.color], t)
    for effect in scene.effects:
        if effect.t0 <= t <= effect.t1:
            _draw_effect(img, effect, t)
    noise = rng.integers(-3, 4, img.shape, dtype=np.int16)  # sensor noise, so frames are never identical
    return np.clip(img.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def render_video(scene: Scene, out: Path, seed: int) -> None:
    """Pipe raw frames into ffmpeg (H.264, yuv420p); nothing but one frame is held in memory."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.part{out.suffix}")
    cmd = [require_binary("ffmpeg"), "-nostdin", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "bgr24",
           "-s", f"{W}x{H}", "-r", str(scene.fps), "-i", "-", "-c:v", "libx264", "-preset", "veryfast",
           "-crf", "23", "-g", str(scene.fps * 2), "-pix_fmt", "yuv420p", "-movflags", "+faststart", str(tmp)]
    background = _background(seed)
    rng = np.random.default_rng(seed)
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for i in range(int(round(scene.duration * scene.fps))):
            proc.stdin.write(render_frame(scene, background, i / scene.fps, rng).tobytes())
        proc.stdin.close()
        err = proc.stderr.read().decode()
        if proc.wait() != 0:
            raise RuntimeError(f"ffmpeg failed rendering {out.name}: {err.strip()[-300:]}")
        tmp.replace(out)
    finally:
        if proc.poll() is None:
            proc.kill()
        tmp.unlink(missing_ok=True)


# ---------------------------------------------------------------- captions from tracks

def _a(color: str) -> str:
    return f"an {color}" if color[0] in "aeiou" else f"a {color}"


def _where(x: float, y: float) -> str:
    band = next((name for lo, hi, name in BANDS if lo <= y < hi), "in the scene")
    side = "on the left" if x < W / 3 else "on the right" if x > 2 * W / 3 else "in the middle"
    return f"{band} {side}" if band != "in the scene" else side


def _direction(dx: float, dy: float) -> str:
    if abs(dx) >= abs(dy):
        return "from left to right" if dx > 0 else "from right to left"
    return "downward, toward the camera" if dy > 0 else "upward, away from the camera"


def _phrase(actor: Actor, key: Key, nxt: Key) -> str:
    dx, dy = nxt.x - key.x, nxt.y - key.y
    moving = abs(dx) + abs(dy) > 3
    where = _where((key.x + nxt.x) / 2, (key.y + nxt.y) / 2)
    verbs = {"walk": "walks", "run": "runs fast", "drive": "drives"}
    if key.pose in verbs and moving:
        return f"{verbs[key.pose]} {_direction(dx, dy)} {where}"
    if key.pose == "fall":
        return f"suddenly falls to the ground {where}"
    if key.pose == "lie":
        return f"lies motionless on the ground {where}"
    if key.pose == "fight":
        return f"punches and fights with the {key.partner} {where}"
    if key.pose == "crash":
        return f"crashes into the {key.partner} {where}"
    if key.pose == "stopped":
        return f"is stopped {where}"
    return f"stands still {where}"


def describe(scene: Scene, start: float, end: float) -> str:
    """One caption for [start, end]: per actor, the phases of its track that overlap the span."""
    sentences = []
    for actor in scene.actors:
        phrases = []
        for key, nxt in zip(actor.keys, actor.keys[1:]):
            if min(nxt.t, end) - max(key.t, start) > 0.2:
                phrase = _phrase(actor, key, nxt)
                if not phrases or phrases[-1] != phrase:
                    phrases.append(phrase)
        if phrases:
            article = "an" if actor.name[0] in "aeiou" else "a"
            subject = f"{article} {actor.name}".capitalize() if not sentences else f"{article} {actor.name}"
            sentences.append(f"{subject} " + ", then ".join(phrases))
    for effect in scene.effects:
        if min(effect.t1, end) - max(effect.t0, start) > 0.2:
            what = ("a bright explosion flashes and a fireball grows into gray smoke" if effect.kind == "explosion"
                    else "sparks fly at the point of impact")
            sentences.append(f"{what} {_where(effect.x, effect.y)}")
    if not sentences:
        return "The scene is empty; nothing moves."
    text = "; ".join(sentences)
    return text[0].upper() + text[1:] + "."



# ---------------------------------------------------------------- scene scripts

def _walker(name_color: str, y: float, t0: float, t1: float, left_to_right: bool, pose="walk") -> Actor:
    xa, xb = (-10, W + 10) if left_to_right else (W + 10, -10)
    return Actor(f"person in {_a(name_color)} shirt", "person", name_color,
                 [Key(t0, xa, y, pose), Key(t1, xb, y, pose)])


def _car(color: str, y: float, t0: float, t1: float, left_to_right: bool) -> Actor:
    xa, xb = (-20, W + 20) if left_to_right else (W + 20, -20)
    return Actor(f"{color} car", "car", color, [Key(t0, xa, y, "drive"), Key(t1, xb, y, "drive")])


def build_scenes(seed: int, index: int = 0) -> list[Scene]:
    """One set of scenes (five anomalies, three normal videos); set `index` > 0 draws a different set with ids
    numbered after it, so that several sets make a bigger data set (for the trainer's learning check)."""
    rng = random.Random(seed if index == 0 else f"{seed}:{index}")
    n = f"{index:03d}"
    colors = list(COLORS)

    def pick(k):
        return rng.sample(colors, k)

    scenes = []
    # Fall: a walker collapses, lies still through the event, then gets up and walks off.
    c1, c2 = pick(2)
    tf = round(rng.uniform(7, 9), 1)
    faller = Actor(f"person in {_a(c1)} shirt", "person", c1,
                   [Key(0.0, -10, 186, "walk"), Key(tf, 150, 186, "fall"), Key(tf + 1.0, 150, 186, "lie"),
                    Key(tf + 6.0, 150, 186, "walk"), Key(20.0, W + 10, 186, "walk")])
    scenes.append(Scene(f"demo_fall_{n}", ["Falling"], 20.0, 25, [faller, _car(c2, 112, 2.0, 9.0, True)],
                        events=[(tf, tf + 6.0)], clip_splits=[[(tf, tf + 1.0), (tf + 1.0, tf + 6.0)]]))
    # Fight: two people meet and fight.
    c1, c2, c3 = pick(3)
    tm = round(rng.uniform(6, 8), 1)
    a = Actor(f"person in {_a(c1)} shirt", "person", c1,
              [Key(0.0, -10, 76, "walk"), Key(tm, 150, 76, "fight", f"person in {_a(c2)} shirt"),
               Key(tm + 6, 150, 76, "walk"), Key(24.0, -10, 76, "walk")])
    b = Actor(f"person in {_a(c2)} shirt", "person", c2,
              [Key(0.0, W + 10, 76, "walk"), Key(tm, 166, 76, "fight", f"person in {_a(c1)} shirt"),
               Key(tm + 6, 166, 76, "walk"), Key(24.0, W + 10, 76, "walk")])
    scenes.append(Scene(f"demo_fight_{n}", ["Fighting"], 24.0, 30, [a, b, _walker(c3, 186, 1.0, 14.0, True)],
                        events=[(tm, tm + 6.0)], clip_splits=[[(tm, tm + 3.0), (tm + 3.0, tm + 6.0)]]))
    # Running: someone sprints across while others walk.
    c1, c2 = pick(2)
    tr = round(rng.uniform(8, 10), 1)
    runner = Actor(f"person in {_a(c1)} shirt", "person", c1, [Key(tr, W + 10, 186, "run"), Key(tr + 3.0, -10, 186, "run")])
    scenes.append(Scene(f"demo_running_{n}", ["Running"], 20.0, 15,
                        [runner, _walker(c2, 76, 0.0, 18.0, True)],
                        events=[(tr, tr + 3.0)], clip_splits=[[(tr, tr + 1.5), (tr + 1.5, tr + 3.0)]]))
    # Vehicle collision: two cars in one lane meet head-on.
    c1, c2 = rng.sample(["red", "blue", "white", "yellow", "black"], 2)
    tc = round(rng.uniform(7, 9), 1)
    # after the event (when the wreck is cleared) both cars back away, so the anomaly's frames are its event's
    car_a = Actor(f"{c1} car", "car", c1, [Key(0.0, -20, 120, "drive"), Key(tc, 141, 120, "crash", f"{c2} car"),
                                             Key(tc + 1.0, 141, 120, "stopped"), Key(tc + 5.0, 141, 120, "drive"),
                                             Key(22.0, -20, 120, "drive")])
    car_b = Actor(f"{c2} car", "car", c2, [Key(0.0, W + 20, 120, "drive"), Key(tc, 179, 120, "crash", f"{c1} car"),
                                             Key(tc + 1.0, 179, 120, "stopped"), Key(tc + 5.0, 179, 120, "drive"),
                                             Key(22.0, W + 20, 120, "drive")])
    scenes.append(Scene(f"demo_collision_{n}", ["RoadAccidents"], 22.0, 30, [car_a, car_b],
                        effects=[Effect("sparks", tc, tc + 1.0, 160, 120)],
                        events=[(tc - 1.0, tc + 5.0)], clip_splits=[[(tc - 1.0, tc + 1.0), (tc + 1.0, tc + 5.0)]]))
    # Explosion near the buildings.
    c1 = pick(1)[0]
    te = round(rng.uniform(8, 10), 1)
    scenes.append(Scene(f"demo_explosion_{n}", ["Explosion"], 20.0, 24, [_walker(c1, 186, 0.0, 7.0, False)],
                        effects=[Effect("explosion", te, te + 4.0, 220, 40)],
                        events=[(te, te + 4.0)], clip_splits=[[(te, te + 1.0), (te + 1.0, te + 4.0)]]))
    # Normal videos: walkers and traffic only.
    for k in range(3):
        c1, c2, c3 = pick(3)
        actors = [_walker(c1, 76, 0.0, 14.0, True), _walker(c2, 186, 5.0, 19.0, False),
                  _car(c3, 112 if k % 2 else 150, 3.0 + k, 9.0 + k, k % 2 == 0)]
        scene = Scene(f"demo_normal_{3 * index + k:03d}", [], 20.0, 25 if k != 1 else 30, actors)
        if k == 0:  # one normal video comes with annotated normal events, as in HIVAU-70k
            scene.events = [(2.0, 8.0), (12.0, 18.0)]
            scene.clip_splits = [[(2.0, 5.0), (5.0, 8.0)], [(12.0, 15.0), (15.0, 18.0)]]
        scenes.append(scene)
    return scenes


def hivau_entry(scene: Scene) -> dict:
    """The scene's annotation in HolmesVAU's raw format (summaries come from the LLM stage later)."""
    return {
        "n_frames": int(round(scene.duration * scene.fps)), "fps": float(scene.fps), "label": scene.label,
        "events": [[s, e] for s, e in scene.events],
        "clips": [[[s, e] for s, e in clips] for clips in scene.clip_splits],
        "clips_caption": [[describe(scene, s, e) for s, e in clips] for clips in scene.clip_splits],
    }


def write_demo(out: str | Path, seed: int = 0, with_faults: bool = True, sets: int = 1) -> dict:
    """Render the demo set into `out/videos` and write `out/annotations.json`; returns the annotation dict.

    With faults, two deliberately bad inputs show the quarantine at work: a truncated video file and an
    annotated event that runs past the end of its video.
    """
    out = Path(out)
    videos = out / "videos"
    annotations = {}
    for index in range(sets):
        for k, scene in enumerate(build_scenes(seed, index)):
            render_video(scene, videos / f"{scene.video_id}.mp4", seed * 1000 + index * 100 + k)
            annotations[scene.video_id] = hivau_entry(scene)
    if with_faults:
        good = (videos / "demo_normal_002.mp4").read_bytes()
        (videos / "demo_broken_000.mp4").write_bytes(good[: len(good) // 3])
        annotations["demo_broken_000"] = dict(annotations["demo_normal_002"])
        annotations["demo_normal_002"] = dict(annotations["demo_normal_002"])
        annotations["demo_normal_002"]["events"] = [[15.0, 26.0]]
        annotations["demo_normal_002"]["clips"] = [[[15.0, 20.0]]]
        annotations["demo_normal_002"]["clips_caption"] = [["(deliberately wrong: this event runs past the video's end)"]]
    (out / "annotations.json").write_text(json.dumps(annotations, indent=2))
    (out / "README.md").write_text(
        "# hivau demo data\n\nRendered by `hivau demo-data` (seed %d, %d sets): procedurally drawn surveillance scenes with "
        "anomalies at known times. `annotations.json` is in the HIVAU-70k raw format; its clip captions are "
        "derived from the same actor tracks that drew the frames.\n%s" % (
            seed, sets, "\nDeliberate faults (to show the quarantine): `demo_broken_000.mp4` is truncated, and "
                  "`demo_normal_002` has an event that ends past the video.\n" if with_faults else ""))
    return annotations
