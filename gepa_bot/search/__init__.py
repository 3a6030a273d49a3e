"""The search: a GEPA run over the repository's prompts, within a hard budget, ending in a RunResult.

session.py opens a run (config, discovery, suite, cache, models, budget), adapter.py is gepa's adapter (scores
candidates with the evals), reflection*.py and edits.py propose new prompts with the reflection model (llm.py),
engine.py drives gepa and writes result.json. It uses the lower layers (evals/, models/, the top-level modules)
and is used only by the entry points (cli.py, doctor.py, github/action.py); see docs/architecture.md.
"""
