"""The one error a benchmark raises when its numbers would be meaningless."""

from __future__ import annotations


class BenchError(Exception):
    """Too many requests failed for the measurement to mean anything.

    It is an error, never a performance number (`vllm bench serve` once exited 0 with zero
    successful requests, and CI stored all-zero metrics). It carries the server's own words:
    the first distinct error texts.
    """

    def __init__(self, message: str, *, errors: tuple[str, ...] = (), failed: int = 0, total: int = 0) -> None:
        self.errors = errors
        self.failed = failed
        self.total = total
        text = message
        if errors:
            text += "\nfirst distinct errors:\n" + "\n".join(f"  - {e}" for e in errors)
        super().__init__(text)
