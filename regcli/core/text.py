"""Text that is safe to show: paths as UTF-8 and names that cannot forge terminal output.

A file or folder name is whatever bytes the file system holds: control characters, escape
sequences, bidirectional overrides. Everything regcli prints that came from a name (tables,
error lines, "wrote ..." lines) goes through `terminal_safe` first.
"""

import os
import re
import reprlib
import unicodedata
from pathlib import Path

# Unicode's bidirectional controls: they can make a file name display as another one.
BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)


def shown(path: Path | str | bytes) -> str:
    """A path as text that any UTF-8 file can hold: undecodable bytes become \\xNN escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def terminal_safe(text: str) -> str:
    """Text that prints as itself on a terminal: control characters (C0, C1, DEL), line and
    paragraph separators, lone surrogates and bidirectional overrides become \\x1b-style
    escapes, so a file name cannot move the cursor, recolour the terminal, forge output lines
    or display as another name."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(escaped(c) if unsafe(c) else c for c in text)


def unsafe(c: str) -> bool:
    return unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp") or c in BIDI_CONTROLS


def escaped(c: str) -> str:
    code = ord(c)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def natural_key(path: Path | str) -> list:
    """seed-2 before seed-10 (and 0.0001 before 0.001: a run of digits is its number, then its
    text, so leading zeros still tell two runs apart)."""
    return [
        (int(part), part) if part.isdigit() else (-1, part)
        for part in re.split(r"(\d+)", str(path))
    ]


def brief(value) -> str:
    """A value as an error line shows it: short, however long or deeply nested it is."""
    shortener = reprlib.Repr()
    shortener.maxlevel, shortener.maxstring, shortener.maxother = 2, 40, 40
    shortener.maxlist = shortener.maxdict = shortener.maxtuple = 4
    return shortener.repr(value)
