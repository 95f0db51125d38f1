"""Anomaly classes: the names datasets and texts give them (UCF-Crime, XD-Violence, VAU-R1) and the key each one
normalises to; the one table the checks, the verifiable tasks and the rewards read."""

from __future__ import annotations

import re
from functools import lru_cache

# surface form (lower case, as prose writes it) -> class key
CLASS_ALIASES: dict[str, str] = {
    "abuse": "abuse", "animal abuse": "abuse", "child abuse": "abuse",
    "arrest": "arrest", "arrests": "arrest",
    "arson": "arson",
    "assault": "assault",
    "burglary": "burglary", "burglar": "burglary", "break-in": "burglary",
    "explosion": "explosion", "blast": "explosion",
    "fighting": "fighting", "fight": "fighting", "brawl": "fighting",
    "road accident": "roadaccidents", "road accidents": "roadaccidents", "roadaccident": "roadaccidents",
    "roadaccidents": "roadaccidents", "car accident": "roadaccidents", "traffic accident": "roadaccidents",
    "robbery": "robbery",
    "shooting": "shooting", "gunfire": "shooting",
    "shoplifting": "shoplifting", "shoplifter": "shoplifting",
    "stealing": "stealing", "theft": "stealing",
    "vandalism": "vandalism",
    "riot": "riot", "riots": "riot", "rioting": "riot",
}
# the classes verifiable tasks draw distractors from (UCF-Crime's 13 and XD-Violence's riot), by key
CLASS_NAMES = {
    "abuse": "Abuse", "arrest": "Arrest", "arson": "Arson", "assault": "Assault", "burglary": "Burglary",
    "explosion": "Explosion", "fighting": "Fighting", "roadaccidents": "RoadAccidents", "robbery": "Robbery",
    "shooting": "Shooting", "shoplifting": "Shoplifting", "stealing": "Stealing", "vandalism": "Vandalism",
    "riot": "Riot",
}
NORMAL = "Normal"
_BY_LETTERS = {re.sub(r"[^a-z]", "", alias): key for alias, key in CLASS_ALIASES.items()}


@lru_cache(maxsize=4096)  # a release asks for the same few labels once per item
def class_key(label: str) -> str:
    """`Road Accidents`, `RoadAccidents`, `road_accident`, `Car accident` -> `roadaccidents`; an unknown name: its
    lower-case letters."""
    letters = re.sub(r"[^a-z]", "", (label or "").lower())
    return CLASS_ALIASES.get((label or "").lower().strip()) or _BY_LETTERS.get(letters, letters)
