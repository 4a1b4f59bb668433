"""Contract tests against Asterisk 22.10.1's own API definition and real captured events."""

from __future__ import annotations

import json
import re

import pytest

from aribot.core.ari import OPERATIONS
from aribot.core.ari_events import Channel, parse_event
from tests.contract.ari_docs import CAPTURES, doc_operations, event_models, validate_request

DOC_OPS = doc_operations()
EVENT_MODELS = event_models()


@pytest.mark.parametrize("name", sorted(OPERATIONS))
def test_every_operation_exists_in_ari_docs(name: str) -> None:
    method, path, query = OPERATIONS[name]
    op = DOC_OPS.get((method, path))
    assert op is not None, f"{method} {path} is not in Asterisk 22.10.1's api-docs"
    params = {p["name"]: p for p in op.get("parameters", [])}
    for field in re.findall(r"{(\w+)}", path):
        assert params[field]["paramType"] == "path"
    for q in query:
        assert q in params, f"{name}: parameter {q} does not exist for {method} {path}"
        assert params[q]["paramType"] == "query", f"{name}: {q} is not a query parameter"


def test_validate_request_catches_bad_values() -> None:
    assert validate_request("hangup", {"channelId": "x", "reason": "normal"}) == []
    assert validate_request("hangup", {"channelId": "x", "reason": "bogus"})
    assert validate_request("external_media", {"direction": "in"})
    assert validate_request("play", {"channelId": "c", "playbackId": "p", "media": ["sound:a", "sound:b"]}) == []
    assert validate_request("set_event_filter", {"applicationName": "a", "body": {"disallowed": []}}) == []
    assert validate_request("answer", {"channelId": "x", "body": {}})


def captured_events() -> list[str]:
    lines = []
    for path in sorted(CAPTURES.glob("*.jsonl")):
        lines += [line for line in path.read_text().splitlines() if line.strip()]
    return lines


def test_captures_are_present() -> None:
    assert len(captured_events()) > 40


@pytest.mark.parametrize("line", captured_events())
def test_every_captured_event_parses(line: str) -> None:
    event = parse_event(line)
    assert event.type in EVENT_MODELS, f"{event.type} is not an ARI event model"
    model = EVENT_MODELS[event.type]
    for prop, spec in model["properties"].items():
        if spec.get("required") and prop not in ("type", "application", "timestamp", "asterisk_id"):
            assert prop in event.data, f"{event.type} lacks required {prop}"
    if "channel" in model["properties"] and event.data.get("channel"):
        assert isinstance(event.channel, Channel) and event.channel.id


def test_external_media_response_has_rtp_address() -> None:
    data = json.loads((CAPTURES / "externalMedia_response.json").read_text())
    channel = Channel.from_json(data)
    assert channel.is_media_leg
    assert channel.channelvars["UNICASTRTP_LOCAL_PORT"].isdigit()


def test_unknown_and_malformed_events() -> None:
    from aribot.core.ari_events import AriEventError
    assert parse_event('{"type": "SomethingNew", "x": 1}').type == "SomethingNew"
    for bad in ("not json", "[]", '{"no": "type"}', '{"type": "StasisStart", "channel": {"id": 5}}'):
        with pytest.raises(AriEventError):
            parse_event(bad)
