"""Fixtures: bake the template once per session."""

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def default_project(cookies_session) -> Path:
    """The project baked with every default answer."""
    result = cookies_session.bake()
    assert result.exit_code == 0, result.exception
    return Path(result.project_path)
