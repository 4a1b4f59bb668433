"""Core"s settings: every key of core"s own sections with its default, rule and one-line
description. Plugins declare theirs through ``register_settings``; ``aribot config --defaults``
renders all of them as the documented settings.toml."""

from __future__ import annotations

from typing import Any

from aribot.core.browser_guard import host_entries, origin_entries
from aribot.core.choices import is_inside, key_list
from aribot.core.hold import hold_sound_setting
from aribot.core.prompts import greeting_folders, local_path
from aribot.core.settings import (
    TOKEN_ALLOWED,
    Setting,
    as_bool,
    as_str,
    choice,
    http_url,
    is_loopback_host,
    log_level,
    media_list,
    mode_name,
    nonempty,
    number,
    secret_token,
    str_list,
)

CORE_SETTINGS: tuple[Setting, ...] = (
    Setting("ari.url", "http://127.0.0.1:8088", http_url, "an http:// or https:// URL of Asterisk's HTTP server",
            "Asterisk HTTP server, with or without a trailing /ari", legacy=("ASTERISK_ARI_URL",)),
    Setting("ari.username", "asterisk", as_str, "a string",
            "ari.conf user", legacy=("ASTERISK_ARI_USERNAME",)),
    Setting("ari.password", "", as_str, "a string",
            "secret: ari.conf password (ASTERISK_ARI_PASSWORD)", legacy=("ASTERISK_ARI_PASSWORD",)),
    Setting("ari.app", "aribot", nonempty, "a non-empty Stasis app name",
            "Stasis application name used in the dialplan", legacy=("ASTERISK_ARI_APP_NAME",)),
    Setting("ari.request_timeout", 5.0, number(float, 0.1, 120), "seconds between 0.1 and 120",
            "seconds for one ARI REST request"),
    Setting("ari.reconnect_min_delay", 0.5, number(float, 0.05, 60), "seconds between 0.05 and 60",
            "seconds before the first events-WebSocket reconnect"),
    Setting("ari.reconnect_max_delay", 10.0, number(float, 0.1, 600), "seconds between 0.1 and 600",
            "upper bound of the exponential reconnect backoff"),
    Setting("ari.leg_start_timeout", 5.0, number(float, 0.1, 60), "seconds between 0.1 and 60",
            "seconds to wait for the ExternalMedia leg's StasisStart"),
    Setting("rtp.host", "127.0.0.1", nonempty, "an IP address to bind to",
            "address aribot binds its per-call UDP sockets to", legacy=("RTP_HOST_IP", "RTP_SERVER_HOST_IP")),
    Setting("rtp.advertise_host", "", as_str, "an address Asterisk can reach, or empty",
            "address given to Asterisk as external_host (empty = host); set it behind NAT"),
    Setting("rtp.port_min", 20000, number(int, 1024, 65535), "an integer port 1024..65535",
            "first UDP port of aribot's RTP range (inclusive)", legacy=("RTP_MIN_PORT",)),
    Setting("rtp.port_max", 20999, number(int, 1024, 65535), "an integer port 1024..65535",
            "last UDP port of aribot's RTP range (inclusive)", legacy=("RTP_MAX_PORT",)),
    Setting("rtp.format", "ulaw", choice("ulaw", "alaw"), "ulaw or alaw",
            "ulaw (PCMU, PT 0) or alaw (PCMA, PT 8); passed through, never transcoded"),
    Setting("rtp.idle_silence", False, as_bool, "true or false",
            "send µ-law/A-law silence frames while the AI is silent (continuous RTP)"),
    Setting("ai.backend", "openai_realtime", nonempty, "a registered speech backend name",
            "the speech backend calls use: openai_realtime, azure, gpt_live, local, or a plugin's (aribot plugins)"),
    Setting("ai.allowed", [], str_list, "a list of backend names",
            "backends a call may choose instead (Stasis argument backend=, channel variable ARIBOT_BACKEND); "
            "empty = none"),
    Setting("ai.instructions",
            "You are a helpful, concise voice assistant answering a phone call. Keep answers short.",
            as_str, "a string",
            "system prompt of every backend (a call may choose its own)", legacy=("OPENAI_INSTRUCTIONS",)),
    Setting("ai.connect_timeout", 10.0, number(float, 0, 300), "seconds 0..300 (0 = no limit)",
            "seconds for the AI session to be ready (INITIAL_OPENAI_STREAM_IDLE_TIMEOUT_SECONDS)",
            legacy=("INITIAL_OPENAI_STREAM_IDLE_TIMEOUT_SECONDS",)),
    Setting("ai.reconnect_attempts", 3, number(int, 0, 20), "an integer 0..20 (0 = end the call at once)",
            "the AI session lost mid-call: new sessions tried (conversation carried over) before the fallback "
            "prompt; 0 = none"),
    Setting("ai.max_session_s", 3300.0, number(float, 0, 86400), "seconds 0..86400 (0 = no limit of aribot's own)",
            "roll over to a new session (conversation carried over) at a quiet moment after this many seconds; "
            "services stop sessions at their limit; 0 = never"),
    Setting("ai.reconnect_filler", "", media_list,
            "comma-separated media URIs such as sound:one-moment-please, or empty",
            "media played while a new session is opened after a loss, e.g. \"sound:one-moment-please\"; empty = "
            "a short silence"),
    Setting("ai.input_buffer_ms", 10000, number(int, 0, 120000), "milliseconds 0..120000",
            "caller audio kept while the session is not ready yet; older audio is dropped"),
    Setting("call.greeting", "", as_str, "a media URI such as sound:hello-world, or empty",
            "media played to the caller before listening, e.g. \"sound:hello-world\", or a file: in greeting_dirs; "
            "empty = none",
            legacy=("INITIAL_GREETING_AUDIO_PATH", "GREETING_AUDIO_PATH")),
    Setting("call.greeting_dirs", [], greeting_folders, "a list of absolute folders (not /)",
            "folders file: greetings may be read from ([call] greeting, or greeting= per call); empty = none: "
            "only sound: greetings, which Asterisk plays"),
    Setting("call.greeting_max_bytes", 1000000, number(int, 1, 100_000_000), "bytes 1..100000000",
            "largest file: greeting aribot reads (1000000: about 2 min of µ-law, 1 min of 16-bit WAV)"),
    Setting("call.per_call_keys", ["voice", "backend"], key_list,
            "a list of mode, greeting, instructions, voice, tools, backend",
            "what the dialplan may choose per call (Stasis key=value, ARIBOT_<KEY>); the default changes only the "
            "voice and, among [ai] allowed, the AI: never what it is told, which tools it has or a file aribot reads"),
    Setting("call.fallback_prompt", "sound:im-sorry,sound:please-try-call-later",
            media_list, "comma-separated media URIs such as sound:im-sorry",
            "played when the AI is unavailable; comma-separated media"),
    Setting("call.on_failure", "hangup", choice("hangup", "continue"), "hangup or continue",
            "after the fallback prompt: hangup or continue (in the dialplan)"),
    Setting("call.on_shutdown", "hangup", choice("hangup", "continue"), "hangup or continue",
            "live calls when aribot stops: hangup or continue"),
    Setting("call.drain_timeout", 30.0, number(float, 0, 86400), "seconds 0..86400",
            "on SIGTERM/SIGINT live calls may go on this long (new ones are continued in the dialplan); then they"
            " end politely; a second signal stops at once"),
    Setting("call.shutdown_goodbye", "We have to end this call now. Apologise briefly and say a short, polite goodbye.",
            as_str, "instructions for the AI, or empty for none",
            "instructions for the goodbye of calls still live after drain_timeout; empty = none"),
    Setting("call.on_end", "hangup", choice("hangup", "continue"), "hangup or continue",
            "when aribot ends a call itself (time limit, no input, a tool): hangup or continue"),
    Setting("call.max_cost", 0.0, number(float, 0, 1_000_000), "USD 0..1000000 (0 = no limit)",
            "a call whose AI cost reaches this many USD ends after a short goodbye (plugin cost, [cost] prices); "
            "0 = no limit"),
    Setting("call.continue_context", "", as_str, "a dialplan context or empty",
            "dialplan target for \"continue\"; empty = the next priority after Stasis()"),
    Setting("call.continue_extension", "", as_str, "a dialplan extension or empty",
            "dialplan extension for \"continue\"; empty = the channel's own"),
    Setting("call.continue_priority", 0, number(int, 0, 100000), "a priority number (0 = default)",
            "0 = default priority (1 when a context/extension is given)"),
    Setting("call.cleanup_timeout", 2.0, number(float, 0.1, 60), "seconds 0.1..60",
            "seconds to wait for Asterisk to confirm a hangup before cleaning up anyway"),
    Setting("call.max_concurrent", 100, number(int, 0, 100000), "an integer 0..100000 (0 = no limit)",
            "calls served at once; one more is answered with overload_prompt and not served (0 = no limit); 100 is "
            "what one core carried with clean audio (docs/capacity.md) and caps the paid AI sessions a call flood "
            "opens"),
    Setting("call.overload_prompt", "sound:all-circuits-busy-now,sound:please-try-call-later",
            media_list, "comma-separated media URIs such as sound:all-circuits-busy-now",
            "played to a call beyond max_concurrent; comma-separated media"),
    Setting("call.on_overload", "hangup", choice("hangup", "continue"), "hangup or continue",
            "after the overload prompt: hangup or continue (in the dialplan, ARIBOT_END_REASON=overload)"),
    Setting("activation.mode", "vad", mode_name, "an activation mode name",
            "immediate, fixed_delay or vad: when caller audio starts flowing to the AI "
            "(RECOGNITION_ACTIVATION_MODE)", legacy=("RECOGNITION_ACTIVATION_MODE",)),
    Setting("activation.pre_roll_ms", 400, number(int, 0, 5000), "milliseconds 0..5000",
            "caller audio kept before the stream opens and sent first, so the first syllable is not lost"),
    Setting("activation.vad_silence_ms", 1200, number(int, 1, 60000), "milliseconds 1..60000",
            "vad: TALK_DETECT silence in ms that ends caller talk (VAD_SILENCE_THRESHOLD_MS)",
            legacy=("VAD_SILENCE_THRESHOLD_MS", "APP_APPRECOGNITION_VADSILENCETHRESHOLDMS")),
    Setting("activation.vad_talk_threshold", 256, number(int, 1, 32767), "an energy threshold 1..32767",
            "vad: TALK_DETECT energy per sample that counts as talk, 1..32767 (VAD_TALK_THRESHOLD)",
            legacy=("VAD_TALK_THRESHOLD", "APP_APPRECOGNITION_VADTALKTHRESHOLD")),
    Setting("http.host", "127.0.0.1", nonempty, "an address to bind to",
            "HTTP API (/healthz, /tools, /logs) bind address"),
    Setting("http.port", 8081, number(int, 0, 65535), "a port 0..65535 (0 = any free port)",
            "HTTP API port; 0 picks a free one", legacy=("PORT",)),
    Setting("http.token", "", secret_token, TOKEN_ALLOWED,
            "secret: bearer token the HTTP API requires (Authorization: Bearer, or ?token= for /logs); required "
            "off loopback; at least 16 characters"),
    Setting("http.allowed_hosts", [], host_entries, "a list of host names, name:port or \"*\"",
            "Host names the HTTP API answers besides loopback and http.host (e.g. [\"aribot.example.com\"]); "
            "others get 421 (DNS rebinding); \"*\" = any"),
    Setting("http.allowed_origins", [], origin_entries, "a list of origins such as https://dash.example.com",
            "browser origins besides the API's own that may use it (e.g. the /logs WebSocket); others get 403"),
    Setting("tools.timeout", 10.0, number(float, 0.1, 600), "seconds 0.1..600",
            "seconds before a running tool is abandoned with an error output; [tools.<name>] timeout overrides"),
    Setting("tools.disabled", [], str_list, "a list of tool names",
            "tool names the AI is not offered (the rest of their plugin stays)"),
    Setting("tools.filler_after", 2.0, number(float, 0, 600), "seconds 0..600 (0 = never)",
            "a tool still running after this many seconds: the AI tells the caller it is checking; 0 = never"),
    Setting("tools.filler", "Tell the caller in a few words that you are checking.",
            as_str, "instructions for the AI",
            "instructions for that filler"),
    Setting("tools.hold_sound", "", hold_sound_setting, "empty, beeps, or a file: in call.greeting_dirs",
            "looped into the call while a tool runs past filler_after, stopped when it returns: beeps (built in) "
            "or a WAV/G.711 file; empty = none"),
    Setting("tools.hold_sound_with_filler", "after", choice("after", "instead"), "after or instead",
            "the hold sound plays after the AI's spoken filler, or instead of it"),
    Setting("tools.manual", [], str_list, "a list of tool names",
            "tools answered by a person on the dashboard instead of their function"),
    Setting("tools.manual_timeout", 120.0, number(float, 1, 3600), "seconds 1..3600",
            "seconds an operator has to answer a manual tool; then the model gets an error"),
    Setting("plugins.disabled", [], str_list, "a list of plugin names",
            "plugin names to block before anything loads, e.g. [\"tools_send_dtmf\"]"),
    Setting("plugins.paths", [], str_list, "a list of folders with plugin modules",
            "folders whose *.py modules and packages are loaded as plugins (tools that are not packaged)"),
    Setting("log.level", "INFO", log_level, "DEBUG, INFO, WARNING or ERROR",
            "DEBUG, INFO, WARNING or ERROR (LOG_LEVEL)", legacy=("LOG_LEVEL",)),
    Setting("storage.data_dir", "", as_str, "a folder path, or empty",
            "folder for aribot's own files (call history); empty = $STATE_DIRECTORY, /var/lib/aribot as root, "
            "else $XDG_STATE_HOME/aribot"),
)


