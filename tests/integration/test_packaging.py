"""The wheel as a user gets it: built from the checkout, installed (not editable) into a fresh
virtualenv with nothing but its declared dependencies (from .venv/wheelhouse, no index), and run
from a folder outside the checkout: `aribot --version`, `config`, `plugins`, and `serve` against the
lab Asterisk with the dashboard and the local voice backend until /healthz answers."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import stat
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

import aribot
from aribot.sandbox.asterisk import AsteriskLab
from aribot.sandbox.ports import free_tcp_port, free_udp_port_range
from tests.lab.serve import wait_healthy

REPO = Path(__file__).resolve().parents[2]
WHEELHOUSE = Path(sys.executable).resolve().parent.parent / "wheelhouse"
if not WHEELHOUSE.is_dir():  # sys.executable may be a symlink into the base Python
    WHEELHOUSE = Path(sys.prefix) / "wheelhouse"
PACKAGE_DIRS = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]


@dataclass
class Installed:
    wheel: Path
    venv: Path
    run: Path   # an empty folder outside the checkout, the working directory of every command

    def env(self, **extra: str) -> dict[str, str]:
        """A bare environment: no PYTHONPATH, no ARIBOT_ or quickstart variables."""
        return {"PATH": f"{self.venv / 'bin'}:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(self.run),
                "LANG": "C.UTF-8"} | extra

    def aribot(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.venv / "bin" / "aribot"), *args], cwd=self.run, env=self.env(**env),
                              capture_output=True, text=True, timeout=120)


def tracked_files() -> list[str]:
    """The files of the checkout that git keeps (committed or not yet), as a clean clone has them."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                         capture_output=True, check=True)
    return [name for name in out.stdout.decode().split("\0") if name and (REPO / name).is_file()]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    if not any(WHEELHOUSE.glob("*.whl")):
        pytest.fail(f"no dependency wheels in {WHEELHOUSE}: run scripts/setup")
    work = tmp_path_factory.mktemp("packaging")
    source = work / "source"
    for name in tracked_files():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, source / name)
    pip = [sys.executable, "-m", "pip", "--isolated", "--disable-pip-version-check", "-q"]
    subprocess.run(pip + ["wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(work / "dist"),
                          str(source)], check=True, timeout=300)
    (wheel,) = (work / "dist").glob("aribot-*.whl")
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "--isolated", "--disable-pip-version-check", "-q",
                    "install", "--no-index", "--find-links", str(WHEELHOUSE), str(wheel)], check=True, timeout=600)
    run = work / "run"
    run.mkdir()
    return Installed(wheel, venv, run)


def test_the_wheel_holds_aribot_alone_and_every_file_it_reads(installed: Installed) -> None:
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    tops = {name.split("/", 1)[0] for name in names}
    assert tops == {"aribot", f"aribot-{aribot.__version__}.dist-info"}
    expected = set()
    for package, folder in PACKAGE_DIRS.items():
        for name in tracked_files():
            if name.startswith(folder + "/"):
                expected.add(package.replace(".", "/") + name[len(folder):])
    assert expected - names == set(), "files of the package folders missing from the wheel"
    assert "aribot/py.typed" in names
    assert not any(name.startswith(("aribot/tests", "tests/")) for name in names)


def test_the_installed_command_works_from_any_folder(installed: Installed) -> None:
    version = installed.aribot("--version")
    assert version.returncode == 0 and version.stdout.startswith("aribot "), version.stderr
    as_module = subprocess.run([str(installed.venv / "bin" / "python"), "-m", "aribot", "--version"],
                               cwd=installed.run, env=installed.env(), capture_output=True, text=True)
    assert as_module.stdout == version.stdout
    where = subprocess.run([str(installed.venv / "bin" / "python"), "-c",
                            "import aribot, importlib.util as u; print(aribot.__file__); "
                            "print(u.find_spec('core'), u.find_spec('plugins'), u.find_spec('sandbox'))"],
                           cwd=installed.run, env=installed.env(), capture_output=True, text=True, check=True)
    path, others = where.stdout.splitlines()
    assert path.startswith(str(installed.venv)) and others == "None None None"

    config = installed.aribot("config", "--json")
    assert config.returncode == 0, config.stderr
    values = json.loads(config.stdout)
    assert values["ari.url"] == {"value": "http://127.0.0.1:8088", "source": "default"}
    assert values["history.path"]["source"] == "default" and values["ui.port"]["value"] == 8080
    defaults = installed.aribot("config", "--defaults")
    assert defaults.stdout == (REPO / "settings.toml").read_text()   # the defaults ship inside the package

    plugins = installed.aribot("plugins", "--json")
    listed = {p["name"]: p for p in json.loads(plugins.stdout)}
    entry_points = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["entry-points"]["aribot"]
    assert set(listed) == set(entry_points)
    assert all(p["source"] == "built-in" and p["state"] == "enabled" and p["path"].startswith(str(installed.venv))
               for p in listed.values())

    (installed.run / "settings.toml").write_text('[ari]\nurl = "ftp://nowhere"\n')
    bad = installed.aribot("config")
    assert bad.returncode == 2 and bad.stderr.strip().startswith("aribot: setting ari.url = 'ftp://nowhere'")
    (installed.run / "settings.toml").unlink()


async def test_installed_aribot_serves_the_lab_asterisk(installed: Installed, asterisk_lab: AsteriskLab) -> None:
    http_port, ui_port = free_tcp_port(), free_tcp_port()
    low, high = free_udp_port_range(16)
    state = installed.run / "state"
    env = installed.env(
        ARIBOT_ARI__URL=asterisk_lab.ari_url, ARIBOT_ARI__USERNAME=asterisk_lab.ari_username,
        ARIBOT_ARI__PASSWORD=asterisk_lab.ari_password, ARIBOT_ARI__APP=f"{asterisk_lab.app}-wheel",
        ARIBOT_RTP__PORT_MIN=str(low), ARIBOT_RTP__PORT_MAX=str(high), ARIBOT_HTTP__PORT=str(http_port),
        ARIBOT_UI__PORT=str(ui_port), ARIBOT_AI__BACKEND="local", ARIBOT_STORAGE__DATA_DIR=str(state),
    )
    proc = await asyncio.create_subprocess_exec(str(installed.venv / "bin" / "aribot"), "serve", cwd=installed.run,
                                                env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    try:
        health = await wait_healthy(http_port, timeout=60)
        assert health["ari"] == "connected", health
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{ui_port}/") as resp:
                page = await resp.text()
        assert resp.status == 200 and "aribot" in page.lower()   # NiceGUI's files are in the installed venv
        proc.send_signal(signal.SIGTERM)
        output = (await asyncio.wait_for(proc.communicate(), 30))[0].decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, output
    assert "stopped cleanly" in output and asterisk_lab.ari_password not in output
    database = state / "history.sqlite3"
    assert stat.S_IMODE(database.stat().st_mode) == 0o600 and stat.S_IMODE(state.stat().st_mode) == 0o700
