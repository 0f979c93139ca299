"""The scoring suite: ``fusionserve score`` against the in-process limit of the same bundle,
and its peak memory on 10x and 100x the rows (issue 29)."""
