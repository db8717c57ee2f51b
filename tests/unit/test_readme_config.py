"""The README's configuration table names every setting, so an operator never has to read
config.py to find a knob."""

from __future__ import annotations

from pathlib import Path

from tokenbridge.config import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_setting_is_documented_in_the_readme() -> None:
    text = README.read_text(encoding="utf-8")
    table = text[text.index("## Configuration") :]
    missing = [
        f"TOKENBRIDGE_{name.upper()}" for name in Settings.model_fields if f"`TOKENBRIDGE_{name.upper()}`" not in table
    ]
    assert missing == [], f"add these to README.md's configuration table: {missing}"


def test_readme_opens_with_the_two_commands() -> None:
    head = README.read_text(encoding="utf-8")[:600]
    assert "make demo" in head
    assert "make test" in head
