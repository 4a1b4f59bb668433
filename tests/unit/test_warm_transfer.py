"""The warm transfer's pure parts: its settings refuse what could reach a dial string, the tool
refuses targets outside the allow-list, a target that never answered is named right, and the
App routes the target's events to the transfer (never taking it for a new call). The transfers
themselves run on the lab: tests/integration/test_warm_transfer.py."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from aribot.core import app as app_module
from aribot.core.app import OWNED_ARG, App, configure
from aribot.core.ari_events import parse_event
from aribot.core.g711 import loud_samples
from aribot.core.settings import SettingsError
from aribot.core.tools import ToolContext
from aribot.plugins.tools import warm_transfer as wt
from aribot.sandbox.asterisk_config import MODULES, LabConfig, moh_audio


@pytest.fixture(autouse=True)
def _elsewhere(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)   # no settings.toml of the repository
    for name in [k for k in os.environ if k.startswith("ARIBOT_")]:
        monkeypatch.delenv(name)


@pytest.mark.parametrize("key,value,needle", [
    ("ALLOWED", "200,300/x", "tools.warm_transfer.allowed = '200,300/x' is not valid"),
    ("ALLOWED", "200@sales&PJSIP/evil", "tools.warm_transfer.allowed"),
    ("CONTEXT", "sales,1", "tools.warm_transfer.context = 'sales,1' is not valid"),
    ("DIAL", "Local/{exten}@{context}", "tools.warm_transfer.dial = 'Local/{exten}@{context}' is not valid"),
    ("DIAL", "Local/200@sales", "expected a dial string with {extension}"),
    ("RING_TIMEOUT", "2", "tools.warm_transfer.ring_timeout = 2 is not valid: expected 5 to 300 seconds"),
    ("BRIEFING", "Brief {who}", "tools.warm_transfer.briefing"),
])
def test_bad_settings_fail_with_one_clear_line(monkeypatch: pytest.MonkeyPatch, key: str, value: str,
                                               needle: str) -> None:
    monkeypatch.setenv(f"ARIBOT_TOOLS__WARM_TRANSFER__{key}", value)
    with pytest.raises(SettingsError) as info:
        configure()
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_defaults_allow_nobody_and_dial_a_local_channel_that_stays() -> None:
    settings, plugins = configure()
    config = settings.tools.warm_transfer
    assert config.allowed == [] and config.dial == "Local/{extension}@{context}/n"
    assert "tools_warm_transfer" in {info.name for info in plugins.infos()}


@pytest.mark.parametrize("cause,elapsed,stage", [
    ((17, "User busy"), 1.0, "busy"),
    ((19, "No answer"), 3.0, "no_answer"),
    ((16, "Normal Clearing"), 29.5, "no_answer"),      # Asterisk's originate timeout, as a Local channel ends
    (None, 35.0, "no_answer"),                         # aribot stopped waiting
    ((1, "Unallocated (unassigned) number"), 0.2, "failed"),
    ((0, ""), 0.1, "failed"),
])
def test_a_target_that_did_not_answer_is_named(cause: Any, elapsed: float, stage: str) -> None:
    found, detail = wt.not_answered(cause, elapsed, 30)
    assert found == stage and detail
    if stage == "failed":
        placed = "Unallocated (unassigned) number (1)" if cause[0] else "the call to the target could not be placed"
        assert detail == placed


class StubCall:
    id = "call-1"
    caller_number = "100"
    extension = "100"

    def __init__(self, tools: dict[str, Any], context: str = "from-sipp") -> None:
        self.settings = SimpleNamespace(get=lambda key, default=None: tools if key == "tools" else default)
        self.channel = SimpleNamespace(context=context)
        self.backend = SimpleNamespace(ai_spoke=lambda _response: False)
        self.spawned: list[Any] = []

    def spawn(self, coro: Any) -> None:
        self.spawned.append(coro)
        coro.close()


async def test_the_tool_refuses_targets_outside_the_list_and_unsafe_contexts() -> None:
    call = StubCall({"warm_transfer": {"allowed": ["200@sales", "300"]}})
    ctx = ToolContext(call, "warm_transfer")
    with pytest.raises(ValueError, match=r"transfers to 999 are not allowed; allowed targets: 200@sales, 300"):
        await wt.warm_transfer("999", ctx=ctx)
    with pytest.raises(ValueError, match=r"transfers to 200@other are not allowed"):
        await wt.warm_transfer("200", "other", ctx=ctx)
    with pytest.raises(ValueError, match=r"transfers to 200/n@sales are not allowed"):
        await wt.warm_transfer("200/n", "sales", ctx=ctx)
    unsafe = StubCall({"warm_transfer": {"allowed": ["300"]}}, context="ctx,1")
    with pytest.raises(ValueError, match=r"the caller's dialplan context 'ctx,1' cannot be dialled"):
        await wt.warm_transfer("300", ctx=ToolContext(unsafe, "warm_transfer"))
    with pytest.raises(ValueError, match=r"allowed targets: none"):
        await wt.warm_transfer("300", ctx=ToolContext(StubCall({}), "warm_transfer"))
    assert call.spawned == []


async def test_one_transfer_at_a_time_and_answers_only_while_briefing() -> None:
    call = StubCall({"warm_transfer": {"allowed": ["200@sales"]}})
    app = SimpleNamespace(calls={call.id: call}, ari=None, resource_prefix=lambda kind: f"aribot-{kind}-x",
                          settings=SimpleNamespace(ari=SimpleNamespace(app="aribot")))
    manager = wt.WarmTransfers(app)
    wt._managers.append(manager)
    try:
        with pytest.raises(ValueError, match="no warm transfer is waiting for an answer"):
            await wt.warm_transfer_answer(True, ctx=ToolContext(call, "warm_transfer_answer"))
        result = await wt.warm_transfer("200", "sales", "billing", ctx=ToolContext(call, "warm_transfer"))
        assert result.respond is False and result.value["target"] == "200@sales"
        transfer = manager.active[call.id]
        assert transfer.endpoint == "Local/200@sales/n" and transfer.channel_id.startswith("aribot-xf-x-")
        with pytest.raises(ValueError, match="a warm transfer to 200@sales is already under way"):
            await wt.warm_transfer("200", "sales", ctx=ToolContext(call, "warm_transfer"))
        with pytest.raises(ValueError, match="no warm transfer is waiting"):   # not briefing yet
            await wt.warm_transfer_answer(True, ctx=ToolContext(call, "warm_transfer_answer"))
        transfer.stage = "answered"
        assert transfer.decide(False, "pressed 2") and not transfer.decide(True, "pressed 1")   # the first counts
        assert transfer.decision == "pressed 2" and not transfer.accepted
    finally:
        wt._managers.remove(manager)


class RecordingCall:
    def __init__(self, app, channel, args):
        self.id, self.leg_id, self.overflow = channel.id, "", False
        RecordingCall.made.append(self)

    async def run(self):
        pass


def stasis_start(channel_id: str, args: list[str]) -> Any:
    return parse_event(json.dumps({
        "type": "StasisStart", "application": "aribot", "args": args,
        "channel": {"id": channel_id, "name": "Local/200@sales-00000001;1", "state": "Up"}}))


async def test_the_target_goes_to_its_transfer_and_a_forgotten_one_is_hung_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    RecordingCall.made = []
    monkeypatch.setattr(app_module, "Call", RecordingCall)
    app = App(*configure())
    hung_up: list[str] = []

    async def hang_up(channel_id: str) -> None:
        hung_up.append(channel_id)

    monkeypatch.setattr(app, "_hang_up", hang_up)
    seen: list[str] = []
    app.watch("target-1", lambda event: seen.append(event.type))
    app.route(stasis_start("target-1", [OWNED_ARG, "call-1"]))
    app.route(parse_event('{"type": "ChannelDtmfReceived", "digit": "1", "duration_ms": 100, '
                          '"channel": {"id": "target-1", "name": "Local/200@sales-00000001;1"}}'))
    assert seen == ["StasisStart", "ChannelDtmfReceived"] and RecordingCall.made == []
    app.unwatch("target-1")
    app.route(stasis_start("target-2", [OWNED_ARG, "call-1"]))   # its transfer gave up on it
    await asyncio.sleep(0)
    assert hung_up == ["target-2"] and RecordingCall.made == []
    app.route(stasis_start("caller-1", ["100"]))                  # an ordinary caller is still a call
    assert [c.id for c in RecordingCall.made] == ["caller-1"]


def test_the_lab_has_music_on_hold_of_its_own() -> None:
    """The chroot ships no MOH files: the lab's "default" class plays a generated tune, loud
    enough in every 20 ms frame to be told from silence."""
    cfg = LabConfig(etc_dir="/etc/x", var_dir="/var/tmp/aribot-lab/1-x", mod_dir="/m", app="a", http_port=1,
                    sip_port=2, rtp_start=3, rtp_end=4, ari_username="u", ari_password="p")
    assert cfg.files()["musiconhold.conf"] == "[default]\nmode = files\ndirectory = /var/tmp/aribot-lab/1-x/moh\n"
    assert {"app_dial", "res_musiconhold"} <= set(MODULES)
    audio = moh_audio()
    frames = [audio[i:i + 160] for i in range(0, len(audio), 160)]
    assert len(audio) == 8 * 8000 and all(loud_samples(frame, "ulaw") >= 16 for frame in frames)
