"""The field's words: anomaly classes and their aliases, words each label's texts use, synonyms, abstract nouns.

Shared by the draft checks and the review queue's risk signals; one owner for what a word means here.
"""

from __future__ import annotations

from pathlib import Path

from hivau.schemas.classes import CLASS_ALIASES, class_key  # noqa: F401 (re-exported for the checks and the queue)

# ---------------------------------------------------------------- classes (UCF-Crime, XD-Violence, HIVAU-70k)
# their names and keys are schemas/classes.py's (CLASS_ALIASES, class_key, re-exported here)
# classes a judgement may confuse without being wrong (a robbery is a theft; an assault is a fight)
CLASS_GROUPS: tuple[frozenset[str], ...] = (
    frozenset({"assault", "fighting", "abuse", "riot"}),
    frozenset({"robbery", "stealing", "burglary", "shoplifting"}),
    frozenset({"explosion", "arson"}),
    frozenset({"shooting", "robbery", "arrest"}),
)


# words that say "something abnormal happens" in a draft of a video labelled normal
ANOMALY_WORDS = frozenset(
    "abuse accident arrest arson assault attack attacks blood break breaks burglary burn burning collide collides "
    "collision crash crashes explode explodes explosion fall falls fight fighting fights fire flee flees gun hit "
    "hits injured kick kicks knife punch punches rob robbery robs shoot shooting shoplifting smash steal stealing "
    "steals stab struggle theft thief vandalism violence violent weapon".split())
# label -> words a draft of it is expected to use (any one); labels not listed use their own words
LABEL_WORDS = {
    "abuse": {"abuse", "hit", "hits", "beat", "beats", "kick", "kicks", "push", "pushes", "slap", "slaps"},
    "arrest": {"arrest", "arrests", "police", "officer", "officers", "handcuff", "handcuffs"},
    "arson": {"arson", "fire", "burn", "burns", "burning", "flame", "flames"},
    "assault": {"assault", "attack", "attacks", "hit", "hits", "punch", "punches", "kick", "kicks", "beat"},
    "burglary": {"burglary", "break", "breaks", "steal", "steals", "enter", "enters", "thief"},
    "explosion": {"explosion", "explode", "explodes", "blast", "smoke", "fire", "debris", "shockwave"},
    "fighting": {"fight", "fights", "fighting", "punch", "punches", "hit", "hits", "kick", "kicks", "struggle"},
    "roadaccidents": {"accident", "crash", "crashes", "collide", "collides", "collision", "hit", "hits"},
    "robbery": {"robbery", "rob", "robs", "gun", "weapon", "threaten", "threatens", "steal", "steals"},
    "shooting": {"shoot", "shoots", "shooting", "gun", "fire", "fires", "shot"},
    "shoplifting": {"shoplifting", "steal", "steals", "hide", "hides", "pocket", "pockets", "conceal"},
    "stealing": {"steal", "steals", "stealing", "take", "takes", "thief", "theft"},
    "vandalism": {"vandalism", "smash", "smashes", "break", "breaks", "damage", "damages", "kick", "kicks"},
}

# what a summary of an anomalous item must not say (its judgement is read by `judgement_stance`; a summary may
# tell a story: "starting from a normal scene", "as if nothing out of the ordinary had occurred")
NORMAL_CLAIMS = (
    r"\bno (?:\w+ )?anomal\w*", r"\bnot (?:an? )?anomal\w*",
    r"\bno (?:unusual|abnormal|suspicious) (?:event|activit|behavio|incident)\w*",
)
# a judgement's signs of an anomaly and of normality (lemmas); a negated sign counts for the other side
ANOMALY_SIGNS = frozenset(
    "anomaly anomalous abnormal abnormality unusual suspicious strange irregular odd incident emergency violent "
    "violence crime criminal dangerous danger wrong illegal illicit unlawful threat threatening alarming chaotic "
    "chaos hazard hazardous harmful harm aggressive aggression disturbance unexpected attack accident".split())
NORMAL_SIGNS = frozenset(
    "normal ordinary routine uneventful usual mundane everyday typical regular calm peaceful quiet fine benign "
    "harmless innocuous unremarkable".split())
# verbs of "nothing happens" / "there is nothing to report"
QUIET_VERBS = frozenset("happen occur report take go change".split())

# words that carry no content: a trigram of them and one noun ("the man in") is a frame people repeat to tell
# several men apart, not a loop
FUNCTION_WORDS = frozenset(
    "a an the this that these those his her its their our my your he she it they we i you him them us me who whom "
    "which what whose in on at of to from by with into onto over under up down out off about across after before "
    "behind near through toward towards around along between among for as than and or but nor so then there here "
    "is are was were be been being am has have had do does did not no while when where".split())

