"""OpenAI-compatible endpoints the client can drive: path and request body, per endpoint.

Every request streams, asks for a final usage chunk (`stream_options.include_usage`), and pins
the output length exactly: `ignore_eos` with `max_tokens` = `min_tokens` (vLLM's extensions).
Server usage is the output-token count of record; the length asked for here is what it is
checked against.
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
    return {"model": model, "prompt": prompt, "max_tokens": s.output_len, "min_tokens": s.output_len,
            "ignore_eos": True, **_STREAM}


def _chat(model: str, s: Sample) -> dict[str, Any]:
    if not isinstance(s.prompt, str):
        raise TypeError("the chat endpoint needs text prompts; convert token ids with datasets.as_text")
    return {"model": model, "messages": [{"role": "user", "content": s.prompt}],
            "max_completion_tokens": s.output_len, "min_tokens": s.output_len, "ignore_eos": True, **_STREAM}


ENDPOINTS: dict[str, Endpoint] = {
    e.name: e
    for e in (
        Endpoint("completions", "/v1/completions", True, _completions),
        Endpoint("chat", "/v1/chat/completions", False, _chat),
    )
}
