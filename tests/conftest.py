"""Fixtures every suite may use."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.real_model import real_model_path


@pytest.fixture(scope="session")
def real_gguf() -> Path:
    """Gemma 3 270M Q4_K_M (253 MB): skips outside CI when it cannot be fetched, fails under CI=true."""
    return real_model_path()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A test that uses the real model is marked, so `-m real_model` (or `-m "not real_model"`) selects it.
    for item in items:
        if "real_gguf" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.real_model)
