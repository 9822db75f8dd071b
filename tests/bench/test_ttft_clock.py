"""TTFT against the timing oracle, one request at a time: what vLLM's client would report, minus nothing.

The scripted server writes the first token exactly TTFT after it received the request and logs both
times on the clock the client reads. The client's clock must start before the request leaves (never
a TTFT below the script) and stop when the first token's bytes arrive: the receive path (client TTFT
minus the server's first write, both from the client's clock start) within a few ms. What happens before
the request leaves is the client's own send path; vLLM's client spends more there
(benchmarks/ttft_oracle.py measures both), which is why its TTFT reads higher.
"""

from __future__ import annotations

import statistics

from pytest_mgpu import Workload
from pytest_mgpu.bench.runner import run_bench
from pytest_mgpu.testing import Behavior, Script, ScriptedServer

TTFT_S = 0.025
# A clock that stopped after parsing or after the whole chunk loop would be tens of ms late; 0.4 ms is
# typical on a quiet box, but a busy CI neighbour delays the wake-up by milliseconds (a correctness
# bound, not a speed target: benchmarks/ttft_oracle.py measures the path).
RECEIVE_LIMIT_MS = 5.0


def _errors_ms(server: ScriptedServer, tok_path: str) -> tuple[float, float, float]:
    """(median receive error, median send path, median TTFT - scripted TTFT) in ms over one run."""
    server.reset()
    r = run_bench(server.engine_server(tokenizer_path=tok_path),
                  Workload(input_len=128, output_len=4, num_prompts=16, max_concurrency=1))
    log = {str(q["id"]).rsplit("-", 1)[1]: q for q in server.stats().requests if "-r0-" in str(q["id"])}
    records = r.requests[0]
    assert len(records) == len(log) == 16
    receive, send, over = [], [], []
    for rec in records:
        q = log[str(rec.index)]
        receive.append((rec.ttft_s - (q["write_s"][0] - rec.send_s)) * 1000)  # type: ignore[index,operator]
        send.append((q["received_s"] - rec.send_s) * 1000)  # type: ignore[operator]
        over.append(rec.ttft_s * 1000 - TTFT_S * 1000)
    return statistics.median(receive), statistics.median(send), statistics.median(over)


def test_ttft_is_the_scripted_ttft_plus_the_network_path(server: ScriptedServer, tok_path: str) -> None:
    server.set_script(Script(Behavior(ttft_s=TTFT_S, itl_s=0.002)))
    attempts = []
    for _ in range(5):  # other processes on a shared box can only delay the client: best of five
        receive, send, over = _errors_ms(server, tok_path)
        attempts.append((receive, send, over))
        assert over >= 0, f"TTFT {over:.3f} ms below the scripted {TTFT_S * 1000} ms: the clock starts late"
        assert send >= 0, f"the server had the request {-send:.3f} ms before the client's clock started"
        if 0 <= receive < RECEIVE_LIMIT_MS:
            break
    receive, send, over = attempts[-1]
    assert 0 <= receive < RECEIVE_LIMIT_MS, f"the receive path added {receive:.3f} ms in every attempt: {attempts}"
