"""Survey comment text: language by script, lexicon themes, and a learnt sentiment score.

- Language: kana -> ja; Han without kana -> zh; anything else -> en (no model download).
- Themes: maintained lexicons in `features/lexicons/<lang>.yaml` (price, competitor,
  bugs, support, ease_of_use, cancel). Every comment is matched against its own
  language's lexicon and the English one (CJK comments often quote English terms).
- Sentiment: character n-gram TF-IDF + ridge regression from comment text to the
  comment's own NPS (0-10), so CJK needs no tokenizer and comments without a score still
  count. It is the only fitted part of the feature stage: fitted on comments submitted
  before the train cut-off, saved as a versioned artefact and held fixed afterwards.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import sklearn
import yaml
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline

THEMES = ("price", "competitor", "bugs", "support", "ease_of_use", "cancel")
LANGUAGES = ("en", "ja", "zh")
LEXICON_DIR = Path(__file__).parent / "lexicons"

_KANA = re.compile(r"[\u3040-\u30ff\u31f0-\u31ff\uff66-\uff9f]")
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def detect_language(text: str | None) -> str | None:
    """'ja' when the text has kana, 'zh' when it has Han but no kana, else 'en'; None when empty."""
    if text is None or (isinstance(text, float) and np.isnan(text)) or not str(text).strip():
        return None
    s = str(text)
    if _KANA.search(s):
        return "ja"
    if _HAN.search(s):
        return "zh"
    return "en"


@cache
def load_lexicon(language: str) -> dict[str, tuple[str, ...]]:
    """Theme -> terms for one language, from `features/lexicons/<language>.yaml`."""
    data = yaml.safe_load((LEXICON_DIR / f"{language}.yaml").read_text(encoding="utf-8"))
    themes = data.get("themes") or {}
    return {th: tuple(str(t).lower() for t in themes.get(th) or ()) for th in THEMES}


@cache
def _pattern(language: str, theme: str) -> re.Pattern[str] | None:
    terms = load_lexicon(language)[theme]
    if not terms:
        return None
    if language == "en":
        parts = []
        for term in terms:
            if term.endswith("*"):
                parts.append(r"\b" + re.escape(term[:-1]) + r"\w*")
            else:
                parts.append(r"\b" + re.escape(term) + r"\b")
        return re.compile("|".join(parts), re.IGNORECASE)
    return re.compile("|".join(re.escape(t) for t in terms), re.IGNORECASE)


def theme_flags(comments: pd.Series, languages: pd.Series) -> pd.DataFrame:
    """One 0/1 column `theme_<name>` per theme for each comment (0 for empty comments)."""
    text = comments.fillna("").astype(str)
    out = pd.DataFrame(index=comments.index)
    for theme in THEMES:
        en = _pattern("en", theme)
        flags = text.str.contains(en) if en is not None else pd.Series(False, index=text.index)
        for lang in ("ja", "zh"):
            pat = _pattern(lang, theme)
            mask = (languages == lang).fillna(False).to_numpy(dtype=bool)
            if pat is not None and mask.any():
                flags = flags | (text.str.contains(pat) & mask)
        out[f"theme_{theme}"] = flags.astype(int)
    return out


@dataclass
class TextModel:
    """The fitted sentiment model and its metadata (fit cut-off, size, version hash)."""

    pipeline: Pipeline | None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def fitted(self) -> bool:
        return self.pipeline is not None

    def predict(self, comments: pd.Series) -> np.ndarray:
        """Predicted NPS (0-10) per comment; NaN for empty comments or an unfitted model."""
        text = comments.fillna("").astype(str)
        out = np.full(len(text), np.nan)
        mask = text.str.strip().str.len().to_numpy() > 0
        if self.pipeline is not None and mask.any():
            out[mask] = np.clip(self.pipeline.predict(text[mask].tolist()), 0.0, 10.0)
        return out

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        model_path = folder / "model.joblib"
        if self.pipeline is not None:
            joblib.dump(self.pipeline, model_path)
        elif model_path.exists():
            model_path.unlink()
        (folder / "metadata.json").write_text(
            json.dumps(self.metadata, indent=2, sort_keys=True), encoding="utf-8"
        )

    @classmethod
    def load(cls, folder: Path) -> TextModel:
        metadata = json.loads((folder / "metadata.json").read_text(encoding="utf-8"))
        model_path = folder / "model.joblib"
        pipeline = joblib.load(model_path) if model_path.exists() else None
        return cls(pipeline=pipeline, metadata=metadata)


def fit_text_model(
    comments: pd.Series,
    nps: pd.Series,
    *,
    cutoff: pd.Timestamp | None,
    ngram_range: tuple[int, int] = (1, 3),
    min_df: int = 2,
    alpha: float = 1.0,
    min_comments: int = 30,
) -> TextModel:
    """Fit text -> NPS on the given (already cut-off) comments; unfitted when too few."""
    text = comments.fillna("").astype(str)
    keep = (text.str.strip().str.len() > 0) & nps.notna()
    x = text[keep].tolist()
    y = nps[keep].astype(float).to_numpy()
    settings = {"ngram_range": list(ngram_range), "min_df": min_df, "alpha": alpha}
    digest = hashlib.sha256()
    digest.update(json.dumps({"settings": settings, "sklearn": sklearn.__version__}).encode())
    for comment, score in zip(x, y, strict=True):
        digest.update(comment.encode("utf-8") + b"\x00" + str(score).encode() + b"\x01")
    langs = pd.Series([detect_language(c) for c in x], dtype="object").value_counts()
    metadata: dict[str, Any] = {
        "kind": "char-ngram tfidf + ridge: comment text -> NPS (0-10)",
        "fit_cutoff": None if cutoff is None else pd.Timestamp(cutoff).isoformat(),
        "n_comments": len(x),
        "languages": {str(k): int(v) for k, v in langs.items()},
        "settings": settings,
        "sklearn_version": sklearn.__version__,
        "version": digest.hexdigest()[:16],
    }
    if len(x) < min_comments or len(set(y)) < 2:
        metadata["fitted"] = False
        metadata["reason"] = f"{len(x)} scored comments before the cut-off (need {min_comments})"
        return TextModel(pipeline=None, metadata=metadata)
    pipeline = Pipeline(
        [
            (
                "tfidf",
                TfidfVectorizer(
                    analyzer="char_wb",
                    ngram_range=ngram_range,
                    min_df=min_df,
                    sublinear_tf=True,
                    lowercase=True,
                ),
            ),
            ("ridge", Ridge(alpha=alpha)),
        ]
    )
    pipeline.fit(x, y)
    metadata["fitted"] = True
    return TextModel(pipeline=pipeline, metadata=metadata)


def evaluate_text_model(model: TextModel, comments: pd.Series, nps: pd.Series) -> dict[str, float | int]:
    """Held-out quality: Spearman rho and MAE of predicted vs actual NPS, detractor AUC."""
    from scipy.stats import spearmanr
    from sklearn.metrics import roc_auc_score

    text = comments.fillna("").astype(str)
    keep = (text.str.strip().str.len() > 0) & nps.notna()
    result: dict[str, float | int] = {"n_heldout": int(keep.sum())}
    if not model.fitted or keep.sum() < 5:
        return result
    pred = model.predict(text[keep])
    actual = nps[keep].astype(float).to_numpy()
    result["spearman"] = float(spearmanr(pred, actual).statistic)
    result["mae"] = float(np.mean(np.abs(pred - actual)))
    detractor = actual <= 6
    if 0 < detractor.sum() < len(detractor):
        result["detractor_auc"] = float(roc_auc_score(detractor, -pred))
    return result


def score_comments(surveys: pd.DataFrame, model: TextModel) -> pd.DataFrame:
    """Per non-empty comment: language, theme flags and sentiment (predicted NPS)."""
    has_text = surveys["comment"].fillna("").astype(str).str.strip().str.len() > 0
    rows = surveys.loc[has_text, ["response_id", "account_id", "submitted_at", "comment"]].reset_index(
        drop=True
    )
    rows["language"] = [detect_language(c) for c in rows["comment"]]
    flags = theme_flags(rows["comment"], rows["language"])
    rows = pd.concat([rows, flags], axis=1)
    rows["sentiment"] = model.predict(rows["comment"])
    return rows.drop(columns="comment")
