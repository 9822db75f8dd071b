"""`--mgpu-engine external`: a server someone else runs. No lifecycle; the user says how many devices."""

from __future__ import annotations

import json
import urllib.error

from pytest_mgpu import probe_http
from pytest_mgpu.engines.process import EngineStartError
from pytest_mgpu.engines.spec import EngineServer, EngineSpec
from pytest_mgpu.settings import Settings


def connect(settings: Settings, spec: EngineSpec) -> EngineServer:
    base = (settings.base_url or "").rstrip("/")
    try:
        with probe_http.get(f"{base}/v1/models", timeout_s=10, api_key=settings.api_key) as resp:
            models = [m["id"] for m in json.load(resp).get("data", [])]
    except (urllib.error.URLError, OSError, ValueError, KeyError) as exc:
        raise EngineStartError(
            f"the external server at {base} did not answer GET /v1/models ({exc}); expected an OpenAI-compatible "
            "server. Check --mgpu-base-url and that the server is up."
        ) from None
    if not models:
        raise EngineStartError(f"the external server at {base} serves no model (GET /v1/models is empty)")
    name = settings.model if settings.model in models else models[0]
    return EngineServer(spec=spec, base_url=base, model_name=str(name),
                        devices=tuple(range(settings.external_devices)), api_key=settings.api_key)
