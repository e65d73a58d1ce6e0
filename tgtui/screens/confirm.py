"""The confirm dialogs: disabling asks for the reason the daemon requires; an action on several marked rows,
and a retry of every task a filter matches, ask yes or no, saying how many."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label


class ReasonDialog(ModalScreen[str | None]):
    """Dismissed with the reason, or None when cancelled."""

    DEFAULT_CSS = """
    ReasonDialog { align: center middle; }
    ReasonDialog > Vertical { width: 64; max-width: 100%; height: auto; border: thick $error; background: $surface;
                              padding: 1 2; }
    ReasonDialog Label { width: 100%; }
    ReasonDialog #problem { color: $error; height: auto; }
    ReasonDialog Horizontal { height: auto; align-horizontal: right; margin-top: 1; }
    ReasonDialog Button { margin-left: 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, question: str, verb: str) -> None:
        super().__init__()
        self.question = question
        self.verb = verb

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.question)
            yield Input(placeholder="reason (required, kept with the account)", id="reason", max_length=500)
            yield Label("", id="problem")
            with Horizontal():
                yield Button(self.verb, variant="error", id="ok")
                yield Button("Cancel", id="cancel")

    def on_input_submitted(self) -> None:
        self._submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "ok":
            self._submit()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)

    def _submit(self) -> None:
        reason = self.query_one("#reason", Input).value.strip()
        if not reason:
            self.query_one("#problem", Label).update("a reason is required")
            return
        self.dismiss(reason)


class ConfirmDialog(ModalScreen[bool]):
    """A yes-or-no question that names what will happen (\"Retry 1,234 failed tasks?\"): dismissed with True
    only by its button or ``y``; ``n`` and escape cancel."""

    DEFAULT_CSS = """
    ConfirmDialog { align: center middle; }
    ConfirmDialog > Vertical { width: 64; max-width: 100%; height: auto; border: thick $warning;
                               background: $surface; padding: 1 2; }
    ConfirmDialog Label { width: 100%; }
    ConfirmDialog Horizontal { height: auto; align-horizontal: right; margin-top: 1; }
    ConfirmDialog Button { margin-left: 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "yes", "Yes"),
        Binding("n,escape", "no", "No"),
    ]

    def __init__(self, question: str, verb: str) -> None:
        super().__init__()
        self.question = question
        self.verb = verb

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.question, id="question")
            with Horizontal():
                yield Button(self.verb, variant="warning", id="ok")
                yield Button("Cancel", id="cancel")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "ok")

    def action_yes(self) -> None:
        self.dismiss(True)

    def action_no(self) -> None:
        self.dismiss(False)
