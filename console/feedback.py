"""What a page says after one of its buttons ran: one message that survives the rerun.

Buttons run as widget callbacks, before the page is drawn again, so the page
cannot draw their outcome there; it keeps one message in the session state
under its own key and draws it where the page wants it. ``Feedback.act`` is the
one way a button calls the engine: one engine function, its one-line
DiscoveryError shown as an error (``<label>: <message>``), its success as the
text the page gives.

A message is plain text and is drawn as such (``console.text.md_escape``): it often carries what an
operator typed or a store holds (a rollback reason, a rule id, an error naming an entity), and
Streamlit's alerts read Markdown.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

import streamlit as st

from console.text import md_escape
from engine.core.errors import DiscoveryError

T = TypeVar("T")


class Kind(StrEnum):
    """How a message is drawn."""

    SUCCESS = "success"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


ICONS = {
    Kind.SUCCESS: ":material/check_circle:",
    Kind.INFO: ":material/info:",
    Kind.WARNING: ":material/warning:",
    Kind.ERROR: ":material/error:",
}

#: What ``act`` flashes on success: a text, or a function of the engine call's result giving the
#: text or (kind, text); None: "<label>: done".
Done = str | Callable[[Any], "str | tuple[str, str]"] | None


@dataclass(frozen=True)
class Feedback:
    """The message of one page, kept in ``st.session_state[key]`` as (kind, text)."""

    key: str

    def flash(self, text: str, kind: str = Kind.SUCCESS) -> None:
        """Keep ``text`` to be drawn at the page's next run (replacing any message not drawn yet)."""
        st.session_state[self.key] = (str(Kind(kind)), text)

    def show(self, *, keep: bool = False) -> None:
        """Draw the kept message, if any; ``keep`` leaves it for the next run too (a polling fragment
        that redraws itself every few seconds keeps showing it until the next action replaces it)."""
        message = st.session_state.get(self.key) if keep else st.session_state.pop(self.key, None)
        if message:
            kind, text = Kind(message[0]), message[1]
            getattr(st, kind.value)(md_escape(text), icon=ICONS[kind])

    def act(self, label: str, fn: Callable[..., T], *args: Any, done: Done = None, **kwargs: Any) -> T | None:
        """``fn(*args, **kwargs)``; a DiscoveryError becomes the error ``<label>: <message>`` (just the message
        when ``label`` is empty) and None is returned; otherwise ``done`` is flashed and the result returned."""
        try:
            result = fn(*args, **kwargs)
        except DiscoveryError as exc:
            self.flash(f"{label}: {exc}" if label else str(exc), Kind.ERROR)
            return None
        outcome = f"{label}: done" if done is None else done(result) if callable(done) else done
        kind, text = (Kind.SUCCESS, outcome) if isinstance(outcome, str) else outcome
        self.flash(text, kind)
        return result


__all__ = ["Done", "Feedback", "ICONS", "Kind"]