# ---------------------------------------------------------------- nouns
# lemma -> the form evidence is compared in (paraphrases of this field's people, vehicles and things)
_FAMILIES = {
    "man": "man men guy gentleman male",
    "woman": "woman women lady female",
    "child": "child children kid boy girl toddler baby",
    "police": "police policeman policemen policewoman officer cop patrolman",
    "employee": "employee clerk cashier staff attendant shopkeeper salesperson salesman saleswoman teller",
    "customer": "customer shopper buyer client",
    "guard": "guard watchman bodyguard",
    "car": "car sedan suv jeep automobile hatchback taxi cab",
    "truck": "truck lorry pickup van",
    "motorcycle": "motorcycle motorbike scooter moped",
    "bicycle": "bicycle bike cycle",
    "gun": "gun pistol handgun firearm rifle revolver shotgun",
    "knife": "knife blade dagger machete",
    "stick": "stick club bat baton rod pole",
    "fire": "fire flame flames blaze",
    "store": "store shop supermarket market",
    "road": "road street highway lane roadway intersection crossroad",
    "money": "money cash banknote bill coin",
    "bag": "bag backpack handbag purse suitcase",
    "door": "door doorway entrance gate",
    "counter": "counter checkout desk register",
    "dog": "dog puppy",
    "cat": "cat kitten",
    "house": "house home building",
    "phone": "phone cellphone smartphone mobile",
    "clothes": "clothes clothing shirt jacket coat hoodie sweater top",
}
SYNONYMS: dict[str, str] = {w: head for head, ws in _FAMILIES.items() for w in ws.split()}
# general words: supported when the captions name any member of their family
GENERAL_NOUNS: dict[str, frozenset[str]] = {
    "person": frozenset({"man", "woman", "child", "police", "employee", "customer", "person", "people", "someone",
                         "pedestrian", "driver", "passenger", "worker", "guard", "individual", "figure", "suspect",
                         "victim", "thief", "robber", "crowd", "group", "guard"}),
    "vehicle": frozenset({"car", "truck", "motorcycle", "bicycle", "bus", "vehicle", "tricycle", "tractor",
                          "van", "train", "tram", "ambulance"}),
    "weapon": frozenset({"gun", "knife", "stick", "weapon", "hammer", "axe", "bottle", "brick", "rock", "stone"}),
    "animal": frozenset({"dog", "cat", "animal", "horse", "cow", "bird"}),
}
for _general in ("people", "individual", "someone", "figure", "human", "occupant", "passenger", "pedestrian",
                 "bystander", "passerby", "suspect", "victim", "perpetrator", "attacker", "assailant", "thief",
                 "robber", "culprit", "offender", "owner", "resident", "driver", "group", "crowd", "staff",
                 "worker", "adult", "rider", "cyclist", "member", "user", "participant"):
    GENERAL_NOUNS[_general] = GENERAL_NOUNS["person"]
GENERAL_NOUNS["object"] = GENERAL_NOUNS["item"] = GENERAL_NOUNS["thing"] = frozenset()  # always said of something

# things one sees that WordNet files under events and phenomena: the checks treat them as concrete
VISIBLE = frozenset("fire flame smoke explosion blast spark sparks blood water rain snow crash collision".split())
# nouns that name no thing one could see: judgements, reasons, kinds of event, parts of a video (WordNet's
# abstract nouns, see scripts/make_abstract_nouns.py, and this field's own)
def _word_list(name: str) -> frozenset[str]:
    return frozenset(w for w in Path(__file__).with_name(name).read_text().split("\n") if w and not w.startswith("#"))


_WORDNET_ABSTRACT = _word_list("abstract_nouns.txt")
# common verbs (WordNet): a "noun" the tagger found with nothing in front of it that is one of these is taken for
# the verb it nearly always is ("causing the dog to cower and whimper", "fire engulfs the car")
VERBS = _word_list("verbs.txt")
# verbs that are never nouns: a tagged noun "ensues" or "deviates" is the verb whatever stands in front of it
VERB_ONLY = _word_list("verb_only.txt")
_FIELD_ABSTRACT = frozenset("""
act action activity accident anomaly anomalies aggression attempt attention awareness basis behavior behaviour
belief case cause caution chaos circumstance clip concern conduct consequence context control crime criminal
damage danger deal degree detail disorder disregard distress disturbance effect emergency end event evidence
example existence fact factor fear force footage frame grab harm hazard impact incident indication injury
instance intent intention interest issue kind law level life lack manner matter means measure method moment
motive name nature need norm number occurrence order outcome pain part pattern period place point possibility
presence pressure problem procedure process property protection purpose reason reaction rest result right risk
routine rule safety scenario scene second sense sequence series setting severity sign situation size society
sort source speed stage standard start state step struggle suspicion system tension term theft threat time
top trouble type use value video view violence way welfare while wrongdoing abuse arrest arson assault
burglary explosion fighting fight robbery shooting shoplifting stealing vandalism riot minute hour day night
moment bit lot couple side front back middle left right distance direction location position area spot
camera frame picture screen view angle perspective shot surveillance monitor footage recording image
other others one ones lens release cue instance air surroundings environment ground floor path timeframe
aftermath
""".split())
ABSTRACT_NOUNS = (_WORDNET_ABSTRACT | _FIELD_ABSTRACT) - VISIBLE
# endings of abstract nouns WordNet's list may miss (distraction, movement, darkness, ability, ownership), and the
# nouns with such an ending that name things (ambulance, station, pavement: WordNet, scripts/make_abstract_nouns.py)
ABSTRACT_SUFFIXES = ("tion", "sion", "ment", "ness", "ity", "ance", "ence", "ism", "ship", "hood", "ior", "iour")
CONCRETE_SUFFIXED = _word_list("concrete_suffixed.txt")


def is_abstract(lemma: str) -> bool:
    return lemma in ABSTRACT_NOUNS or (lemma.endswith(ABSTRACT_SUFFIXES) and lemma not in CONCRETE_SUFFIXED)

COUNT_WORDS = {"two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
               "ten": 10, "second": 2, "third": 3, "fourth": 4, "2": 2, "3": 3, "4": 4, "5": 5, "6": 6}

# (level, field) -> the usual length in words; QA answers are `qa`
LENGTH_RANGES: dict[tuple[str, str], tuple[int, int]] = {
    ("clip", "caption"): (4, 120),
    ("event", "summary"): (15, 400), ("event", "judgement"): (3, 60), ("event", "description"): (6, 250),
    ("event", "analysis"): (5, 200),
    ("video", "summary"): (15, 600), ("video", "judgement"): (3, 60), ("video", "description"): (6, 400),
    ("video", "analysis"): (5, 300),
    ("event", "qa"): (1, 120), ("video", "qa"): (1, 160),
}
