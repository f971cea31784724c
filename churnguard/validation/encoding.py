"""Repair text that arrived in another encoding than UTF-8, without any network model.

Real exports mix encodings: a CSV saved from Excel in Shift-JIS (cp932), a Chinese
system writing GB18030, a Western one writing cp1252, or a UTF-8 string that went
through a latin-1 round trip and became mojibake ('ä¾¡æ ¼'). The decision is made per
line (CSV) or per value (Parquet strings) from the bytes alone:

1. valid UTF-8 -> kept as is (the contract's encoding);
2. cp932 when it decodes strictly to text with kana and no half-width katakana
   (Chinese GBK bytes read as cp932 give half-width katakana or private-use characters);
3. GB18030 when it decodes strictly to CJK ideographs / CJK punctuation only;
4. cp932 / GB18030 without those signs when they decode to plausible text;
5. otherwise cp1252, falling back to latin-1 (never fails).
Steps 2-4 need two or more CJK characters, since a lone accented Latin letter next to
an ASCII letter is also a valid double-byte character in both CJK encodings.
"""

from __future__ import annotations

import unicodedata

_ASCII_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _is_kana(ch: str) -> bool:
    return "\u3040" <= ch <= "\u30ff"


def _is_cjk(ch: str) -> bool:
    return "\u4e00" <= ch <= "\u9fff" or "\u3400" <= ch <= "\u4dbf" or "\uf900" <= ch <= "\ufaff"


def _is_cjk_punct(ch: str) -> bool:
    return "\u3000" <= ch <= "\u303f" or "\uff01" <= ch <= "\uff5e"


def _implausible(text: str) -> bool:
    """Signs of a wrong decoding: half-width katakana, private use, controls, or a lone
    CJK character squeezed between ASCII letters (a latin-1 umlaut read as a CJK pair)."""
    for i, ch in enumerate(text):
        if ch <= "\x7f":
            if ch < " " and ch not in "\t\r\n":
                return True
            continue
        if "\uff61" <= ch <= "\uff9f":
            return True
        cat = unicodedata.category(ch)
        if cat in ("Co", "Cn", "Cc", "Cs"):
            return True
        if (
            _is_cjk(ch)
            and 0 < i < len(text) - 1
            and text[i - 1] in _ASCII_LETTERS
            and text[i + 1] in _ASCII_LETTERS
        ):
            return True
    return False


def _strict(raw: bytes, encoding: str) -> str | None:
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError:
        return None


def _cjk_count(text: str) -> int:
    return sum(1 for c in text if _is_cjk(c) or _is_kana(c))


def _is_cjk_text_char(ch: str) -> bool:
    """A character expected in Chinese / Japanese text (ideographs, kana, punctuation)."""
    return _is_cjk(ch) or _is_kana(ch) or _is_cjk_punct(ch) or "\u2000" <= ch <= "\u206f"


def decode_bytes(raw: bytes) -> tuple[str, bool]:
    """Decode one line or value; returns (text, repaired) where repaired means not UTF-8."""
    text = _strict(raw, "utf-8")
    if text is not None:
        return text, False
    sjis = _strict(raw, "cp932")
    gb = _strict(raw, "gb18030")
    # A CJK reading needs two or more CJK characters: one accented Latin letter next to
    # ASCII decodes as a single CJK character in both multi-byte encodings.
    if (
        sjis is not None
        and not _implausible(sjis)
        and _cjk_count(sjis) >= 2
        and any(_is_kana(c) for c in sjis)
    ):
        return sjis, True
    if gb is not None and not _implausible(gb) and _cjk_count(gb) >= 2:
        non_ascii = [c for c in gb if c > "\x7f"]
        if all(_is_cjk_text_char(c) for c in non_ascii):
            return gb, True
    for candidate in (sjis, gb):
        if candidate is not None and not _implausible(candidate) and _cjk_count(candidate) >= 2:
            return candidate, True
    cp = _strict(raw, "cp1252")
    return (cp if cp is not None else raw.decode("latin-1")), True


def repair_text(value: str) -> tuple[str, bool]:
    """Undo mojibake in a decoded string: text whose characters are all below U+0100 (or
    cp1252's) and whose bytes form UTF-8, cp932 or GB18030 text under the rules above."""
    if value.isascii():
        return value, False
    raw: bytes | None = None
    for enc in ("latin-1", "cp1252"):
        try:
            raw = value.encode(enc)
            break
        except UnicodeEncodeError:
            continue
    if raw is None:
        return value, False
    utf8 = _strict(raw, "utf-8")
    if utf8 is not None:
        return (utf8, True) if utf8 != value else (value, False)
    decoded, _ = decode_bytes(raw)
    # Only accept a CJK reading: a Western string that happens to be valid cp932 stays.
    if decoded != value and any(_is_cjk(c) or _is_kana(c) for c in decoded):
        cjk = sum(1 for c in decoded if _is_cjk(c) or _is_kana(c) or _is_cjk_punct(c))
        if cjk >= 2:
            return decoded, True
    return value, False
