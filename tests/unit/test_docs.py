"""The README's configuration table is generated from settings.toml and must stay in step.

Regenerate it with: .venv/bin/python -m tests.unit.test_docs
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BEGIN, END = "<!-- settings-table:begin -->", "<!-- settings-table:end -->"


def settings_table() -> str:
    rows = ["| setting | env var | default | meaning |", "|---|---|---|---|"]
    section = None
    for line in (REPO / "settings.toml").read_text().splitlines():
        if header := re.match(r"^\[([\w.]+)\]", line):
            section = header.group(1)
            continue
        entry = re.match(r"^(\w+)\s*=\s*(.+?)\s*#\s*(.*)$", line)
        if entry and section:
            key, value, comment = entry.groups()
            value = value.replace("|", "\\|")
            env = "ARIBOT_" + f"{section}.{key}".upper().replace(".", "__")
            rows.append(f"| `{section}.{key}` | `{env}` | `{value}` | {comment} |")
    return "\n".join(rows)


def test_every_setting_has_a_comment() -> None:
    for line in (REPO / "settings.toml").read_text().splitlines():
        if re.match(r"^\w+\s*=", line):
            assert "#" in line, f"settings.toml: no one-line comment on {line!r}"


def test_readme_table_matches_settings() -> None:
    readme = (REPO / "README.md").read_text()
    current = readme.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    assert current == settings_table(), "README settings table is stale: run python -m tests.unit.test_docs"


if __name__ == "__main__":
    readme_path = REPO / "README.md"
    text = readme_path.read_text()
    head, rest = text.split(BEGIN, 1)
    readme_path.write_text(head + BEGIN + "\n" + settings_table() + "\n" + END + rest.split(END, 1)[1])
