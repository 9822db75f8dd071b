"""The one way our probes (health, /v1/models) speak HTTP: no proxy for loopback, the API key sent.

urllib honours `http_proxy` from the environment; on a CI runner with a proxy and no `no_proxy`,
a probe of 127.0.0.1 went to the proxy and failed, so a live engine looked dead for its whole
start timeout. A loopback address never goes through a proxy. (aiohttp, the load generator,
ignores the environment unless asked: `trust_env=False`.)
"""

from __future__ import annotations

import ipaddress
import urllib.parse
import urllib.request
from http.client import HTTPResponse


def is_loopback(url: str) -> bool:
    host = (urllib.parse.urlsplit(url).hostname or "").lower()
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def auth_headers(api_key: str | None) -> dict[str, str]:
    """`Authorization: Bearer KEY` when a key is set (vLLM's --api-key, --mgpu-api-key)."""
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def send(req: urllib.request.Request, *, timeout_s: float) -> HTTPResponse:
    """Like urlopen (a context manager; raises URLError / OSError), never through a proxy for loopback."""
    handlers = [urllib.request.ProxyHandler({})] if is_loopback(req.full_url) else []
    resp = urllib.request.build_opener(*handlers).open(req, timeout=timeout_s)
    assert isinstance(resp, HTTPResponse)
    return resp


def get(url: str, *, timeout_s: float, api_key: str | None = None) -> HTTPResponse:
    return send(urllib.request.Request(url, headers=auth_headers(api_key)), timeout_s=timeout_s)
