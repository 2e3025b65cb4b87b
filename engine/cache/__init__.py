"""Fast reads of hypotheses: an LRU+TTL cache bounded in bytes, a read/write-through GraphStore wrapper
kept in step with other processes' writes, cache warming, the console's cache service and its statistics.

See the README's Architecture section for how the areas fit together.
"""
