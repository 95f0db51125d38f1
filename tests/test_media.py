"""Probe, cut and frame sampling on real files (fixtures and videos made here with real ffmpeg)."""

import os

import pytest
from helpers import ffmpeg, frame_index, make_audio_only, make_index_video, make_video

from hivau.schemas import reasons
from hivau.tasks.build.cut import CutSettings, cut_or_resume, cut_segment, frames_written, partial_path, written_span
from hivau.tasks.build.frames import sample_frames
from hivau.tasks.build.probe import ProbeError, mp4_index_missing, probe_video, read_packets
from hivau.workspace import Workspace


def test_probe_fixture_videos(fixtures_dir):
    robbery = probe_video(fixtures_dir / "videos" / "robbery.mp4", "robbery")
    assert robbery.fps == pytest.approx(27.0, abs=1e-3) and robbery.n_frames == 2730
    assert robbery.duration_s == pytest.approx(101.1, abs=0.05) and (robbery.width, robbery.height) == (852, 480)
    assert robbery.codec == "hevc" and robbery.has_audio and not robbery.is_vfr
    assert robbery.keyframe_times[:3] == [0.0, 5.0, 10.0]
    explosion = probe_video(fixtures_dir / "videos" / "explosion2.mp4", "explosion2")
    assert explosion.fps == pytest.approx(24.0) and explosion.n_frames == 142


def test_probe_rotation_and_variable_rate(tmp_path):
    rotated = make_video(tmp_path / "r.mp4", 1.0, size="64x48")
    ffmpeg("-i", str(rotated), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(tmp_path / "rot.mp4"))
    assert probe_video(tmp_path / "rot.mp4", "rot").rotation in (90, 270)
    # frames 0-9 at 10 fps then 10-29 at 30 fps: timestamps from an expression, kept as they are
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=30:duration=1",
           "-vf", "setpts='if(lt(N,10),N*0.1,1.0+(N-10)/30)/TB'", "-fps_mode", "passthrough",
           "-c:v", "libx264", "-preset", "ultrafast", str(tmp_path / "vfr.mp4"))
    vfr = probe_video(tmp_path / "vfr.mp4", "vfr")
    assert vfr.is_vfr and vfr.n_frames == 30


