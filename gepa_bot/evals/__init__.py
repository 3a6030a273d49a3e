"""Running the repository's own evals on a candidate: the suite contract, the suite types, where batches run, caching.

A lower layer: it imports the top-level modules (config, evalkit, redact, owned, errors) and nothing of
search/, models/, report/ or github/ (see docs/architecture.md).
"""
