"""`RequestRecord`: one request as the client saw it (kept free of aiohttp, for light readers)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request as the client saw it. Times are `time.perf_counter()` seconds."""

    index: int
    scheduled_s: float  # when the load shape wanted it sent
    ready_s: float  # when it was free to go: max(scheduled, a concurrency slot freed)
    send_s: float  # clock read right before the POST (vLLM's start_time)
    success: bool
    ttft_s: float = 0.0
    itl_s: tuple[float, ...] = ()
    e2el_s: float = 0.0
    output_tokens: int = 0  # server usage.completion_tokens (else content events counted)
    prompt_tokens: int = 0  # server usage.prompt_tokens (else the dataset's count)
    requested_output_tokens: int = 0
    usage_reported: bool = False
    error: str = ""

    @property
    def queue_s(self) -> float:
        """Time spent waiting for a concurrency slot (vLLM's client_queue_time)."""
        return self.ready_s - self.scheduled_s

    @property
    def dispatch_lag_s(self) -> float:
        """How late the client sent it once it was free to go: the client's own slowness."""
        return self.send_s - self.ready_s

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["itl_s"] = list(self.itl_s)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RequestRecord:
        return cls(**{**data, "itl_s": tuple(data.get("itl_s", ()))})
