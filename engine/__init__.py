"""Discovery Ops engine: the product's logic. Imports nothing from streamlit."""
