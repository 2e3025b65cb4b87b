"""Discovery Ops console: the page list and the sign-in gate in front of it, nothing else.

Each page is one file under pages/; add yours with one line below. console.identity.gate() decides
first whether this run may show them: with sign-in configured, a tab nobody signed in to gets only the
sign-in screen (whatever URL it opened); with sign-in off, each page carries a banner saying so; on a
non-loopback address without sign-in the console shows only its refusal.
"""

import streamlit as st

from console.identity import gate
from engine.core.settings import make_process_private

# before anything is created: the console's files in the data dir (and a graph server it starts) are owner-only
make_process_private()

#: below this window width the sidebar starts collapsed. Streamlit's "auto" collapses it only up to 768 px; at
#: 900 px it took a third of the screen and squeezed the pages (tiles "E… 3..", buttons without labels).
NARROW_PX = 1000
#: On a first visit narrower than NARROW_PX, close the sidebar once (its own button), then forget that this
#: script did it (Streamlit remembers a click in localStorage): a wider window later opens with it, and an
#: operator who opens or closes it themselves is never overruled (their choice is kept by Streamlit).
COLLAPSE_WHEN_NARROW = f"""<script>
(() => {{
  const KEY = "stSidebarCollapsed-";
  const chosen = () => Object.keys(window.localStorage).filter((k) => k.startsWith(KEY));
  if (window.innerWidth >= {NARROW_PX} || chosen().length) return;
  const collapse = (tries) => {{
    const sidebar = document.querySelector('[data-testid="stSidebar"]');
    const button = document.querySelector('[data-testid="stSidebarCollapseButton"] button');
    if (sidebar && button && sidebar.getAttribute("data-collapsed") === "false") {{
      button.click();
      setTimeout(() => chosen().forEach((k) => window.localStorage.removeItem(k)), 0);
    }} else if (tries > 0 && !(sidebar && sidebar.getAttribute("data-collapsed") === "true")) {{
      setTimeout(() => collapse(tries - 1), 100);
    }}
  }};
  collapse(50);
}})();
</script>"""

st.set_page_config(
    page_title="Discovery Ops",
    page_icon=":material/travel_explore:",
    layout="wide",
    initial_sidebar_state="auto",  # collapsed on phones by Streamlit; up to NARROW_PX by COLLAPSE_WHEN_NARROW
)
st.sidebar.html(COLLAPSE_WHEN_NARROW, unsafe_allow_javascript=True, width="content")  # md-safe: a constant

PAGES = [
    st.Page("pages/overview.py", title="Overview", icon=":material/dashboard:", default=True),
    st.Page("pages/hypotheses.py", title="Hypotheses", icon=":material/lightbulb:"),
    st.Page("pages/actionable.py", title="Actionable", icon=":material/verified:"),
    st.Page("pages/rollout.py", title="Rollout", icon=":material/rocket_launch:"),
    st.Page("pages/production.py", title="Production", icon=":material/autorenew:"),
    st.Page("pages/configs.py", title="Configs", icon=":material/settings:"),
    st.Page("pages/alerts.py", title="Alerts", icon=":material/notifications:"),
    st.Page("pages/reports.py", title="Reports", icon=":material/summarize:"),
    st.Page("pages/tuning.py", title="Tuning", icon=":material/tune:"),
    st.Page("pages/cache.py", title="Cache", icon=":material/memory:"),
    st.Page("pages/notifications.py", title="Notifications", icon=":material/campaign:"),
    st.Page("pages/audit.py", title="Audit", icon=":material/history:"),
    st.Page("pages/admin.py", title="Admin", icon=":material/admin_panel_settings:"),
]

blocked = gate()  # the sign-in screen or the refusal instead of the pages
if blocked is None:
    st.navigation(PAGES).run()
else:
    st.navigation([st.Page(blocked, title="Sign in", default=True)], position="hidden").run()
