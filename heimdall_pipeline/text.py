"""Input shown back in messages: cut to a readable length (a 10,000-character id is not echoed
in full), saying how long it was."""

from __future__ import annotations

SHOWN_VALUE = 60  # characters of a value quoted in a message
MESSAGE_LINE = 500  # characters of one line of an error message


def clip(text: object, limit: int = MESSAGE_LINE) -> str:
    """`text` (as str) cut to `limit` characters, with its full length when it was cut."""
    text = str(text)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def shown(value: object, limit: int = SHOWN_VALUE) -> str:
    """repr(value) for a message, cut to `limit` characters."""
    return clip(repr(value), limit)


def clip_lines(text: object, limit: int = MESSAGE_LINE) -> str:
    """Each line of a message cut to `limit` characters."""
    return "\n".join(clip(line, limit) for line in str(text).splitlines())
