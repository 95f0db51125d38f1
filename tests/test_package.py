"""Packaging: one import package, a working console command, light imports."""

import importlib.metadata
import subprocess
import sys


def test_no_generic_top_level_packages():
    dist = importlib.metadata.distribution("hivau")
    top = {p.strip() for p in (dist.read_text("top_level.txt") or "hivau").split()}
    assert top <= {"hivau"}
    for generic in ("tasks", "models", "flows", "schemas"):
        found = subprocess.run([sys.executable, "-c", f"import {generic}"], capture_output=True, cwd="/")
        assert found.returncode != 0, f"`import {generic}` should not resolve to this project"


def test_core_import_stays_light():
    code = ("import sys, hivau.tasks.build.ingest, hivau.tasks.build.segments, hivau.schemas.records; "
            "print(','.join(m for m in ('torch', 'transformers', 'decord', 'prefect', 'cv2') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_cli_help_and_probe(fixtures_dir):
    out = subprocess.run([sys.executable, "-m", "hivau.cli", "--help"], capture_output=True, text=True, check=True)
    for command in ("build", "demo-data", "probe", "summary"):
        assert command in out.stdout
    out = subprocess.run([sys.executable, "-m", "hivau.cli", "probe", str(fixtures_dir / "videos" / "car_accident.mp4")],
                         capture_output=True, text=True, check=True)
    assert '"n_frames": 120' in out.stdout


def test_cli_probe_reports_reason(tmp_path):
    (tmp_path / "empty.mp4").touch()
    out = subprocess.run([sys.executable, "-m", "hivau.cli", "probe", str(tmp_path / "empty.mp4")],
                         capture_output=True, text=True)
    assert out.returncode == 1 and "video_empty" in out.stdout
