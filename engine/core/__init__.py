"""The product's vocabulary, shared by every area: errors, settings, the domain model and its lifecycle,
ParameterConfig, which config is live or candidate, and the one percentile rule. Imports no other area.

See the README's Architecture section for how the areas fit together.
"""
