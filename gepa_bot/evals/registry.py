"""The eval suite registry: the suite each ``eval:`` schema of `.gepa-bot.yml` (gepa_bot/config.py) stands for.

Adding a suite type means adding its schema to ``config.SuiteConfig`` and its suite to :func:`build_suite`.
"""

from __future__ import annotations

from gepa_bot.config import CommandSuiteConfig, PromptfooSuiteConfig, PytestSuiteConfig, SuiteConfig
from gepa_bot.evals.command_suite import CommandSuite
from gepa_bot.evals.junit_suite import PytestSuite
from gepa_bot.evals.promptfoo_suite import PromptfooSuite
from gepa_bot.evals.suite import EvalSuite, SuiteContext


def build_suite(config: SuiteConfig, context: SuiteContext) -> EvalSuite:
    """The suite the ``eval:`` section describes, for the task model and environment in ``context``."""
    if isinstance(config, CommandSuiteConfig):
        return CommandSuite(context, config.command, config.watch, config.instances, config.timeout)
    if isinstance(config, PytestSuiteConfig):
        return PytestSuite(context, config)
    if isinstance(config, PromptfooSuiteConfig):
        return PromptfooSuite(context, config)
    raise TypeError(f"no suite for {type(config).__name__}")
