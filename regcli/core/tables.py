"""Rows of strings as an aligned text table or Markdown: the one table printer every command uses.

`render` lays out a whole table, column widths from the content. `Streaming` prints a header and
then one row at a time with widths fixed in advance, for commands that show each result as it
arrives. The first column is left-aligned and the rest right-aligned unless told otherwise. Every
cell is shown terminal-safe: a folder name holding a newline or an escape cannot forge a row.
"""

from collections.abc import Callable, Sequence

from regcli.core.text import terminal_safe

Row = Sequence[str]


def clock(seconds: float | None) -> str:
    """Seconds as m:ss or h:mm:ss ("-:--" when unknown)."""
    if seconds is None:
        return "-:--"
    hours, rest = divmod(int(round(seconds)), 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def alignments(headers: Row, align: str | None) -> str:
    """One of '<' or '>' per column; default: the first left, the rest right."""
    return align or "<" + ">" * (len(headers) - 1)


def text_line(values: Row, widths: Sequence[int], align: str) -> str:
    values = [terminal_safe(v) for v in values]  # a name from disk cannot forge a row
    cells = [
        value.ljust(width) if side == "<" else value.rjust(width)
        for value, width, side in zip(values, widths, align, strict=True)
    ]
    return "  ".join(cells).rstrip()


def render(headers: Row, rows: Sequence[Row], *, markdown: bool = False, align: str | None = None):
    """The table as text (aligned columns) or as a Markdown table."""
    align = alignments(headers, align)
    if markdown:
        rule = ["---" if side == "<" else "---:" for side in align]
        lines = [headers, rule, *([terminal_safe(v) for v in row] for row in rows)]
        return "\n".join("| " + " | ".join(line) + " |" for line in lines)
    widths = [
        max([len(h), *(len(terminal_safe(r[i])) for r in rows)]) for i, h in enumerate(headers)
    ]
    return "\n".join(text_line(line, widths, align) for line in [headers, *rows])


class Streaming:
    """A text table printed row by row, with column widths fixed up front (wider values push
    their row's later columns right rather than being cut). The header comes with the first
    row, so a command whose every model fails prints no table at all."""

    def __init__(
        self, headers: Row, widths: Sequence[int], write: Callable[[str], None], align=None
    ):
        self.widths = [max(w, len(h)) for w, h in zip(widths, headers, strict=True)]
        self.align = alignments(headers, align)
        self.write = write
        self.header: str | None = text_line(headers, self.widths, self.align)

    def row(self, values: Row) -> None:
        if self.header is not None:
            self.write(self.header)
            self.header = None
        self.write(text_line(values, self.widths, self.align))
