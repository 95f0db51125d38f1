"""Caption metrics (pycocoevalcap: BLEU-1..4, METEOR, ROUGE-L, CIDEr) and their table rows, shared by hivau-eval
and Holmes-VAU's protocol."""

from __future__ import annotations

import shutil

TEXT_METRICS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr")


class CaptionScorer:
    """COCO caption metrics (pycocoevalcap, PTB-tokenised): BLEU-1..4, METEOR, ROUGE-L, CIDEr.

    METEOR runs the reference Java implementation in one process kept for the scorer's life; without
    Java it is reported as None, never guessed.
    """

    def __init__(self, meteor: bool = True):
        self._meteor = None
        if meteor and shutil.which("java"):
            from pycocoevalcap.meteor.meteor import Meteor

            self._meteor = Meteor()

    def __enter__(self) -> "CaptionScorer":
        return self

    def __exit__(self, *exc) -> None:
        if self._meteor is not None:
            self._meteor.meteor_p.kill()
            self._meteor.meteor_p.wait()

    @staticmethod
    def tokenize(texts: dict[str, list[str]]) -> dict[str, list[str]]:
        from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

        return PTBTokenizer().tokenize({k: [{"caption": t or "empty"} for t in v] for k, v in texts.items()})

    def score_tokenized(self, gts: dict[str, list[str]], res: dict[str, list[str]]) -> dict:
        from pycocoevalcap.bleu.bleu import Bleu
        from pycocoevalcap.cider.cider import Cider
        from pycocoevalcap.rouge.rouge import Rouge

        if not res:
            return {"n": 0}
        out: dict = {"n": len(res)}
        bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
        out.update({f"BLEU-{i + 1}": float(b) for i, b in enumerate(bleu)})
        out["METEOR"] = float(self._meteor.compute_score(gts, res)[0]) if self._meteor else None
        out["ROUGE-L"] = float(Rouge().compute_score(gts, res)[0])
        out["CIDEr"] = float(Cider().compute_score(gts, res)[0])
        return out

    def score(self, references: dict[str, list[str]], hypotheses: dict[str, str]) -> dict:
        """Metrics over id -> reference texts and id -> one hypothesis."""
        if not hypotheses:
            return {"n": 0}
        gts = self.tokenize({k: references[k] for k in hypotheses})
        res = self.tokenize({k: [h] for k, h in hypotheses.items()})
        return self.score_tokenized(gts, res)


def fmt(value) -> str:
    return "-" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def metrics_rows(metrics: dict) -> list[dict]:
    """One row per level (and level:task) with every text metric; the table artifact's rows."""
    return [{"group": name, "n": m.get("n", 0), **{k: m.get(k) for k in TEXT_METRICS}}
            for name, m in metrics["text"].items()]
