"""Column configurations shared by the console's tables."""

import streamlit as st

#: For frames made by console.format.hypotheses_frame.
HYPOTHESIS_COLUMN_CONFIG = {
    "entity": st.column_config.TextColumn("Entity"),
    "pattern": st.column_config.TextColumn("Pattern"),
    "category": st.column_config.TextColumn("Category"),
    "confidence": st.column_config.ProgressColumn(
        "Confidence", min_value=0.0, max_value=1.0, format="%.2f", color="blue"
    ),
    "status": st.column_config.TextColumn("Status"),
    "accepts": st.column_config.NumberColumn("Accepts", format="%d"),
    "weak_accepts": st.column_config.NumberColumn("Weak accepts", format="%d"),
    "rejects": st.column_config.NumberColumn("Rejects", format="%d"),
    "no_progress": st.column_config.NumberColumn("No progress", format="%d"),
    "last_delta": st.column_config.NumberColumn("Last Δ", format="%+.2f"),
    "updated": st.column_config.DatetimeColumn("Updated (UTC)", format="YYYY-MM-DD HH:mm:ss"),
    "id": st.column_config.TextColumn("Hypothesis id"),
}
