"""Discovery Ops console: the page list and nothing else.

Each page is one file under pages/; add yours with one line below.
"""

import streamlit as st

from engine.core.settings import make_process_private

# before anything is created: the console's files in the data dir (and a graph server it starts) are owner-only
make_process_private()

st.set_page_config(page_title="Discovery Ops", page_icon=":material/travel_explore:", layout="wide")

PAGES = [
    st.Page("pages/overview.py", title="Overview", icon=":material/dashboard:", default=True),
    st.Page("pages/hypotheses.py", title="Hypotheses", icon=":material/lightbulb:"),
    st.Page("pages/rollout.py", title="Rollout", icon=":material/rocket_launch:"),
    st.Page("pages/configs.py", title="Configs", icon=":material/settings:"),
    st.Page("pages/alerts.py", title="Alerts", icon=":material/notifications:"),
    st.Page("pages/reports.py", title="Reports", icon=":material/summarize:"),
    st.Page("pages/tuning.py", title="Tuning", icon=":material/tune:"),
    st.Page("pages/cache.py", title="Cache", icon=":material/memory:"),
]

st.navigation(PAGES).run()
