"""Versioned prompt templates for the LLM stages, one file per task (every output records the version), and the
instruction question pools of release rows (`questions.py`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from string import Template

_FRONT_MATTER = re.compile(r"\A---\n(?P<meta>.*?)\n---\n(?P<body>.*)\Z", re.S)
_SECTION = re.compile(r"^## (?P<name>[\w:]+)\s*$", re.M)


@dataclass(frozen=True)
class Prompt:
    name: str
    version: str
    sections: dict[str, str]  # "system", "user", or "user:anomaly" / "user:normal"

    @property
    def tag(self) -> str:
        """What outputs record: `event_summary@1`."""
        return f"{self.name}@{self.version}"

    def messages(self, variant: str | None = None, **fields) -> list[dict]:
        """System and user chat messages with `$field`s filled in; a missing field is an error."""
        user_key = f"user:{variant}" if variant else "user"
        if user_key not in self.sections:
            raise KeyError(f"prompt {self.tag} has no section '{user_key}'")
        values = {k: str(v) for k, v in fields.items()}
        return [{"role": "system", "content": Template(self.sections["system"]).substitute(values)},
                {"role": "user", "content": Template(self.sections[user_key]).substitute(values)}]


def parse_prompt(text: str) -> Prompt:
    match = _FRONT_MATTER.match(text)
    if not match:
        raise ValueError("a prompt file starts with front matter: ---, name: ..., version: ..., ---")
    meta = dict(line.split(":", 1) for line in match["meta"].splitlines() if ":" in line)
    meta = {k.strip(): v.strip() for k, v in meta.items()}
    parts = _SECTION.split(match["body"])
    sections = {parts[i]: parts[i + 1].strip() for i in range(1, len(parts) - 1, 2)}
    if "system" not in sections:
        raise ValueError(f"prompt {meta.get('name')} has no '## system' section")
    return Prompt(name=meta["name"], version=meta["version"], sections=sections)


@lru_cache(maxsize=None)
def load_prompt(name: str) -> Prompt:
    """The packaged template `prompts/{name}.md`."""
    return parse_prompt(resources.files(__package__).joinpath(f"{name}.md").read_text(encoding="utf-8"))
