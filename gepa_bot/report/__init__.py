"""A finished run as Markdown: the PR body, the verdict (worth a PR?), the variants and chart, the job summary.

Reads only result.json's model (gepa_bot/result.py), the run log's records and the top-level helpers (escaping,
redact): nothing of search/, evals/ or models/, so the CLI and github/ render any saved run (see
docs/architecture.md). The Jinja templates are in templates/.
"""
