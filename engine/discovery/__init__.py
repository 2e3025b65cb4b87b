"""The discovery system itself: EIG, the new and old systems, evidence sources (simulated world,
HTTP evaluator, replay), running graph entities live or in shadow, scorecards, the entity view and demo traffic.

See the README's Architecture section for how the areas fit together.
"""