def core_checks(settings: Any) -> list[str]:
    """What no single rule can see: the RTP range is in order; the HTTP API off loopback has a
    token; a file greeting is inside greeting_dirs. (That ai.backend names a registered backend is
    checked when the App starts.)"""
    errors = []
    if settings.rtp.port_min > settings.rtp.port_max:
        errors.append(f"setting rtp.port_min = {settings.rtp.port_min} is above rtp.port_max = "
                      f"{settings.rtp.port_max}: expected port_min <= port_max")
    for key, media in (("call.greeting", settings.call.greeting), ("tools.hold_sound", settings.tools.hold_sound)):
        path = local_path(media)
        if path is not None and not is_inside(path, settings.call.greeting_dirs):
            errors.append(f"setting {key} = {media!r} is a file outside call.greeting_dirs = "
                          f"{list(settings.call.greeting_dirs)}: list its folder there (ARIBOT_CALL__GREETING_DIRS)"
                          + (" or use a sound: URI" if key == "call.greeting" else ""))
    if not is_loopback_host(settings.http.host) and not settings.http.token:
        errors.append(f"setting http.host = {settings.http.host!r} is not loopback: the HTTP API (calls, tools, "
                      "/logs) then needs a token; set http.token (ARIBOT_HTTP__TOKEN) or bind it to 127.0.0.1")
    return errors
