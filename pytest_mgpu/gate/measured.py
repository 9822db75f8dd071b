"""What the gate needs from a measurement: the shape of `pytest_mgpu.bench.results.BenchResult`.

Written as a Protocol so the gate depends on the shape, not on the load generator.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Protocol


class Measured(Protocol):
    @property
    def metrics(self) -> Mapping[str, float]: ...  # summary (median over repeats) per metric

    @property
    def spec(self) -> Mapping[str, Any]: ...  # engine spec key: engine, model, tp, pp, n_devices, ...

    @property
    def workload(self) -> Any: ...  # a frozen dataclass (or a mapping)

    @property
    def hardware(self) -> Mapping[str, Any]: ...  # at least "fingerprint" and "label"

    @property
    def versions(self) -> Mapping[str, str]: ...

    def samples(self, metric: str) -> tuple[float, ...]: ...  # per-repeat values


def workload_dict(workload: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(workload) and not isinstance(workload, type):
        return dataclasses.asdict(workload)
    if isinstance(workload, Mapping):
        return dict(workload)
    raise TypeError(f"expected a Workload dataclass or a mapping, got {type(workload).__name__}")


def label(result: Measured) -> str:
    """A short human name for the configuration, e.g. 'vllm tp=2 pp=1 devices=2'."""
    return config_label(result.spec, result.hardware)


def config_label(spec: Mapping[str, Any], hardware: Mapping[str, Any] | None = None) -> str:
    """`label` from a spec and the hardware facts it ran on (the node link of a multi-node engine)."""
    text = f"{spec.get('engine', '?')} tp={spec.get('tp', '?')} pp={spec.get('pp', '?')}"
    text += f" devices={spec.get('n_devices', '?')}"
    if int(spec.get("nodes", 1)) > 1:  # multi-node: how many, and what joins them
        link = (hardware or {}).get("node_link")
        text += f" nodes={spec['nodes']}" + (f" over {link}" if link else "")
    extra = spec.get("extra_args") or ()
    return text + (" " + " ".join(str(a) for a in extra) if extra else "")


def fingerprint(result: Measured) -> str:
    try:
        return str(result.hardware["fingerprint"])
    except (KeyError, TypeError):
        raise ValueError(
            "the result has no hardware fingerprint (result.hardware['fingerprint']); "
            "it cannot be compared with a baseline"
        ) from None
