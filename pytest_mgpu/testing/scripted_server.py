"""A scripted OpenAI-compatible streaming server: a timing oracle for load generators.

Each request follows a `Behavior` chosen by its `x-request-id` (fnmatch rules, first match
wins): first token after `ttft_s`, then one event every `itl_s`, on an absolute schedule from
the moment the request arrived (sleep overshoot does not accumulate). It can fail with an HTTP
status, hang, or report a usage count that differs from what it streamed. It logs every
request (arrival and finish times on the system-wide monotonic clock that
`time.perf_counter` reads on Linux, payload facts) and the most requests it had in flight.

It runs in its own process (`ScriptedServer`), so its timing does not share a GIL with the
client it measures, and it can be pinned to a core:

    with ScriptedServer(Script(Behavior(ttft_s=0.05, itl_s=0.01))) as srv:
        result = run_bench(srv.engine_server(), Workload(...))
        assert srv.stats().max_in_flight <= 4
"""

from __future__ import annotations

import argparse
import asyncio
import fnmatch
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pytest_mgpu import probe_http
from pytest_mgpu.engines.spec import EngineServer, EngineSpec


@dataclass(frozen=True)
class Behavior:
    ttft_s: float = 0.0  # arrival -> first token event
    itl_s: float = 0.0  # between token events
    tokens_per_event: int = 1
    events_per_write: int = 1  # >1 batches events into one socket write (fast server)
    output_tokens: int | None = None  # tokens to stream (None: the max_tokens asked for)
    usage_completion_tokens: int | None = None  # what usage claims (None: what was streamed)
    include_usage: bool = True  # send the usage chunk when the client asks for it
    status: int = 200  # non-200: answer with an OpenAI-style error body instead of a stream
    error_message: str = "scripted failure"
    hang_s: float = 0.0  # after the response headers, wait this long before the first token


