"""BENCHMARKS.md is made of sections, one per benchmark script; each script rewrites only its own."""

from __future__ import annotations

import re
from pathlib import Path

REPORT = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"


def write_section(name: str, text: str) -> None:
    """Replace the text between `<!-- begin:name -->` and `<!-- end:name -->` (appended when absent)."""
    begin, end = f"<!-- begin:{name} -->", f"<!-- end:{name} -->"
    block = f"{begin}\n{text.strip()}\n{end}"
    current = REPORT.read_text() if REPORT.is_file() else "# Benchmarks\n"
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
    updated = pattern.sub(lambda _: block, current) if pattern.search(current) else current.rstrip() + "\n\n" + block + "\n"
    REPORT.write_text(updated)
