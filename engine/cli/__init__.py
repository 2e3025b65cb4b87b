"""`python -m engine ...` (and the `discovery-ops` script): a thin adapter per area over the library;
errors an operator can fix become one line on stderr and exit code 2.

See the README's Architecture section for how the areas fit together.
"""
