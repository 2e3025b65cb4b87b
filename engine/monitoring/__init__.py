"""What happened and whether it is healthy: one metric event per run (SQLite + rotating JSONL),
aggregates over windows, alert rules with states and history, and reports in Markdown, JSON and HTML.

See the README's Architecture section for how the areas fit together.
"""
