"""The eval suite registry: every suite type's config class, by its ``type:`` value.

A suite config validates its own section of `.gepa-bot.yml` and has ``build(context) -> EvalSuite``;
adding a suite type means adding its config class to ``SUITE_CONFIGS``.
"""

from __future__ import annotations

from typing import Annotated, Union

from pydantic import Field

from gepa_bot.suites.command_suite import CommandSuiteConfig
from gepa_bot.suites.junit_suite import PytestSuiteConfig
from gepa_bot.suites.promptfoo_suite import PromptfooSuiteConfig

SUITE_CONFIGS = (CommandSuiteConfig, PytestSuiteConfig, PromptfooSuiteConfig)
SuiteConfig = Annotated[Union[CommandSuiteConfig, PytestSuiteConfig, PromptfooSuiteConfig],  # noqa: UP007
                        Field(discriminator="type")]
