"""Split long texts for channels with a message limit, at the safest point available."""

from __future__ import annotations


def utf16_units(text: str) -> int:
    """Length as Telegram counts it: UTF-16 code units (an emoji outside the BMP counts twice)."""
    return len(text.encode("utf-16-le")) // 2


def _fitting(text: str, limit: int, utf16: bool) -> int:
    """How many leading characters fit into `limit` units."""
    if not utf16:
        return min(len(text), limit)
    units = 0
    for index, char in enumerate(text):
        units += 2 if ord(char) > 0xFFFF else 1
        if units > limit:
            return index
    return len(text)


def split_text(text: str, limit: int, *, utf16: bool = True) -> list[str]:
    """Parts of at most `limit` units, cut at a blank line, a line end, a space, or (last) anywhere.

    Units are UTF-16 code units (Telegram) or characters (`utf16=False`, VK). Nothing is lost,
    the order is kept, and no character is cut in half.
    """
    if limit < 2:
        raise ValueError("limit must be at least 2")
    if len(text) * 2 <= limit:  # fits however it is counted (a character is at most 2 units)
        return [text]
    parts: list[str] = []
    rest = text
    while _fitting(rest, limit, utf16) < len(rest):
        size = _fitting(rest, limit, utf16)
        window = rest[:size]
        cut = -1
        for separator in ("\n\n", "\n", " "):
            position = window.rfind(separator)
            if position > size // 3:
                cut = position + len(separator)
                break
        if cut <= 0:
            cut = size
        parts.append(rest[:cut].rstrip("\n") or rest[:cut])
        rest = rest[cut:]
    if rest or not parts:
        parts.append(rest)
    return parts
