"""The two stores and how data lives in them: FalkorDB (connections, GraphStore, batched async queries,
the row codec) for the domain graph, and the OpsDB (SQLite, per-area migrations) for operations state.

See the README's Architecture section for how the areas fit together.
"""
