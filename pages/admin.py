"""Admin: who may do what. The role map (each principal's role, who changed it and when), what each role may
do, and — for an admin — grant, remove, revoke a person's sessions and load a role file.

Thin: every change is one engine.store.access call (it checks the admin role itself and audits the change in
the same transaction); console.admin_view makes the tables and the messages. Everyone may read this page;
the buttons are disabled, with the role they need, for anyone who is not an admin.
`python -m engine access ...` does the same on the command line.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import streamlit as st

from console import admin_view as adv
from console.feedback import Feedback
from console.identity import actor, needs, operator_field
from console.services import call, get_services
from console.text import md_escape
from engine.store.access import grant, list_roles, remove, revoke_sessions, seed

ss = st.session_state
services = get_services()
ops = services.ops
operator_field()  # who is acting in this tab (console.identity)

st.title("Admin")
st.caption(
    "Roles are given to a verified e-mail address, to a group of the provider's groups claim (group:sre) or to "
    "a command-line user (cli:alice). A person's role is the highest of the entries that match them; anyone "
    "signed in and not in the map is a viewer. Every change is audited (Audit page). The command line does the "
    "same: `python -m engine access list|grant|remove|revoke-sessions|seed`."
)

feedback = Feedback("admin_flash")
assign_hint = needs("access.assign")
revoke_hint = needs("access.revoke_sessions")


def do_grant() -> None:
    principal, role, note = ss["admin_principal"], ss["admin_role"], ss["admin_note"]
    feedback.act("Grant", lambda: grant(ops, actor(), principal, role, note=note), done=adv.granted)


def do_remove() -> None:
    principal = ss["admin_remove_principal"]
    feedback.act("Remove", lambda: remove(ops, actor(), principal), done=lambda ok: adv.removed(principal, ok))


def do_revoke() -> None:
    principal = ss["admin_revoke_principal"]
    feedback.act("Revoke sessions", lambda: revoke_sessions(ops, actor(), principal), done=adv.revoked(principal))


def do_seed() -> None:
    upload = ss.get("admin_seed_file")
    if upload is None:
        feedback.flash("Load role file: choose a JSON role file first.", "warning")
        return
    name = Path(upload.name).name or "roles.json"
    with tempfile.TemporaryDirectory(dir=services.settings.data_dir) as tmp:  # inside the private data dir
        path = Path(tmp) / name
        path.write_bytes(upload.getvalue())
        feedback.act("Load role file", lambda: seed(ops, actor(), path), done=lambda es: adv.seeded(es, name))


feedback.show()

st.header("Role map")
entries = call(list_roles, ops)
if entries:
    st.dataframe(adv.roles_frame(entries), hide_index=True, width="stretch", key="admin_roles")
else:
    st.info(
        "The role map is empty: everyone signed in is a viewer, and the command line acts as admin until the "
        "first role is given."
    )
with st.expander("What each role may do"):
    st.dataframe(adv.roles_help_frame(), hide_index=True, width="stretch", key="admin_roles_help")

st.header("Change")
if assign_hint:
    st.caption(f"Only an admin changes roles ({md_escape(assign_hint)}).")
with st.container(horizontal=True, vertical_alignment="bottom"):
    st.text_input("Principal", key="admin_principal", placeholder="alice@example.com, group:sre or cli:alice")
    st.selectbox("Role", adv.ROLE_NAMES, index=1, key="admin_role", width=160)
    st.text_input("Note (why)", key="admin_note", max_chars=200)
    st.button(
        "Grant",
        key="admin_grant",
        on_click=do_grant,
        disabled=bool(assign_hint),
        help=assign_hint,  # md-safe: needs() is a constant line
    )

principals = [e.principal for e in entries]
with st.container(horizontal=True, vertical_alignment="bottom"):
    st.selectbox("Remove from the map", principals, index=None, key="admin_remove_principal", placeholder="choose")
    st.button(
        "Remove",
        key="admin_remove",
        on_click=do_remove,
        disabled=bool(assign_hint) or not principals,
        help=assign_hint or "They become viewers.",  # md-safe: needs() is a constant line
    )

with st.container(horizontal=True, vertical_alignment="bottom"):
    st.text_input(
        "Revoke the sessions of",
        key="admin_revoke_principal",
        placeholder="alice@example.com",
        help="Every console session of this person signed in before now stops acting at its next click.",
    )
    st.button(
        "Revoke sessions",
        key="admin_revoke",
        on_click=do_revoke,
        disabled=bool(revoke_hint),
        help=revoke_hint,  # md-safe: needs() is a constant line
    )

with st.container(horizontal=True, vertical_alignment="bottom"):
    st.file_uploader(
        "Role file (JSON)",
        type=["json"],
        key="admin_seed_file",
        help='{"roles": {"alice@example.com": "admin", "group:sre": "operator"}}: every entry is checked first, '
        "then all are loaded in one audited change.",
    )
    st.button(
        "Load role file",
        key="admin_seed",
        on_click=do_seed,
        disabled=bool(assign_hint),
        help=assign_hint,  # md-safe: needs() is a constant line
    )
