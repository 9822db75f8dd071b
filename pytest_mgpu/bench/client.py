"""The streaming HTTP client: one request in, one `RequestRecord` out, never an exception.

Timing follows `vllm bench serve` exactly: the clock starts (`time.perf_counter`) right before
the POST; TTFT is the first server-sent event that carries a non-empty `choices` list (its
text may be empty; for chat the role-only opening chunk counts); each later such event adds a
gap to ITL; E2EL ends at the last such event (the usage chunk and `[DONE]` do not move it).

The hot loop works on bytes and parses JSON only for the usage chunk: the client must be
faster than the server it measures (vllm#39963: a 64 KiB read buffer cost 10x at long
contexts), so the read buffer is large and content events are recognised by a byte pattern.
"""

from __future__ import annotations

import json
import time
from typing import Any

import aiohttp

from pytest_mgpu.bench.records import RequestRecord
from pytest_mgpu.probe_http import auth_headers

READ_BUFSIZE_BYTES = 4 * 1024 * 1024
_HEADERS = {"Content-Type": "application/json"}
_CONTENT = (b'"choices":[{', b'"choices": [{')  # an event with at least one choice
_USAGE = (b'"usage":{', b'"usage": {')
_KNOWN = (b'"choices":[]', b'"choices": []')  # an event with no choices (usage chunk)


# Below the server's own idle keep-alive (uvicorn and vLLM: 5 s): a pooled connection the server
# has already closed fails the next request with "Server disconnected" (seen between repeats).
KEEPALIVE_S = 3.0


def make_session(max_connections: int | None, api_key: str | None = None) -> aiohttp.ClientSession:
    """One pooled session per measurement; `api_key` goes out as `Authorization: Bearer` on every request.

    `trust_env=False`: never through `http_proxy` from the environment (a proxy would time the proxy).
    """
    connector = aiohttp.TCPConnector(limit=max_connections or 0, limit_per_host=max_connections or 0,
                                     keepalive_timeout=KEEPALIVE_S, ttl_dns_cache=300)
    return aiohttp.ClientSession(connector=connector, read_bufsize=READ_BUFSIZE_BYTES, trust_env=False,
                                 headers=auth_headers(api_key), auto_decompress=False,
                                 timeout=aiohttp.ClientTimeout(total=None))


def _error_text(status: int, body: str) -> str:
    message = body.strip()
    try:
        data = json.loads(body)
        err = data.get("error", data) if isinstance(data, dict) else data
        message = err.get("message", message) if isinstance(err, dict) else str(err)
    except ValueError:
        pass
    return f"HTTP {status}: {message[:500]}"


async def _post(session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str],
                timeout: aiohttp.ClientTimeout) -> aiohttp.ClientResponse:
    """POST, once more if a pooled connection turns out closed before any response came back.

    The server closes idle keep-alive connections after 5 s by its own clock; a client whose event
    loop lags (a 2-core box) can still pick such a connection under KEEPALIVE_S by its clock, and
    the request dies with "Server disconnected" before the server ever saw it (no access-log line).
    """
    try:
        return await session.post(url, data=body, headers=headers, timeout=timeout)
    except aiohttp.ServerDisconnectedError:
        return await session.post(url, data=body, headers=headers, timeout=timeout)


async def stream_request(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    *,
    index: int,
    scheduled_s: float,
    ready_s: float,
    prompt_len: int,
    output_len: int,
    timeout_s: float,
    request_id: str,
) -> RequestRecord:
    """Send one streaming request and time it; failures come back as records, not exceptions."""
    headers = {**_HEADERS, "x-request-id": request_id}
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    gaps: list[float] = []
    append = gaps.append
    first = last = 0.0
    events = 0
    usage: dict[str, Any] | None = None
    stream_error = ""
    st = time.perf_counter()
    try:
        async with await _post(session, url, body, headers, timeout) as resp:
            if resp.status != 200:
                return RequestRecord(index, scheduled_s, ready_s, st, False, requested_output_tokens=output_len,
                                     error=_error_text(resp.status, await resp.text(errors="replace")))
            readany = resp.content.readany
            rest = b""
            while True:
                data = await readany()
                if not data:
                    break
                now = time.perf_counter()
                if rest:
                    data = rest + data
                start = 0
                while (end := data.find(b"\n\n", start)) >= 0:
                    event = data[start:end]
                    start = end + 2
                    if _CONTENT[0] in event or _CONTENT[1] in event:
                        if events:
                            append(now - last)
                        else:
                            first = now
                        events += 1
                        last = now
                        if _USAGE[0] in event or _USAGE[1] in event:
                            usage = _usage_of(event) or usage
                    elif event.strip():
                        parsed = _parse_other(event)
                        if parsed is not None:
                            kind, value = parsed
                            if kind == "usage":
                                usage = value
                            elif kind == "error":
                                stream_error = value
                            elif kind == "content":
                                if events:
                                    append(now - last)
                                else:
                                    first = now
                                events += 1
                                last = now
                rest = data[start:]
            if rest.strip():  # a last event without its blank line
                parsed = _parse_other(rest)
                if parsed is not None and parsed[0] == "usage":
                    usage = parsed[1]
    except TimeoutError:
        return RequestRecord(index, scheduled_s, ready_s, st, False, requested_output_tokens=output_len,
                             error=f"timed out after {timeout_s:g} s ({events} token events received)")
    except Exception as exc:  # connection refused or reset, bad chunking: a failed request, not a crash
        return RequestRecord(index, scheduled_s, ready_s, st, False, requested_output_tokens=output_len,
                             error=f"{type(exc).__name__}: {exc}")
    if stream_error or not events:
        return RequestRecord(index, scheduled_s, ready_s, st, False, requested_output_tokens=output_len,
                             error=stream_error or "the stream ended without a single token event")
    prompt_tokens, output_tokens = prompt_len, events
    if usage is not None:
        prompt_tokens = int(usage.get("prompt_tokens") or prompt_len)
        output_tokens = int(usage.get("completion_tokens") or 0)
    return RequestRecord(index, scheduled_s, ready_s, st, True, first - st, tuple(gaps), last - st,
                         output_tokens, prompt_tokens, output_len, usage is not None)


def _payload(event: bytes) -> Any:
    for line in event.split(b"\n"):
        line = line.strip()
        if line.startswith(b"data:"):
            text = line[5:].strip()
            if text == b"[DONE]":
                return None
            return json.loads(text)
    return None  # comments (": ping") and other fields


def _usage_of(event: bytes) -> dict[str, Any] | None:
    data = _payload(event)
    usage = data.get("usage") if isinstance(data, dict) else None
    return usage if isinstance(usage, dict) else None


def _parse_other(event: bytes) -> tuple[str, Any] | None:
    """Events the byte patterns did not classify: usage, errors, oddly formatted content."""
    try:
        data = _payload(event)
    except ValueError:
        return ("error", f"unparseable stream event: {event[:200]!r}")
    if not isinstance(data, dict):
        return None
    if data.get("choices"):
        return ("content", None)
    if isinstance(data.get("usage"), dict):
        return ("usage", data["usage"])
    if "error" in data:
        err = data["error"]
        return ("error", "stream error: " + str(err.get("message", err) if isinstance(err, dict) else err))
    return None