@dataclass(frozen=True)
class Script:
    default: Behavior = field(default_factory=Behavior)
    rules: tuple[tuple[str, Behavior], ...] = ()  # (fnmatch pattern on x-request-id, behavior)

    def for_request(self, request_id: str) -> Behavior:
        for pattern, behavior in self.rules:
            if fnmatch.fnmatchcase(request_id, pattern):
                return behavior
        return self.default

    def to_json(self) -> dict[str, Any]:
        return {"default": asdict(self.default), "rules": [[p, asdict(b)] for p, b in self.rules]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Script:
        return cls(Behavior(**data.get("default", {})), tuple((p, Behavior(**b)) for p, b in data.get("rules", ())))


@dataclass(frozen=True)
class ServerStats:
    requests: tuple[dict[str, Any], ...]  # one entry per request, in arrival order
    max_in_flight: int

    def ids(self, pattern: str = "*") -> list[str]:
        return [r["id"] for r in self.requests if fnmatch.fnmatchcase(r["id"], pattern)]


# --- the server (runs in the child process) ------------------------------------------------


def _prompt_tokens(payload: dict[str, Any]) -> int:
    prompt = payload.get("prompt")
    if isinstance(prompt, list):
        return len(prompt)
    if isinstance(prompt, str):
        return len(prompt.split())
    return sum(len(str(m.get("content", "")).split()) for m in payload.get("messages", ()))


class _App:
    def __init__(self, script: Script, model: str, root: str | None) -> None:
        self.script = script
        self.model = model
        self.root = root or model
        self.log: list[dict[str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0

    def build(self) -> Any:
        from aiohttp import web

        app = web.Application()
        app.router.add_post("/v1/completions", self.generate)
        app.router.add_post("/v1/chat/completions", self.generate)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/health", self.health)
        app.router.add_get("/_stats", self.stats)
        app.router.add_post("/_script", self.set_script)
        app.router.add_post("/_reset", self.reset)
        return app

    async def health(self, request: Any) -> Any:
        from aiohttp import web

        return web.Response(text="ok")

    async def models(self, request: Any) -> Any:
        from aiohttp import web

        return web.json_response({"object": "list", "data": [{"id": self.model, "object": "model", "root": self.root}]})

    async def stats(self, request: Any) -> Any:
        from aiohttp import web

        return web.json_response({"requests": self.log, "max_in_flight": self.max_in_flight})

    async def set_script(self, request: Any) -> Any:
        from aiohttp import web

        self.script = Script.from_json(await request.json())
        return web.json_response({"ok": True})

    async def reset(self, request: Any) -> Any:
        from aiohttp import web

        self.log, self.max_in_flight = [], self.in_flight
        return web.json_response({"ok": True})

    async def generate(self, request: Any) -> Any:
        from aiohttp import web

        received = time.perf_counter()
        payload = await request.json()
        rid = request.headers.get("x-request-id", "")
        b = self.script.for_request(rid)
        chat = request.path.endswith("/chat/completions")
        asked = payload.get("max_completion_tokens") or payload.get("max_tokens") or 16
        entry: dict[str, Any] = {
            "id": rid, "path": request.path, "received_s": received, "finished_s": None, "write_s": [],
            "status": b.status,
            "max_tokens": asked, "min_tokens": payload.get("min_tokens"), "ignore_eos": payload.get("ignore_eos"),
            "stream": payload.get("stream"), "stream_options": payload.get("stream_options"),
            "prompt_is_token_ids": isinstance(payload.get("prompt"), list), "prompt_tokens": _prompt_tokens(payload),
        }
        self.log.append(entry)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if b.status != 200:
                body = {"error": {"message": b.error_message, "type": "ScriptedError", "code": b.status}}
                return web.json_response(body, status=b.status)
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
            await resp.prepare(request)
            if b.hang_s:
                await asyncio.sleep(b.hang_s)
            entry["write_s"] = await self._stream(
                resp, b, chat, int(b.output_tokens or asked), entry["prompt_tokens"],
                bool((payload.get("stream_options") or {}).get("include_usage")), received)
            await resp.write_eof()
            return resp
        finally:
            self.in_flight -= 1
            entry["finished_s"] = time.perf_counter()

    async def _stream(self, resp: Any, b: Behavior, chat: bool, n_tokens: int, prompt_tokens: int,
                      usage_asked: bool, t0: float) -> list[float]:
        """Stream the token events; returns when each write of them left (the oracle's truth)."""
        head = f'data: {{"id":"scripted","object":"{"chat.completion.chunk" if chat else "text_completion"}",' \
               f'"created":0,"model":"{self.model}","choices":['
        word = " tok" * b.tokens_per_event
        if chat:
            event = (head + f'{{"index":0,"delta":{{"content":"{word}"}},"logprobs":null,"finish_reason":null}}'
                     '],"usage":null}\n\n').encode()
            opening = (head + '{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,'
                       '"finish_reason":null}],"usage":null}\n\n').encode()
        else:
            event = (head + f'{{"index":0,"text":"{word}","logprobs":null,"finish_reason":null,'
                     '"stop_reason":null}],"usage":null}\n\n').encode()
            opening = b""
        n_events = -(-n_tokens // b.tokens_per_event)
        clock = time.perf_counter
        k = 0
        writes: list[float] = []
        while k < n_events:
            due = t0 + b.ttft_s + k * b.itl_s
            delay = due - clock()
            if delay > 0:
                await asyncio.sleep(delay)
            batch = min(b.events_per_write, n_events - k)
            await resp.write((opening if k == 0 else b"") + event * batch)
            writes.append(clock())
            k += batch
        if usage_asked and b.include_usage:
            used = n_tokens if b.usage_completion_tokens is None else b.usage_completion_tokens
            usage = {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens + used, "completion_tokens": used}
            await resp.write((head + '],"usage":' + json.dumps(usage, separators=(",", ":")) + "}\n\n").encode())
        await resp.write(b"data: [DONE]\n\n")
        return writes


async def _serve(args: argparse.Namespace) -> None:
    from aiohttp import web

    app = _App(Script.from_json(json.loads(args.script)), args.model, args.root)
    runner = web.AppRunner(app.build(), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port, backlog=1024)
    await site.start()
    port = runner.addresses[0][1]
    print(f"PORT {port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="scripted OpenAI-compatible streaming server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--model", default="scripted")
    parser.add_argument("--root", default=None, help="what /v1/models reports as the model's root")
    parser.add_argument("--script", default="{}", help="Script.to_json() as a JSON string")
    parser.add_argument("--cpu", type=int, default=None, help="pin the server to this CPU")
    args = parser.parse_args(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    asyncio.run(_serve(args))


# --- the handle (runs in the test or benchmark process) ------------------------------------


class ScriptedServer:
    """The scripted server in a child process; a context manager that always stops it."""

    def __init__(self, script: Script | None = None, *, model: str = "scripted", root: str | None = None,
                 cpu: int | None = None, start_timeout_s: float = 30.0) -> None:
        self.script = script or Script()
        self.model = model
        self.root = root
        self.cpu = cpu
        self.start_timeout_s = start_timeout_s
        self.port = 0
        self._proc: subprocess.Popen[str] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self) -> ScriptedServer:
        argv = [sys.executable, "-c", "from pytest_mgpu.testing.scripted_server import main; main()",
                "--model", self.model, "--script", json.dumps(self.script.to_json())]
        if self.root:
            argv += ["--root", self.root]
        if self.cpu is not None:
            argv += ["--cpu", str(self.cpu)]
        root = str(Path(__file__).resolve().parents[2])  # the same pytest_mgpu as this process
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
        self._proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env)
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()  # "PORT n", or "" if it died
        if not line.startswith("PORT "):
            self.stop()
            raise RuntimeError(f"the scripted server did not start (it printed {line!r}); see its stderr above")
        self.port = int(line.split()[1])
        return self

    def stop(self) -> None:
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        if self._proc.stdout:
            self._proc.stdout.close()
        self._proc = None

    def __enter__(self) -> ScriptedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base_url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with probe_http.send(req, timeout_s=30) as resp:
            return json.load(resp)

    def set_script(self, script: Script) -> None:
        self.script = script
        self._call("POST", "/_script", script.to_json())

    def reset(self) -> None:
        """Forget the request log (and the in-flight maximum)."""
        self._call("POST", "/_reset", {})

    def stats(self) -> ServerStats:
        data = self._call("GET", "/_stats")
        return ServerStats(tuple(data["requests"]), int(data["max_in_flight"]))

    def engine_server(self, *, n_devices: int = 1, tokenizer_path: str | None = None) -> EngineServer:
        """This server as the load generator sees an engine (engine "external")."""
        spec = EngineSpec(engine="external", model=self.model, n_devices=n_devices)
        return EngineServer(spec=spec, base_url=self.base_url, model_name=self.model,
                            devices=tuple(range(n_devices)), tokenizer_path=tokenizer_path)


if __name__ == "__main__":
    main()
