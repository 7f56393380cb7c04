"""The README's table of environment variables and the settings that read them agree: an
operator who sets a documented variable changes something, and every variable the
settings read is documented (the fault-injection pauses of the tests excepted)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEST_ONLY = {
    "PRIVACY_FAULT_PAUSE_SECONDS",
    "DASHBOARD_FAULT_PAUSE_SECONDS",
    "LEARNING_FAULT_PAUSE_SECONDS",
    "DECISION_LOG_FAULT_PAUSE_SECONDS",
}


def _read_by_settings() -> set[str]:
    source = (ROOT / "personalization" / "settings.py").read_text()
    return set(re.findall(r"""env(?:\.\w+)?\(\s*["']([A-Z][A-Z0-9_]*)["']""", source)) | set(
        re.findall(r"""_required\(\s*["']([A-Z][A-Z0-9_]*)["']""", source)
    )


def _documented() -> set[str]:
    rows = [
        line.split("|")[1]
        for line in (ROOT / "README.md").read_text().splitlines()
        if re.match(r"\| `[A-Z]", line)
    ]
    names = {name for cell in rows for name in re.findall(r"`([A-Z][A-Z0-9_]*)`", cell)}
    return names - {"HTTP_X_REAL_IP"}  # an example value in a description, not a variable


def test_readme_table__every_variable__is_read_by_the_settings() -> None:
    documented, read = _documented(), _read_by_settings()
    assert len(documented) > 20, documented
    assert sorted(documented - read) == []


def test_settings__every_variable_read__is_in_the_readme_table() -> None:
    documented, read = _documented(), _read_by_settings()
    assert "DATABASE_URL" in read and "DECIDE_REDIS_URL" in read, read
    assert sorted(read - documented - TEST_ONLY) == []
