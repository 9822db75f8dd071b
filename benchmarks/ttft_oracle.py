"""Where vLLM's client clock and ours differ, timed against the scripted server (the timing oracle).

Both clients send the same text-prompt requests, alternating, one at a time, to a server that
writes the first token exactly `--ttft-ms` after it received the request and logs, on the
system-wide clock both clients read, when each request arrived and when each event left. For each
client it prints:
  send path   client clock start -> the server has the request (what the client spends before
              the request leaves: vLLM's `trust_env=True` session looks up proxy variables and
              ~/.netrc on every request, inside its TTFT)
  TTFT        as the client reports it
  receive     the client's TTFT minus the server's first write, from the client's clock start
              (what the receive path adds)

Both clients start the clock right before the POST and stop it at the first event with a
`choices` entry, so their TTFTs differ by the send path only; the difference is vLLM's client's
own time, not the engine's. `compare_vllm_client.py` subtracts it to report both numbers.

    python benchmarks/ttft_oracle.py --requests 60
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's pytest_mgpu, installed or not

from pytest_mgpu.bench.client import make_session, stream_request
from pytest_mgpu.testing import Behavior, Script, ScriptedServer


@dataclass(frozen=True)
class ClockReport:
    client: str
    send_path_ms: float  # medians
    ttft_ms: float
    receive_ms: float


async def _both(base_url: str, n: int, output_len: int) -> dict[str, list[tuple[str, float, float]]]:
    """(request id, client clock start, client TTFT s) per request, per client."""
    import aiohttp
    from vllm.benchmarks.lib.endpoint_request_func import RequestFuncInput, async_request_openai_completions

    url = base_url + "/v1/completions"
    prompt = " ".join(["hello"] * 128)
    ours_session = make_session(1)
    # vLLM's session as `vllm bench serve` builds it (serve.py, benchmark())
    vllm_session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=1, limit_per_host=1, ttl_dns_cache=300, use_dns_cache=True,
                                       keepalive_timeout=60, enable_cleanup_closed=True, force_close=False,
                                       ssl=False),
        trust_env=True, timeout=aiohttp.ClientTimeout(total=6 * 60 * 60))
    out: dict[str, list[tuple[str, float, float]]] = {"ours": [], "vllm": []}
    try:
        for i in range(n):
            for tool in ("ours", "vllm") if i % 2 else ("vllm", "ours"):
                rid = f"{tool}-{i}"
                if tool == "ours":
                    body = json.dumps({"model": "scripted", "prompt": prompt, "max_tokens": output_len,
                                       "ignore_eos": True, "stream": True,
                                       "stream_options": {"include_usage": True}}).encode()
                    r = await stream_request(ours_session, url, body, index=i, scheduled_s=0.0, ready_s=0.0,
                                             prompt_len=128, output_len=output_len, timeout_s=60.0, request_id=rid)
                    if not r.success:
                        raise RuntimeError(f"our client failed against the scripted server: {r.error}")
                    out[tool].append((rid, r.send_s, r.ttft_s))
                else:
                    o = await async_request_openai_completions(RequestFuncInput(
                        prompt=prompt, api_url=url, prompt_len=128, output_len=output_len, model="scripted",
                        ignore_eos=True, request_id=rid), vllm_session)
                    if not o.success:
                        raise RuntimeError(f"vLLM's client failed against the scripted server: {o.error}")
                    out[tool].append((rid, o.start_time, o.ttft))
    finally:
        await ours_session.close()
        await vllm_session.close()
    return out


def measure(n: int = 40, ttft_s: float = 0.020, itl_s: float = 0.002, output_len: int = 8) -> list[ClockReport]:
    with ScriptedServer(Script(Behavior(ttft_s=ttft_s, itl_s=itl_s))) as srv:
        rows = asyncio.run(_both(srv.base_url, n, output_len))
        log: dict[str, Any] = {str(q["id"]): q for q in srv.stats().requests}
    reports = []
    for tool, rs in rows.items():
        send = [(log[rid]["received_s"] - st) * 1000 for rid, st, _ in rs]
        ttft = [t * 1000 for _, _, t in rs]
        receive = [t * 1000 - (log[rid]["write_s"][0] - st) * 1000 for rid, st, t in rs]
        reports.append(ClockReport(tool, statistics.median(send), statistics.median(ttft), statistics.median(receive)))
    return reports


def vllm_extra_ms(reports: list[ClockReport]) -> float:
    """How much longer vLLM's client takes than ours to get a request to the server (median)."""
    by = {r.client: r for r in reports}
    return by["vllm"].send_path_ms - by["ours"].send_path_ms


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=40, help="per client")
    p.add_argument("--ttft-ms", type=float, default=20.0)
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()
    for k in range(a.rounds):
        reports = measure(a.requests, a.ttft_ms / 1000)
        for r in reports:
            print(f"round {k + 1} {r.client:>5}: send path {r.send_path_ms:6.3f} ms  TTFT {r.ttft_ms:7.3f} ms "
                  f"(scripted {a.ttft_ms:g})  receive path {r.receive_ms:6.3f} ms")
        print(f"round {k + 1}: vLLM's client adds {vllm_extra_ms(reports):.3f} ms before its request reaches the "
              "server", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
