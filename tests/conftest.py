import signal
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# A test run started in the background (`cmd &` in a script) has SIGINT ignored, and so would every command the tests
# start (an ignored signal stays ignored across exec): the Ctrl-C tests need it delivered.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
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
