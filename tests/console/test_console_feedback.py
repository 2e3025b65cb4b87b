"""console.feedback: a button's outcome survives the rerun, once; act turns a DiscoveryError into the
page's one-line error and a success into the page's text, drawn as text (never as Markdown)."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from console.text import md_escape
from tests.support.console_env import as_shown, tracking_pixel


def page():
    import streamlit as st

    from console.feedback import Feedback
    from engine.core.errors import ConfigError

    feedback = Feedback("test_flash")

    def fails():
        raise ConfigError("threshold must be a number")

    def rolled_back(performed):
        return {"performed": performed}

    st.button(
        "ok",
        key="ok",
        on_click=feedback.act,
        args=("Save", lambda x: x * 2, 21),
        kwargs={"done": lambda n: f"Save: {n} saved"},
    )
    st.button("default", key="default", on_click=feedback.act, args=("Promote", lambda: None))
    st.button("plain", key="plain", on_click=feedback.act, args=("Pause", lambda: 1), kwargs={"done": "Pause: asked"})
    st.button("bad", key="bad", on_click=feedback.act, args=("Save", fails))
    st.button("unlabelled", key="unlabelled", on_click=feedback.act, args=("", fails))
    st.button(
        "warn",
        key="warn",
        on_click=feedback.act,
        args=("Rollback", rolled_back, False),
        kwargs={"done": lambda r: ("success" if r["performed"] else "warning", "Rollback: nothing to undo")},
    )
    feedback.show(keep=bool(st.session_state.get("keep")))


def shown(at: AppTest) -> list[tuple[str, str]]:
    """(kind, what a person reads) of each message drawn."""
    return (
        [("success", as_shown(e.value)) for e in at.success]
        + [("warning", as_shown(e.value)) for e in at.warning]
        + [("error", as_shown(e.value)) for e in at.error]
    )


def test_act_flashes_the_outcome_once():
    at = AppTest.from_function(page).run()
    assert shown(at) == []
    at.button(key="ok").click().run()
    assert shown(at) == [("success", "Save: 42 saved")]
    assert at.success[0].icon == ":material/check_circle:"
    at.run()
    assert shown(at) == []  # drawn once, then gone
    at.button(key="default").click().run()
    assert shown(at) == [("success", "Promote: done")]
    at.button(key="plain").click().run()
    assert shown(at) == [("success", "Pause: asked")]
    at.button(key="bad").click().run()
    assert shown(at) == [("error", "Save: threshold must be a number")]
    at.button(key="unlabelled").click().run()
    assert shown(at) == [("error", "threshold must be a number")]
    at.button(key="warn").click().run()
    assert shown(at) == [("warning", "Rollback: nothing to undo")]


def test_show_keep_leaves_the_message_for_the_next_run():
    at = AppTest.from_function(page)
    at.session_state["keep"] = True
    at.run()
    at.button(key="bad").click().run()
    at.run()
    assert shown(at) == [("error", "Save: threshold must be a number")]


def hostile_page():
    import streamlit as st

    from console.feedback import Feedback
    from engine.core.errors import ConfigError

    feedback = Feedback("test_flash")
    text = st.session_state["text"]

    def fails():
        raise ConfigError(f"no rule {text!r}")

    st.button("ok", key="ok", on_click=feedback.act, args=("Ack", lambda: text), kwargs={"done": lambda t: f"ok {t}"})
    st.button("bad", key="bad", on_click=feedback.act, args=("Ack", fails))
    feedback.show()


def test_messages_carrying_data_are_drawn_as_text():
    """Issue 11, case 8: a message naming what an operator typed shows it, Markdown and all, as characters."""
    text = f"Mallory {tracking_pixel('http://127.0.0.1:9/t.png')} [click](javascript:alert(1)) :red[x]"
    at = AppTest.from_function(hostile_page)
    at.session_state["text"] = text
    at.run()
    at.button(key="ok").click().run()
    assert [e.value for e in at.success] == [md_escape(f"ok {text}")]
    at.button(key="bad").click().run()
    assert [e.value for e in at.error] == [md_escape(f"Ack: no rule {text!r}")]
    assert shown(at) == [("error", f"Ack: no rule {text!r}")]
