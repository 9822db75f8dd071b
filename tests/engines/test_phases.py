"""Start-up phases and compile-cache state from real engine log lines (vLLM 0.32 CPU; SGLang 0.5 docs)."""

from __future__ import annotations

from pytest_mgpu.engines.phases import compile_cache_warm, phase_of

VLLM_CPU = [  # from a real tiny-model start on this CI box (tests/engines/test_vllm_cpu.py), prefixes trimmed
    ("(APIServer pid=1) INFO 12-02 12:08:41 [model.py:733] Resolved architecture: LlamaForCausalLM", "resolving model"),
    ("(EngineCore pid=2) INFO 12-02 12:08:59 [core.py:133] Initializing a V1 LLM engine (v0.32.0) with config: ...",
     "initialising engine"),
    ("(Worker pid=3) INFO 12-02 12:09:15 [cpu_model_runner.py:68] Starting to load model /m/llama768...",
     "loading weights"),
    ("(Worker pid=3) INFO 12-02 12:09:18 [cpu_model_runner.py:87] Warming up model for the compilation...",
     "compiling"),
    ("(EngineCore pid=2) INFO 12-02 12:10:36 [kv_cache_utils.py:2327] CPU KV cache size: 87,296 tokens",
     "allocating KV cache"),
    ("(APIServer pid=1) INFO 12-02 12:10:40 [entry.py:140] Starting vLLM server on http://127.0.0.1:54459",
     "starting server"),
    ("INFO:     Application startup complete.", "ready"),
]
SGLANG = [
    ("[2026-12-02 10:00:05 TP0] Load weight begin. avail mem=139.2 GB", "loading weights"),
    ("[2026-12-02 10:00:30 TP0] KV Cache is allocated. #tokens: 900000", "allocating KV cache"),
    ("[2026-12-02 10:00:31 TP0] Capture cuda graph begin. This can take up to several minutes.",
     "capturing CUDA graphs"),
    ("[2026-12-02 10:02:40] The server is fired up and ready to roll!", "ready"),
]


def test_phases_follow_a_vllm_cpu_start() -> None:
    text = "$ python -m vllm.entrypoints.openai.api_server ...\n"
    assert phase_of(text) == "starting"
    for line, phase in VLLM_CPU:
        text += line + "\n"
        assert phase_of(text) == phase, line


def test_phases_follow_an_sglang_start() -> None:
    text = ""
    for line, phase in SGLANG:
        text += line + "\n"
        assert phase_of(text) == phase, line


def test_compile_cache_state() -> None:
    cold = "(Worker pid=3) INFO [decorators.py:743] [backbone] saved AOT compiled function to /c/torch_compile_cache"
    warm = "(Worker pid=3) INFO [decorators.py:512] [backbone] loaded AOT compiled function from /c/torch_compile_cache"
    assert compile_cache_warm(cold) is False
    assert compile_cache_warm(warm) is True
    assert compile_cache_warm("\n".join(line for line, _ in VLLM_CPU)) is None
