"""Operation over the catalogue after a rollout: the budget-aware production scheduler that keeps running
discovery with the live assignments, and the actionable feed the people the system exists for read.

It sits above rollout (it reads the assignments and the live config a rollout leaves) and below bench.
See the README's Architecture section for how the areas fit together.
"""
