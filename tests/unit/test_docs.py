"""Generated documentation must stay in step with its source: settings.toml and the README's
configuration table (from the settings core and the built-in plugins declare), the order of
settings sources (README, `aribot config --help`), and the sample Asterisk files in
docs/asterisk.md (rendered by the sandbox's own ``LabConfig``, so the samples are the files every
integration test runs Asterisk with).

Regenerate them with: .venv/bin/python -m tests.unit.test_docs
"""

from __future__ import annotations

import re
from pathlib import Path

from aribot.core.app import installed_settings
from aribot.core.cli import build_parser
from aribot.core.settings import SOURCES_ORDER, env_name, render_defaults, toml_value
from aribot.sandbox.asterisk_config import LabConfig

REPO = Path(__file__).resolve().parents[2]
BEGIN, END = "<!-- settings-table:begin -->", "<!-- settings-table:end -->"
ASTERISK_DOC = REPO / "docs" / "asterisk.md"
SAMPLES = ("http.conf", "ari.conf", "extensions.conf", "pjsip.conf", "rtp.conf")
# The values the samples show; the sandbox uses free ports and random passwords instead.
SAMPLE_CONFIG = LabConfig(
    etc_dir="/etc/asterisk", var_dir="/var/lib/asterisk", mod_dir="/usr/lib/asterisk/modules", app="aribot",
    http_port=8088, sip_port=5060, rtp_start=10000, rtp_end=20000, ari_username="aribot",
    ari_password="change-me", phone_password="change-me-too",
)  # fmt: skip


def sample_block(name: str) -> str:
    return f"<!-- sample:{name} -->\n```ini\n{SAMPLE_CONFIG.files()[name].rstrip()}\n```\n<!-- /sample:{name} -->"


def render_asterisk_doc(text: str) -> str:
    """``text`` with every sample block (or bare ``<!-- sample:NAME -->`` marker) re-rendered."""
    for name in SAMPLES:
        pattern = re.compile(rf"<!-- sample:{re.escape(name)} -->(?:.*?<!-- /sample:{re.escape(name)} -->)?", re.S)
        text = pattern.sub(lambda _m, n=name: sample_block(n), text, count=1)
    return text


def settings_table() -> str:
    rows = ["| setting | env var | default | owner | meaning |", "|---|---|---|---|---|"]
    for owner, setting in installed_settings():
        value = toml_value(setting.default).replace("|", "\\|")
        rows.append(f"| `{setting.key}` | `{env_name(setting.key)}` | `{value}` | {owner} | {setting.doc} |")
    return "\n".join(rows)


def test_settings_toml_is_the_declared_defaults() -> None:
    """The repository's settings.toml is what `aribot config --defaults` prints on a fresh install:
    every key core and the built-in plugins declare, with its default and one-line comment."""
    assert (REPO / "settings.toml").read_text() == render_defaults(installed_settings()), (
        "settings.toml is stale: run python -m tests.unit.test_docs")
    for line in (REPO / "settings.toml").read_text().splitlines():
        if re.match(r"^\w+\s*=", line):
            assert re.search(r" # \S", line), f"settings.toml: no one-line comment on {line!r}"


def test_readme_table_matches_settings() -> None:
    readme = (REPO / "README.md").read_text()
    current = readme.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    assert current == settings_table(), "README settings table is stale: run python -m tests.unit.test_docs"


def test_sources_order_is_stated_in_the_readme_and_config_help() -> None:
    readme = (REPO / "README.md").read_text()
    assert f"```text\n{SOURCES_ORDER}\n```" in readme
    config = build_parser()._subparsers._group_actions[0].choices["config"]
    assert SOURCES_ORDER in config.format_help()


def test_asterisk_doc_samples_are_the_sandbox_files() -> None:
    text = ASTERISK_DOC.read_text()
    for name in SAMPLES:
        assert sample_block(name) in text, f"docs/asterisk.md: {name} is stale: run python -m tests.unit.test_docs"
    assert "Stasis(aribot,${FILTER(0-9*#+,${EXTEN})})" in text and "password = change-me-too" in text
    assert "exten => _X.,1,NoOp(aribot-lab inbound ${EXTEN})\n same => n,Stasis(aribot,${EXTEN})" not in text


if __name__ == "__main__":
    ASTERISK_DOC.write_text(render_asterisk_doc(ASTERISK_DOC.read_text()))
    readme_path = REPO / "README.md"
    text = readme_path.read_text()
    head, rest = text.split(BEGIN, 1)
    readme_path.write_text(head + BEGIN + "\n" + settings_table() + "\n" + END + rest.split(END, 1)[1])
    (REPO / "settings.toml").write_text(render_defaults(installed_settings()))
