"""Ready-made pytest fixtures for tests that use the lab: one Asterisk and one sniffer per session.

Use them from a conftest.py by importing them (non-root conftests cannot use pytest_plugins)::

    from tests.lab.fixtures import asterisk_lab, lab_chroot, rtp_sniffer  # noqa: F401

Without root or without the chroot the tests FAIL with what to do (they never skip).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from aribot.sandbox.asterisk import AsteriskLab
from aribot.sandbox.provision import EXPECTED_VERSION, asterisk_version, default_chroot
from tests.lab.sniffer import RtpSniffer


def require_lab_chroot() -> Path:
    """The provisioned chroot; ``pytest.fail`` (not skip) if not root or not provisioned."""
    if os.geteuid() != 0:
        pytest.fail("the Asterisk lab needs root (chroot, AF_PACKET): run the tests as root")
    path = default_chroot()
    if EXPECTED_VERSION not in asterisk_version(path):
        pytest.fail(f"no Asterisk {EXPECTED_VERSION} chroot at {path}: run scripts/setup (as root)")
    return path


@pytest.fixture(scope="session")
def lab_chroot() -> Path:
    """The chroot path (see ``require_lab_chroot``)."""
    return require_lab_chroot()


@pytest.fixture(scope="session")
def asterisk_lab(lab_chroot: Path) -> Iterator[AsteriskLab]:
    """One running lab Asterisk for the whole session (Stasis app "aribot-test")."""
    lab = AsteriskLab(lab_chroot, alaw_caller=True)
    asyncio.run(lab.start())
    try:
        yield lab
    finally:
        asyncio.run(lab.stop())


@pytest.fixture(scope="session")
def rtp_sniffer(lab_chroot: Path) -> Iterator[RtpSniffer]:
    """One loopback RTP sniffer for the whole session; ``watch()`` the ports you care about."""
    with RtpSniffer() as sniffer:
        yield sniffer
