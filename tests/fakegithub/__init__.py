"""A fake GitHub server for tests (see README.md)."""

from tests.fakegithub.server import ACTIONS_LOGIN, ACTIONS_PR_MESSAGE, FakeGitHub

__all__ = ["ACTIONS_LOGIN", "ACTIONS_PR_MESSAGE", "FakeGitHub"]
