"""OpenAI-compatible endpoints the client can drive: path and request body, per endpoint.

Every request streams, asks for a final usage chunk (`stream_options.include_usage`), and pins
the output length with `max_tokens` and `ignore_eos` (vLLM's extension, also honoured by SGLang
and TensorRT-LLM): the body `vllm bench serve` sends. Not `min_tokens` as well: it turns on
vLLM's min-tokens logits processor on every decode step, which cost the engine 1.7% of its
throughput on the CPU box (benchmarks/request_body_cost.py) and is not what vLLM's client
measures. Server usage is the output-token count of record; the length asked for here is what
it is checked against (`output_len_mismatches`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_mgpu.bench.datasets import Sample


@dataclass(frozen=True)
class Endpoint:
    name: str
    path: str
    accepts_token_ids: bool  # can the prompt be a list of token ids (exact input length)?
    body: Callable[[str, Sample], dict[str, Any]]


_STREAM = {"stream": True, "stream_options": {"include_usage": True}}


def _completions(model: str, s: Sample) -> dict[str, Any]:
    prompt: Any = list(s.prompt) if isinstance(s.prompt, tuple) else s.prompt
    return {"model": model, "prompt": prompt, "max_tokens": s.output_len, "ignore_eos": True, **_STREAM}


def _chat(model: str, s: Sample) -> dict[str, Any]:
    if not isinstance(s.prompt, str):
        raise TypeError("the chat endpoint needs text prompts; convert token ids with datasets.as_text")
    return {"model": model, "messages": [{"role": "user", "content": s.prompt}],
            "max_completion_tokens": s.output_len, "ignore_eos": True, **_STREAM}


ENDPOINTS: dict[str, Endpoint] = {
    e.name: e
    for e in (
        Endpoint("completions", "/v1/completions", True, _completions),
        Endpoint("chat", "/v1/chat/completions", False, _chat),
    )
}
