"""Telling people: notification channels fed from the outbox with retries and a delivery log, and the
Prometheus exporter that serves the ops DB's figures on /metrics.

It sits above rollout and tuning (it reads their state to describe it) and below bench.
See the README's Architecture section for how the areas fit together.
"""
