"""The line under a table: how many rows are marked, and how far a bulk action under way has got.
Hidden when there is neither, so a view without marks looks as it always did."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from tgdaemon.display import plural


class MarkLine(Static):
    DEFAULT_CSS = "MarkLine { height: 1; padding: 0 1; background: $warning 25%; display: none; }"

    def __init__(self) -> None:
        super().__init__("")
        self._text = ""

    def paint(self, marked: int, noun: str, progress: str | None) -> None:
        parts = [f"{plural(marked, noun)} marked (ctrl+\\ clears)"] if marked else []
        if progress:
            parts.append(progress)
        text = " │ ".join(parts)
        if text != self._text:
            self._text = text
            self.update(Text(text))
            self.display = bool(text)

    @property
    def text(self) -> str:
        return self._text
