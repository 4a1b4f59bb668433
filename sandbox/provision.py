"""Provision the Debian sid chroot that holds the lab's Asterisk 22.10.1 (asterisk-ari.md §5.9).

``python -m aribot.sandbox.provision [PATH]`` (what scripts/setup runs) builds it as root, or returns at
once if it is there. ``aribot lab`` and benchmarks/ call ``ensure_chroot``; the tests only check
for it (tests/lab/fixtures.py) and fail with what to do.
The chroot is built in a temporary sibling directory and renamed into place only when Asterisk
reports the expected version, so an interrupted build never leaves a chroot that looks valid.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

EXPECTED_VERSION = "22.10.1"
DEFAULT_CHROOT = Path("/var/cache/aribot/asterisk-sid")
ASTERISK = "/usr/sbin/asterisk"
APT_SOURCES = Path("/etc/apt")
MARKER = ".aribot-lab-chroot"  # written into chroots we built; only those are ever replaced


class ProvisionError(RuntimeError):
    """Provisioning failed; the message says what failed and what to do."""


def default_chroot() -> Path:
    """``$ARIBOT_LAB_CHROOT`` or /var/cache/aribot/asterisk-sid."""
    return Path(os.environ.get("ARIBOT_LAB_CHROOT") or DEFAULT_CHROOT)


def asterisk_version(path: Path) -> str:
    """The ``asterisk -V`` line of the chroot at ``path`` ("" if it has no working Asterisk)."""
    if not (path / ASTERISK.lstrip("/")).is_file():
        return ""
    try:
        out = subprocess.run(
            ["chroot", str(path), ASTERISK, "-V"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def is_ready(path: Path) -> bool:
    """True if the chroot at ``path`` runs the expected Asterisk version."""
    return re.search(rf"\b{re.escape(EXPECTED_VERSION)}\b", asterisk_version(path)) is not None


def _source_uris() -> list[tuple[str, str]]:
    """``(uri, suites)`` of every enabled deb source in the machine's apt configuration."""
    found: list[tuple[str, str]] = []
    for file in sorted((APT_SOURCES / "sources.list.d").glob("*.sources")):
        for stanza in re.split(r"\n\s*\n", file.read_text()):
            fields = dict(re.findall(r"(?m)^([A-Za-z-]+):[ \t]*(.*)$", stanza))
            if "deb" in fields.get("Types", "").split() and fields.get("Enabled", "yes") != "no":
                found += [(uri, fields.get("Suites", "")) for uri in fields.get("URIs", "").split()]
    lists = [APT_SOURCES / "sources.list", *sorted((APT_SOURCES / "sources.list.d").glob("*.list"))]
    for file in (f for f in lists if f.is_file()):
        for line in file.read_text().splitlines():
            m = re.match(r"\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", line)
            if m:
                found.append((m.group(1), m.group(2)))
    return found


def debian_mirror() -> str:
    """The mirror URL serving the "debian" archive (not debian-security), from apt's config."""
    for uri, suites in _source_uris():
        if uri.rstrip("/").rsplit("/", 1)[-1] == "debian" and "security" not in suites:
            return uri.rstrip("/")
    raise ProvisionError(
        "no Debian mirror found in /etc/apt/sources.list(.d): "
        "add a source for the 'debian' archive and retry"
    )


def _run(step: str, cmd: list[str], log: Path) -> None:
    """Run one build step, appending its output to ``log``; raise a one-line error on failure."""
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", LC_ALL="C")
    with log.open("a") as out:
        out.write(f"\n$ {' '.join(cmd)}\n")
        out.flush()
        rc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env).returncode
    if rc != 0:
        tail = " | ".join(log.read_text().strip().splitlines()[-3:])
        raise ProvisionError(f"{step} failed (exit {rc}; full log {log}): {tail}")


def _check_prerequisites() -> None:
    if os.geteuid() != 0:
        raise ProvisionError("building the Asterisk chroot needs root: run scripts/setup as root")
    if shutil.which("debootstrap") is None:
        raise ProvisionError("debootstrap is missing: run scripts/setup (it apt-installs it)")


def _build(tmp: Path, mirror: str, log: Path) -> None:
    """debootstrap sid into ``tmp`` and install Asterisk there."""
    _run("debootstrap", ["debootstrap", "--variant=minbase", "sid", str(tmp), mirror], log)
    policy = tmp / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    apt = ["chroot", str(tmp), "apt-get", "-q", "-o", "Acquire::Check-Valid-Until=false"]
    _run("apt-get update in the chroot", [*apt, "update"], log)
    install = [*apt, "install", "-y", "--no-install-recommends", "asterisk"]
    _run("apt-get install asterisk in the chroot", install, log)
    _run("apt-get clean in the chroot", [*apt, "clean"], log)


def _mounts_under(path: Path) -> list[str]:
    """Mount points at or below ``path`` (deepest first)."""
    prefix = str(path)
    points = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    inside = [p for p in points if p == prefix or p.startswith(prefix + "/")]
    return sorted(inside, key=len, reverse=True)


def _remove_tree(path: Path) -> None:
    """Delete a (partial) chroot, unmounting anything a killed debootstrap left mounted first."""
    if not path.exists():
        return
    for point in _mounts_under(path):
        subprocess.run(["umount", "-l", point], capture_output=True)
    if _mounts_under(path):
        raise ProvisionError(f"{path} still has mounts inside; unmount them and retry")
    shutil.rmtree(path)


def _replace(tmp: Path, path: Path) -> None:
    """Move the finished chroot ``tmp`` to ``path``, replacing only a chroot we built before."""
    if path.exists() and not (path / MARKER).exists():
        raise ProvisionError(
            f"{path} exists but is not an aribot lab chroot: remove it or set ARIBOT_LAB_CHROOT"
        )
    _remove_tree(path)
    tmp.rename(path)


def ensure_chroot(path: Path | None = None) -> Path:
    """Return the chroot path, building it first if it lacks a working Asterisk 22.10.1."""
    path = (path or default_chroot()).absolute()
    if is_ready(path):
        return path
    _check_prerequisites()
    mirror = debian_mirror()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a concurrent build finishes first; then re-check
        if is_ready(path):
            return path
        tmp = path.with_name(f".{path.name}.building")
        log = path.with_name(f"{path.name}.build.log")
        log.write_text(f"building {path} from {mirror}\n")
        _remove_tree(tmp)  # leftovers of an interrupted build
        try:
            _build(tmp, mirror, log)
            if not is_ready(tmp):
                found = asterisk_version(tmp) or "nothing"
                raise ProvisionError(
                    f"expected Asterisk {EXPECTED_VERSION} in the new chroot, got {found}: "
                    "the mirror's sid has moved on; update EXPECTED_VERSION and the tests"
                )
            (tmp / MARKER).write_text(f"{asterisk_version(tmp)}\nmirror {mirror}\n")
            _replace(tmp, path)
        finally:
            _remove_tree(tmp)
    return path


def main(argv: list[str]) -> int:
    """CLI: ensure the chroot and print its path and Asterisk version."""
    started = time.monotonic()
    target = Path(argv[0]) if argv else default_chroot()
    try:
        if not is_ready(target):
            _check_prerequisites()
            print(f"provision: building {target} (about 30 s)...", file=sys.stderr, flush=True)
        path = ensure_chroot(target)
    except ProvisionError as exc:
        print(f"provision: {exc}", file=sys.stderr)
        return 1
    print(f"{path}: {asterisk_version(path)} ({time.monotonic() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
