"""Long work in worker processes: the jobs table, leases and heartbeats, pause/resume/cancel controls,
the registry of job kinds and the detached worker that runs them.

See the README's Architecture section for how the areas fit together.
"""
