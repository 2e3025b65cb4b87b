"""The organisations the system watches: templates (patterns and channels), the deterministic
demo catalogue generator, and validated CSV/JSON import of your own entities.

See the README's Architecture section for how the areas fit together.
"""
