import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO.parent / "shared" / "fixtures"


@pytest.fixture
def fixtures_dir() -> Path:
    if not FIXTURES.is_dir():
        pytest.skip("../shared/fixtures is absent (reference data lives beside the repository)")
    return FIXTURES


def sg3stream_cmd(*args: str) -> list[str]:
    """The CLI as a subprocess, with the interpreter running the tests."""
    return [sys.executable, "-m", "sg3stream", *args]


@pytest.fixture(autouse=True)
def _no_color(monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "120")
    yield
