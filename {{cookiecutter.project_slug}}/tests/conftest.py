"""Shared fixtures: the project folder and a fresh copy of its config.json."""

import json
from pathlib import Path
from typing import Any

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def project_root() -> Path:
    return PROJECT_ROOT


@pytest.fixture
def config() -> dict[str, Any]:
    """The shipped config.json, read anew for each test so a test may change it freely."""
    return json.loads((PROJECT_ROOT / "config.json").read_text(encoding="utf-8"))
