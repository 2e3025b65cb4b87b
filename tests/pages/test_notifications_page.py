"""Notifications page (AppTest through streamlit_app.py) and its pure view: add a webhook, send a test that
a local receiver gets, the delivery log with its filters, a silence (audited), and no URL token on the page."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from console import notify_view as nv
from engine.notify import store as ns
from engine.store.opsdb import open_ops_db
from tests.support.actors import ADMIN, OPERATOR, VIEWER
from tests.support.console_env import as_shown
from tests.support.receivers import WebhookReceiver

APP = Path(__file__).resolve().parents[2] / "streamlit_app.py"
PAGE = "pages/notifications.py"


def open_page() -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    at.switch_page(PAGE).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def page_text(at: AppTest) -> str:
    parts = [as_shown(str(e.value)) for e in (*at.markdown, *at.caption, *at.success, *at.error, *at.warning, *at.info)]
    parts += [d.value.to_csv() for d in at.dataframe]
    return "\n".join(parts)


@pytest.fixture
def hook():
    r = WebhookReceiver().start()
    try:
        yield r
    finally:
        r.stop()


def test_add_a_webhook_send_a_test_and_see_it_in_the_log(console_env, hook):
    at = open_page()
    at.text_input(key="nf_name").input("on-call")
    at.text_input(key="nf_url").input(hook.url)
    at.button(key="FormSubmitter:nf_add-Add channel").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("Channel on-call added" in as_shown(s.value) for s in at.success), page_text(at)
    at.button(key="ne_test").click().run()
    assert any("test message delivered to on-call" in as_shown(s.value) for s in at.success), page_text(at)
    assert [p["body"]["topic"] for p in hook.posts] == ["notify.test"]
    log = next(d.value for d in at.dataframe if "attempts" in d.value.columns)
    assert list(log["state"]) == ["sent"] and list(log["event"]) == ["test message"]
    text = page_text(at)
    assert "T0SECRETPATH" not in text and "abcdef123456" not in text and "127.0.0.1" in text
    ops = open_ops_db(console_env)
    [added] = ops.list_audit(action="notify.channel.add")
    assert added["actor"] == "local" and added["details"]["target"].endswith("/***")


def test_an_operator_may_silence_but_not_add_a_channel(console_env, monkeypatch):
    monkeypatch.setattr("console.identity.actor", lambda: OPERATOR)
    at = open_page()
    add = at.button(key="FormSubmitter:nf_add-Add channel")
    assert add.disabled and add.proto.help == "needs approver"
    assert not at.button(key="nf_send_now").disabled and not at.button(key="nf_start").disabled
    monkeypatch.setattr("console.identity.actor", lambda: VIEWER)
    at = open_page()
    assert at.button(key="nf_send_now").disabled and at.button(key="nf_send_now").proto.help == "needs operator"


def test_a_silence_is_added_from_the_page_and_audited(console_env):
    at = open_page()
    at.text_input(key="ns_reason").input("deploy in progress")
    at.button(key="FormSubmitter:ns_form-Silence").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("silenced until" in as_shown(s.value) for s in at.success), page_text(at)
    ops = open_ops_db(console_env)
    [audit] = ops.list_audit(action="notify.silence.add")
    assert audit["details"]["reason"] == "deploy in progress" and audit["actor"] == "local"


# --------------------------------------------------------------------------- the pure view


def _row(i: int, channel: str, state: ns.DeliveryState, topic: str, error: str = "") -> ns.DeliveryRow:
    return ns.DeliveryRow(
        id=i,
        message_id=i,
        channel_id=1,
        channel=channel,
        topic=topic,
        subject=f"subject {i}",
        key=f"k{i}",
        state=state,
        attempts=1,
        status="200" if state is ns.DeliveryState.SENT else "",
        error=error,
        created_at=1_900_000_000.0 + i,
        updated_at=1_900_000_000.0 + i,
        next_at=1_900_000_030.0 + i,
        sent_at=1_900_000_001.0 + i if state is ns.DeliveryState.SENT else None,
    )


def test_the_log_filters_by_channel_state_event_and_text_and_shows_words():
    rows = [
        _row(1, "hook", ns.DeliveryState.SENT, "alert.firing"),
        _row(2, "mail", ns.DeliveryState.PENDING, "rollout.failed", "ConnectError: refused"),
        _row(3, "hook", ns.DeliveryState.SKIPPED, "rollout.started", "trigger off for this channel"),
    ]
    assert [r.id for r in nv.filter_deliveries(rows, channels=["hook"])] == [1, 3]
    assert [r.id for r in nv.filter_deliveries(rows, states=["pending"])] == [2]
    assert [r.id for r in nv.filter_deliveries(rows, topics=["rollout.started"])] == [3]
    assert [r.id for r in nv.filter_deliveries(rows, text="refused")] == [2]
    frame = nv.deliveries_frame(rows)
    assert list(frame["event"]) == ["alert firing", "stage failed, rolling back", "rollout started"]
    assert list(frame["attempts"]) == [1, 1, 1] and str(frame["enqueued"].dtype).startswith("datetime64")
    shown = frame.to_csv()
    assert "None" not in shown and "nan" not in shown.lower() and "alert.firing" not in shown
    assert nv.delivery_counts(rows) == {"pending": 1, "sending": 0, "sent": 1, "failed (given up)": 0, "skipped": 1}


def test_a_channel_form_becomes_settings_the_engine_accepts():
    assert nv.channel_config("webhook", {"url": " https://x.example/h "}) == {"url": "https://x.example/h"}
    mail = nv.channel_config("email", {"host": "smtp.x", "port": 2525, "sender": "a@x.org", "to": "b@x.org"})
    assert ns.validate_config("email", mail)["to"] == ["b@x.org"] and mail["password_env"] == "DISCOVERY_SMTP_PASSWORD"


def test_edit_switches_a_channel_off_with_its_own_triggers(console_env):
    ops = open_ops_db(console_env)
    a = ns.add_channel(ops, name="a", kind="webhook", config={"url": "https://a.example/x"}, actor=ADMIN)
    ns.add_channel(
        ops, name="b", kind="slack", config={"url": "https://b.example/y"}, triggers=["worker.dead"], actor=ADMIN
    )
    at = open_page()
    at.selectbox(key="ne_channel").set_value(a.id + 1).run()
    assert at.multiselect(key=f"ne_triggers_{a.id + 1}").value == ["worker.dead"]
    at.selectbox(key="ne_channel").set_value(a.id).run()
    at.toggle(key=f"ne_enabled_{a.id}").set_value(False)
    at.button(key=f"FormSubmitter:ne_form_{a.id}-Save").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("Channel a saved (off" in as_shown(s.value) for s in at.success), page_text(at)
    assert ns.get_channel(ops, "a").enabled is False and ns.get_channel(ops, "b").enabled is True
    [edit] = ops.list_audit(action="notify.channel.edit")
    assert edit["details"]["changes"]["enabled"] == {"from": True, "to": False}
