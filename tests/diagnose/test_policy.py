"""`--mgpu-fail-on`: which findings fail a test, parsed at configure time."""

from __future__ import annotations

import json

import pytest

from pytest_mgpu import metrics
from pytest_mgpu.diagnose import CODES
from pytest_mgpu.diagnose.enrich import busy_metric
from pytest_mgpu.diagnose.policy import failing, failure_message, parse_fail_on
from pytest_mgpu.findings import Finding, Severity

ISSUE_CODES = {"idle-devices", "cross-numa", "pcie-degraded", "p2p-unsupported", "throttled", "shared-device",
               "client-bound", "below-roofline"}


def test_every_code_of_the_issue_is_known_and_described() -> None:
    assert set(CODES) >= ISSUE_CODES
    assert all(CODES[c] for c in CODES)


@pytest.mark.parametrize(("text", "codes"), [
    ("none", ()), ("", ()), ("  NONE ", ()),
    ("idle-devices", ("idle-devices",)),
    ("throttled, below-roofline,throttled", ("throttled", "below-roofline")),
])
def test_parse_fail_on(text: str, codes: tuple[str, ...]) -> None:
    assert parse_fail_on(text) == codes


def test_parse_fail_on_all_and_unknown() -> None:
    assert set(parse_fail_on("all")) == set(CODES)
    with pytest.raises(ValueError, match=r"unknown finding code\(s\) idle-device; expected"):
        parse_fail_on("idle-device")


def test_failing_findings_and_their_message() -> None:
    found = [Finding("idle-devices", Severity.WARNING, "1 sits idle.", {"idle": 1}),
             Finding("client-bound", Severity.WARNING, "the client lagged.")]
    assert failing(found, ()) == []
    fatal = failing(found, ("client-bound", "throttled"))
    assert [f.code for f in fatal] == ["client-bound"]
    text = failure_message(failing(found, ("idle-devices",)), "vllm tp=1 pp=1 devices=2")
    assert text.splitlines() == [
        "pytest-mgpu: 1 finding(s) named in --mgpu-fail-on for vllm tp=1 pp=1 devices=2:",
        "  [idle-devices] (warning) 1 sits idle.",
        "    evidence: " + json.dumps({"idle": 1}),
    ]


def test_telemetry_metrics_are_registered_without_a_direction() -> None:
    for name in (busy_metric(0), busy_metric(11), "device_busy_min", "energy_j", "power_w_mean", "tpot_floor_ms"):
        assert metrics.get(name).direction is metrics.Direction.NONE
    assert metrics.get("tokens_per_joule").direction is metrics.Direction.HIGHER
    assert metrics.get("mbu").direction is metrics.Direction.HIGHER
