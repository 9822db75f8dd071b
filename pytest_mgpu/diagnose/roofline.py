"""The decode roofline: the fastest a memory-bound decode step can be, and how close a result came.

Each decode step reads every weight once (split over TP; PP stages run one after another, so
PP does not shorten a token) plus the KV cache of every sequence in the batch (split over at
most n_kv_heads ranks):

    TPOT_floor = (W / TP + B * ctx * KV_tok / min(TP, n_kv_heads)) / BW_peak
    MBU        = TPOT_floor / TPOT_measured

W counts every parameter (embeddings too, as the usual "16.06 GB for Llama-3.1-8B" does).
A TPOT under the floor (MBU > 1) means the measurement is wrong. Only dense decoder models
with a gated MLP (Llama, Mistral, Qwen2/3, Gemma shapes) are modelled; anything else
(mixture-of-experts, unknown quantization) has no floor rather than a wrong one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_mgpu.diagnose.registry import Context, detector
from pytest_mgpu.findings import Finding, Severity
from pytest_mgpu.hardware.topology import Device

if TYPE_CHECKING:
    from pytest_mgpu.engines.spec import EngineServer
    from pytest_mgpu.hardware.topology import Topology

# Peak DRAM bandwidth by GPU name (decimal bytes/s), first match wins; NVML's clock x bus width comes first.
PEAK_BANDWIDTH: tuple[tuple[str, float], ...] = (
    (r"H200", 4.8e12),
    (r"H100.*NVL", 3.9e12),
    (r"H100.*PCIe", 2.0e12),
    (r"H100", 3.35e12),
    (r"A100.*PCIe.*80GB|A100.*80GB.*PCIe", 1.94e12),
    (r"A100.*80GB", 2.039e12),
    (r"A100", 1.555e12),
    (r"\bL4\b", 0.3e12),
    (r"RTX 4090", 1.008e12),
)
DTYPE_BYTES = {"bfloat16": 2.0, "bf16": 2.0, "float16": 2.0, "fp16": 2.0, "half": 2.0, "float32": 4.0,
               "float": 4.0, "fp8": 1.0, "fp8_e4m3": 1.0, "fp8_e5m2": 1.0}
_MOE_KEYS = ("num_experts", "num_local_experts", "n_routed_experts", "moe_num_experts")
MAX_PLAUSIBLE_MBU = 1.0


class RooflineUnavailable(ValueError):
    """The model's shape or the device's bandwidth is not known well enough for a floor."""


@dataclass(frozen=True)
class ModelShape:
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    tie_word_embeddings: bool = False
    attention_bias: bool = False
    weight_bytes_per_param: float = 2.0
    kv_bytes_per_value: float = 2.0

    @property
    def params(self) -> int:
        h, q, kv = self.hidden_size, self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
        attention = h * q + 2 * h * kv + q * h + ((q + 2 * kv) if self.attention_bias else 0)
        mlp = 3 * h * self.intermediate_size  # gate, up, down
        per_layer = attention + mlp + 2 * h  # two RMSNorms
        embeddings = self.vocab_size * h * (1 if self.tie_word_embeddings else 2)
        return self.num_layers * per_layer + embeddings + h  # final norm

    @property
    def weight_bytes(self) -> float:
        return self.params * self.weight_bytes_per_param

    @property
    def kv_bytes_per_token(self) -> float:
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim * self.kv_bytes_per_value

    @classmethod
    def from_config(cls, config: Mapping[str, Any], engine_args: Sequence[str] = ()) -> ModelShape:
        """From a Hugging Face `config.json` (and the engine's --dtype / --kv-cache-dtype, if given)."""
        cfg = dict(config.get("text_config") or config)
        if any(cfg.get(k) for k in _MOE_KEYS):
            raise RooflineUnavailable("mixture-of-experts models read only the active experts per token; "
                                      "their floor is not modelled")
        try:
            hidden, heads = int(cfg["hidden_size"]), int(cfg["num_attention_heads"])
            shape = dict(
                hidden_size=hidden, intermediate_size=int(cfg["intermediate_size"]),
                num_layers=int(cfg["num_hidden_layers"]), num_heads=heads,
                num_kv_heads=int(cfg.get("num_key_value_heads") or heads),
                head_dim=int(cfg.get("head_dim") or hidden // heads), vocab_size=int(cfg["vocab_size"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise RooflineUnavailable(f"config.json lacks a field the floor needs: {exc}") from None
        weight = _weight_bytes(config, cfg, _arg(engine_args, "--dtype"))
        kv_arg = _arg(engine_args, "--kv-cache-dtype")
        kv = DTYPE_BYTES.get(kv_arg, weight) if kv_arg and kv_arg != "auto" else (weight if weight <= 2 else 2.0)
        return cls(**shape, tie_word_embeddings=bool(cfg.get("tie_word_embeddings", config.get(
            "tie_word_embeddings", False))), attention_bias=bool(cfg.get("attention_bias", False)),
            weight_bytes_per_param=weight, kv_bytes_per_value=kv)


def _arg(args: Sequence[str], flag: str) -> str | None:
    for i, a in enumerate(args):
        if a == flag and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return None


def _weight_bytes(config: Mapping[str, Any], cfg: Mapping[str, Any], dtype_arg: str | None) -> float:
    quant = config.get("quantization_config") or cfg.get("quantization_config")
    if quant:
        method = str(quant.get("quant_method", "")).lower()
        if method in DTYPE_BYTES:
            return DTYPE_BYTES[method]
        raise RooflineUnavailable(f"quantization {method or quant!r} is not modelled")
    if dtype_arg and dtype_arg != "auto":
        if dtype_arg not in DTYPE_BYTES:
            raise RooflineUnavailable(f"--dtype {dtype_arg} is not modelled")
        return DTYPE_BYTES[dtype_arg]
    name = str(cfg.get("torch_dtype") or cfg.get("dtype") or config.get("torch_dtype") or "bfloat16")
    size = DTYPE_BYTES.get(name.removeprefix("torch."), 2.0)
    return 2.0 if size > 2 else size  # engines serve float32 checkpoints in 16 bits by default


def load_config(model: str) -> dict[str, Any]:
    """`config.json` of a local model directory, or of a hub id already in the Hugging Face cache."""
    path = Path(model) / "config.json"
    if not path.is_file():
        if Path(model).is_absolute() or Path(model).exists() or model.count("/") > 1:
            raise RooflineUnavailable(f"no config.json in {model!r}")
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(model, "config.json")
        except Exception:  # not installed, or not a valid hub id
            cached = None
        if not isinstance(cached, str):
            raise RooflineUnavailable(f"no config.json for {model!r} locally or in the Hugging Face cache")
        path = Path(cached)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise RooflineUnavailable(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise RooflineUnavailable(f"{path} is not a JSON object")
    return data


def peak_bandwidth(device: Device) -> float | None:
    """Peak DRAM bandwidth (bytes/s): NVML's memory clock x bus width when known, else the table by name."""
    if device.memory_bandwidth_bytes_per_s:
        return float(device.memory_bandwidth_bytes_per_s)
    for pattern, bandwidth in PEAK_BANDWIDTH:
        if re.search(pattern, device.name, re.IGNORECASE):
            return bandwidth
    return None


@dataclass(frozen=True)
class Roofline:
    tpot_floor_ms: float
    weight_bytes: float  # the whole model
    kv_bytes_per_step: float  # the whole batch's KV cache, read once per step
    bandwidth_bytes_per_s: float  # peak, per device
    tp: int
    pp: int
    batch: float
    context_tokens: float

    def mbu(self, tpot_ms: float) -> float:
        return self.tpot_floor_ms / tpot_ms if tpot_ms > 0 else 0.0

    def to_json(self) -> dict[str, float]:
        return {"tpot_floor_ms": self.tpot_floor_ms, "weight_bytes": self.weight_bytes,
                "kv_bytes_per_step": self.kv_bytes_per_step, "bandwidth_bytes_per_s": self.bandwidth_bytes_per_s,
                "tp": self.tp, "pp": self.pp, "batch": self.batch, "context_tokens": self.context_tokens}


def tpot_floor(shape: ModelShape, bandwidth_bytes_per_s: float, tp: int = 1, pp: int = 1,
               batch: float = 1.0, context_tokens: float = 0.0) -> Roofline:
    kv = batch * context_tokens * shape.kv_bytes_per_token
    per_device = shape.weight_bytes / tp + kv / min(tp, shape.num_kv_heads)
    return Roofline(per_device / bandwidth_bytes_per_s * 1000, shape.weight_bytes, kv, bandwidth_bytes_per_s,
                    tp, pp, batch, context_tokens)


def decode_load(metrics: Mapping[str, float], max_concurrency: int | None) -> tuple[float, float]:
    """(sequences in flight, mean context length) during decode, from a result's metrics (Little's law)."""
    completed = metrics.get("completed") or 0.0
    if not completed:
        return 1.0, 0.0
    batch = metrics.get("request_throughput", 0.0) * metrics.get("mean_e2el_ms", 0.0) / 1000
    batch = min(max(batch, 1.0), float(max_concurrency or completed), completed)
    context = (metrics.get("total_input_tokens", 0.0) + metrics.get("total_output_tokens", 0.0) / 2) / completed
    return batch, context


def estimate(topology: Topology, server: EngineServer, metrics: Mapping[str, float],
             max_concurrency: int | None) -> Roofline:
    """The floor for this engine on its devices under the load the result saw."""
    ranks = [topology.devices[i] for i in server.devices[: server.spec.world_size]]
    if not ranks or any(d.kind != "cuda" for d in ranks):
        raise RooflineUnavailable("the roofline is modelled for GPUs only")
    bandwidths = [peak_bandwidth(d) for d in ranks]
    if any(b is None for b in bandwidths):
        raise RooflineUnavailable(f"peak memory bandwidth of {ranks[0].name!r} is not known")
    shape = ModelShape.from_config(load_config(server.spec.model), server.spec.extra_args)
    batch, context = decode_load(metrics, max_concurrency)
    return tpot_floor(shape, min(b for b in bandwidths if b is not None), server.spec.tp, server.spec.pp,
                      batch, context)


@detector("below-roofline", "a TPOT under the memory-bandwidth floor: the measurement is wrong")
def below_roofline(ctx: Context) -> Iterable[Finding]:
    tpot = ctx.result.metrics.get("median_tpot_ms")
    if not tpot:
        return
    try:
        roof = estimate(ctx.topology, ctx.server, ctx.result.metrics, ctx.result.workload.max_concurrency)
    except RooflineUnavailable:
        return
    mbu = roof.mbu(tpot)
    if mbu <= MAX_PLAUSIBLE_MBU:
        return
    yield Finding(
        "below-roofline", Severity.ERROR,
        f"median TPOT {tpot:.3g} ms is below the memory-bandwidth floor {roof.tpot_floor_ms:.3g} ms "
        f"(MBU {mbu:.2f} > 1: {roof.weight_bytes / 1e9:.2f} GB of weights / TP={roof.tp} plus "
        f"{roof.kv_bytes_per_step / 1e9:.2f} GB of KV cache at {roof.bandwidth_bytes_per_s / 1e12:.3g} TB/s). "
        f"No decode is that fast, so the measurement is wrong: tokens counted wrongly, cached or truncated "
        f"responses, speculative decoding, or a model/dtype other than the one configured.",
        {"median_tpot_ms": tpot, "mbu": mbu, **roof.to_json()},
    )
