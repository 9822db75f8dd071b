import asyncio, statistics, sys, time, json
sys.path.insert(0, "/work/wt/fidelity")
import aiohttp
from pytest_mgpu.testing import Behavior, Script, ScriptedServer
hs = []
def tc():
    t = aiohttp.TraceConfig()
    async def s(session, ctx, p): ctx.t0 = time.perf_counter()
    async def h(session, ctx, p): hs.append(time.perf_counter() - ctx.t0)
    t.on_request_start.append(s); t.on_request_chunk_sent.append(h)
    return t
payload = {"model": "scripted", "prompt": "hello " * 128, "max_tokens": 2, "stream": True, "stream_options": {"include_usage": True}}
async def main(srv, trust, use_json):
    url = srv.base_url + "/v1/completions"
    s = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1, keepalive_timeout=60), trust_env=trust, trace_configs=[tc()])
    for i in range(40):
        st = time.perf_counter()
        if use_json:
            async with s.post(url, json=payload, headers={"x-request-id": "x"}) as r: await r.read()
        else:
            async with s.post(url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json", "x-request-id": "x"}) as r: await r.read()
    await s.close()
with ScriptedServer(Script(Behavior())) as srv:
    res = {}
    for k in range(3):
        for trust in (True, False):
            for js in (True, False):
                hs.clear(); asyncio.run(main(srv, trust, js)); res.setdefault((trust, js), []).append(statistics.median(hs) * 1000)
    for k, v in res.items(): print("trust_env=%s json=%s: start->body sent median ms per round %s" % (k[0], k[1], [round(x, 3) for x in v]))
