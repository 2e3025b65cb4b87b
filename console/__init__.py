"""Streamlit-side helpers shared by the pages (services, formatting, charts).

Dependencies point one way: pages -> console -> engine. Nothing here connects
to a store at import time.
"""
