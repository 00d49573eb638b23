"""ANSI terminal escapes in log messages: the viewer renders their colours; a download leaves them out."""

from __future__ import annotations

import re

# CSI sequences (colours, cursor moves), OSC sequences (titles, hyperlinks) and the two-byte escapes
ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]")


def strip_ansi(text: str) -> str:
    return ESCAPES.sub("", text) if "\x1b" in text else text
