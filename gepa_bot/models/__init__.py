"""Talking to models: one chat-completion call (litellm, or direct HTTP to a local server) and the embedded models.

A lower layer: it imports only the top-level modules (errors, redact) and itself, never evals/, search/,
report/ or github/ (see docs/architecture.md). The search's metered reflection client is search/llm.py.
"""
