"""Findings: named pathologies a measurement shows, with the evidence behind each."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class Severity(enum.Enum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True)
class Finding:
    code: str  # "idle-devices", "cross-numa", "client-bound", ...
    severity: Severity
    message: str  # one sentence: what was found and what to do
    evidence: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "severity": self.severity.value, "message": self.message,
                "evidence": self.evidence}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Finding:
        return cls(data["code"], Severity(data["severity"]), data["message"], dict(data.get("evidence", {})))

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}"