@pytest.mark.parametrize("kind,reason", [
    ("zero_byte", reasons.VIDEO_EMPTY),
    ("garbage", reasons.VIDEO_UNREADABLE),
    ("audio_only", reasons.VIDEO_NO_VIDEO_STREAM),
    ("truncated_moov_at_end", reasons.VIDEO_TRUNCATED),
    ("truncated_faststart", reasons.VIDEO_TRUNCATED),
    ("missing", reasons.VIDEO_MISSING),
])
def test_probe_broken_inputs(tmp_path, kind, reason):
    path = tmp_path / f"{kind}.mp4"
    if kind == "zero_byte":
        path.touch()
    elif kind == "garbage":
        path.write_bytes(os.urandom(50_000))
    elif kind == "audio_only":
        make_audio_only(tmp_path / "a.m4a").rename(path)
    elif kind.startswith("truncated"):
        extra = ("-movflags", "+faststart") if kind.endswith("faststart") else ()
        good = make_video(tmp_path / "good.mp4", 4.0, size="160x120", extra=extra).read_bytes()
        path.write_bytes(good[: len(good) // 2])
    with pytest.raises(ProbeError) as info:
        probe_video(path, kind)
    assert info.value.reason == reason and info.value.detail


def test_accurate_cut_is_frame_accurate(tmp_path):
    src = make_index_video(tmp_path / "idx.mp4", 125, fps=25, gop=25)
    result = cut_segment(str(src), tmp_path / "out.mp4", 1.36, 3.0, "accurate", fps=25.0)
    frames = sample_frames(result.path, indices=list(range(result.n_frames))).frames
    first, last = frame_index(frames[0]), frame_index(frames[-1])
    assert abs(first - 34) <= 1 and abs(last - 74) <= 1  # 1.36 s = frame 34; 3.0 s ends before frame 75
    assert result.n_frames == pytest.approx(41, abs=1)
    assert result.start_s == pytest.approx(1.36) and result.end_s == pytest.approx(3.0, abs=0.04)


def test_copy_cut_snaps_to_keyframe_and_records_it(tmp_path):
    src = make_index_video(tmp_path / "idx.mp4", 125, fps=25, gop=25)
    info = probe_video(src, "idx")
    assert info.keyframe_times == [0.0, 1.0, 2.0, 3.0, 4.0]
    result = cut_segment(str(src), tmp_path / "out.mp4", 2.5, 3.6, "copy", 25.0, info.keyframe_times)
    assert result.start_s == 2.0  # the keyframe before the requested start
    frames = sample_frames(result.path, indices=[0, result.n_frames - 1]).frames
    assert frame_index(frames[0]) == 50
    assert abs(frame_index(frames[1]) - 89) <= 1 and result.end_s == pytest.approx(3.6, abs=0.05)


def test_cut_resume_and_half_written_file(tmp_path):
    src = make_index_video(tmp_path / "idx.mp4", 100, fps=25, gop=25)
    ws = Workspace.at(tmp_path / "ws")
    dst = ws.event_media("idx_E0")
    dst.parent.mkdir(parents=True)
    partial_path(dst).write_bytes(b"half a file from a killed run")
    video = probe_video(src, "idx")
    first, fresh = cut_or_resume(ws, "idx_E0", dst, video, 1.0, 2.0, "accurate", CutSettings())
    assert fresh and not partial_path(dst).exists()
    mtime = dst.stat().st_mtime_ns
    again, fresh = cut_or_resume(ws, "idx_E0", dst, video, 1.0, 2.0, "accurate", CutSettings())
    assert not fresh and again == first and dst.stat().st_mtime_ns == mtime
    dst.write_bytes(dst.read_bytes()[:100])  # a media file a crash left short is cut again, not trusted
    redone, fresh = cut_or_resume(ws, "idx_E0", dst, video, 1.0, 2.0, "accurate", CutSettings())
    assert fresh and redone == first
    changed, fresh = cut_or_resume(ws, "idx_E0", dst, video, 1.0, 2.5, "accurate", CutSettings())
    assert fresh and changed.n_frames > first.n_frames


def test_cut_failure_leaves_nothing_behind(tmp_path):
    from hivau.tasks.build.cut import CutError

    src = make_video(tmp_path / "v.mp4", 2.0)
    with pytest.raises(CutError):
        cut_segment(str(src), tmp_path / "out.mp4", 5.0, 6.0, "accurate", 30.0)  # past the end: no frames
    assert not (tmp_path / "out.mp4").exists() and not partial_path(tmp_path / "out.mp4").exists()


def test_sample_frames_uniform_and_by_index(tmp_path):
    src = make_index_video(tmp_path / "idx.mp4", 120, fps=24, gop=24)
    sample = sample_frames(str(src), n=4, start_s=1.0, end_s=3.0)
    assert len(sample.frames) == 4 and sample.indices == [30, 42, 54, 66]
    assert [frame_index(f) for f in sample.frames] == sample.indices
    assert all(1.0 <= t < 3.0 for t in sample.times_s)
    picked = sample_frames(str(src), indices=[119, 0, 77])
    assert [frame_index(f) for f in picked.frames] == [119, 0, 77]
    with pytest.raises(IndexError):
        sample_frames(str(src), indices=[120])


def test_sample_frames_on_odd_rate_fixture(fixtures_dir):
    sample = sample_frames(str(fixtures_dir / "videos" / "robbery.mp4"), n=8, start_s=50.0, end_s=60.0, width=213, height=120)
    assert sample.frames.shape == (8, 120, 213, 3)
    assert sample.indices[0] >= 1350 and sample.indices[-1] < 1620  # 27 fps


def test_ffmpeg_missing_gives_install_hint(monkeypatch, tmp_path):
    from hivau.tasks.build.media import MissingBinaryError

    src = make_video(tmp_path / "src.mp4", 1.0)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MissingBinaryError, match="apt-get install -y ffmpeg"):
        cut_segment(str(src), tmp_path / "out.mp4", 0.0, 0.5, "accurate", fps=25.0)


def test_cut_reports_what_it_wrote_without_a_second_probe(tmp_path):
    """The frame count from ffmpeg's progress and the span from it equal what probing the output finds."""
    src = make_video(tmp_path / "src.mp4", 12.0, fps=25, gop=25)
    video = probe_video(src, "src")
    for mode, (start, end) in [("copy", (3.3, 7.3)), ("accurate", (2.52, 5.0)), ("copy", (0.0, 12.0))]:
        result = cut_segment(str(src), tmp_path / f"{mode}.mp4", start, end, mode, video.fps, video.keyframe_times)
        times, _ = read_packets(str(tmp_path / f"{mode}.mp4"))
        assert result.n_frames == len(times)
        assert result.end_s - result.start_s == pytest.approx(times[-1] - times[0] + 1 / 25, abs=1e-6)


def test_progress_parsing():
    assert frames_written("frame=12\nprogress=continue\nframe=133\nprogress=end\n") == 133
    assert frames_written("progress=end\n") is None
    assert written_span(2.0, 133, 25.0) == (2.0, 7.32)


def test_mp4_index_missing_reads_top_level_boxes(tmp_path):
    """The truncation check walks box headers: an index (moov) before the cut, after it, or none at all."""
    def box(kind: bytes, payload: bytes) -> bytes:
        return (8 + len(payload)).to_bytes(4, "big") + kind + payload

    ftyp, moov, mdat = box(b"ftyp", b"isom" * 3), box(b"moov", b"\0" * 40), box(b"mdat", b"\1" * 400)
    cases = {"faststart": ftyp + moov + mdat, "at_end": ftyp + mdat + moov, "cut_before_moov": ftyp + mdat[:200],
             "cut_inside_moov": ftyp + mdat + moov[:20], "not_mp4": b"\x1aE\xdf\xa3" + b"\0" * 100}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    assert [mp4_index_missing(tmp_path / n) for n in cases] == [False, False, True, True, False]
