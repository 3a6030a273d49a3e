"""gepa-bot: optimize the prompts in a repository with GEPA and open a pull request."""

__version__ = "0.1.0"
