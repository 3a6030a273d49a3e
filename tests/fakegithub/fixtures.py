"""pytest plugin: ``pytest_plugins = ["tests.fakegithub.fixtures"]``."""

from __future__ import annotations

import pytest

from tests.fakegithub.server import FakeGitHub


@pytest.fixture
def fake_github(tmp_path):
    """A started FakeGitHub; the test fails if any request or response broke the spec."""
    fake = FakeGitHub(tmp_path / "fakegithub").start()
    try:
        yield fake
    finally:
        fake.stop()
    if fake.validation_errors:
        pytest.fail("fake GitHub saw requests/responses that do not match GitHub's OpenAPI "
                    "description:\n\n" + "\n\n".join(fake.validation_errors), pytrace=False)
