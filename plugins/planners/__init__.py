"""Built-in planners (matching task): `topk`, `greedy`, `dual` (offline and online)."""
