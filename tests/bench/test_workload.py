from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from pytest_mgpu import Workload


def test_defaults_follow_vllm_ci_serving_tests() -> None:
    w = Workload()
    assert (w.input_len, w.output_len, w.num_prompts, w.seed) == (128, 128, 200, 0)
    assert math.isinf(w.request_rate)
    assert w.burstiness == 1.0
    assert (w.dataset, w.endpoint, w.dataset_kind) == ("random", "completions", "random")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"input_len": 0}, "input_len must be an integer >= 1"),
        ({"input_len": 1.5}, "input_len must be an integer >= 1"),
        ({"output_len": 0}, "output_len must be an integer >= 1"),
        ({"num_prompts": True}, "num_prompts must be an integer >= 1"),
        ({"max_concurrency": 0}, "max_concurrency must be an integer >= 1 or None"),
        ({"request_rate": 0}, "request_rate must be > 0"),
        ({"request_rate": float("nan")}, "request_rate must be > 0"),
        ({"burstiness": -1.0}, "burstiness must be > 0"),
        ({"warmup": -1}, "warmup must be an integer >= 0 or None"),
        ({"seed": -3}, "seed must be an integer >= 0"),
        ({"range_ratio": 1.0}, "range_ratio must be in [0, 1)"),
        ({"prefix_len": -1}, "prefix_len must be an integer >= 0"),
        ({"endpoint": "embeddings"}, "endpoint must be one of ['chat', 'completions']"),
        ({"dataset": "sonnet"}, "dataset must be one of random, fixed, sharegpt or the path of a .jsonl file"),
        ({"dataset": "sharegpt"}, "dataset 'sharegpt' needs dataset_path"),
        ({"dataset_path": "x.json"}, "is synthetic and takes no dataset_path"),
        ({"output_len": None}, "dataset 'random' needs an output_len"),
        ({"dataset": "fixed", "range_ratio": 0.5}, "dataset 'fixed' has exact lengths"),
        ({"input_len": 1, "range_ratio": 0.5}, "so no prompt is empty"),
        ({"goodput_ms": {"ttfb": 10}}, "goodput_ms takes ttft, tpot, e2el"),
        ({"text_prompts": 1}, "text_prompts must be True or False"),
        ({"goodput_ms": {"ttft": -1}}, "goodput_ms takes ttft, tpot, e2el"),
        # issue 12: wrong types and NaN name the field, never a raw error from the dataset's arithmetic
        ({"input_len": float("nan")}, "input_len must be an integer >= 1, got nan"),
        ({"input_len": "128"}, "input_len must be an integer >= 1, got '128'"),
        ({"input_len": None}, "input_len must be an integer >= 1, got None"),
        ({"output_len": "128"}, "output_len must be an integer >= 1"),
        ({"num_prompts": float("nan")}, "num_prompts must be an integer >= 1, got nan"),
        ({"max_concurrency": "8"}, "max_concurrency must be an integer >= 1 or None"),
        ({"request_rate": "10"}, "request_rate must be > 0"),
        ({"request_rate": None}, "request_rate must be > 0"),
        ({"burstiness": float("nan")}, "burstiness must be > 0"),
        ({"warmup": 1.0}, "warmup must be an integer >= 0 or None"),
        ({"seed": None}, "seed must be an integer >= 0"),
        ({"range_ratio": float("nan")}, "range_ratio must be in [0, 1), got nan"),
        ({"range_ratio": None}, "range_ratio must be in [0, 1), got None"),
        ({"prefix_len": None}, "prefix_len must be an integer >= 0, got None"),
        ({"prefix_len": "4"}, "prefix_len must be an integer >= 0"),
        ({"goodput_ms": {"ttft": float("nan")}}, "with finite values >= 0 ms, got 'ttft': nan"),
        ({"goodput_ms": {"ttft": float("inf")}}, "with finite values >= 0 ms"),
        ({"dataset": None}, "dataset must be a string, got None"),
        ({"dataset": "sharegpt", "dataset_path": 3}, "dataset_path must be a string"),
    ],
)
def test_bad_values_are_rejected_with_what_was_expected(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match="invalid Workload") as info:
        Workload(**kwargs)  # type: ignore[arg-type]
    assert message in str(info.value)


def test_goodput_that_is_not_a_mapping_is_a_type_error() -> None:
    with pytest.raises(TypeError, match=r"goodput_ms must be a dict such as \{'ttft': 2000\} \(ms\), got 5"):
        Workload(goodput_ms=5)  # type: ignore[arg-type]


def test_several_problems_are_reported_together() -> None:
    with pytest.raises(ValueError) as info:
        Workload(input_len=0, num_prompts=0)
    assert "input_len" in str(info.value)
    assert "num_prompts" in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [({}, 1), ({"max_concurrency": 16}, 16), ({"max_concurrency": 16, "num_prompts": 4}, 4),
     ({"max_concurrency": 16, "warmup": 0}, 0), ({"warmup": 3}, 3)],
)
def test_default_warmup_is_one_concurrency_wave(kwargs: dict[str, int], expected: int) -> None:
    assert Workload(**kwargs).warmup_requests == expected  # type: ignore[arg-type]


def test_goodput_dict_is_stored_as_sorted_pairs_and_stays_hashable() -> None:
    w = Workload(goodput_ms={"tpot": 100, "ttft": 2000})
    assert w.goodput_ms == (("tpot", 100), ("ttft", 2000))
    assert w.goodput == {"tpot": 100, "ttft": 2000}
    assert hash(w) == hash(Workload(goodput_ms={"ttft": 2000, "tpot": 100}))


def test_json_round_trip_keeps_infinity_and_is_strict_json(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text('{"prompt": "a", "output_tokens": 3}\n')
    w = Workload(max_concurrency=8, burstiness=float("inf"), goodput_ms={"ttft": 50.0},
                 dataset=str(tmp_path / "a.jsonl"),
                 output_len=None)
    data = w.to_json()
    assert data["request_rate"] == "inf"
    assert data["burstiness"] == "inf"
    text = json.dumps(data, allow_nan=False)
    assert Workload.from_json(json.loads(text)) == w


def test_from_json_names_unknown_fields() -> None:
    with pytest.raises(ValueError, match=r"unknown Workload fields \['concurrency'\]"):
        Workload.from_json({"concurrency": 4})


def test_jsonl_path_is_its_own_dataset(tmp_path: Path) -> None:
    path = tmp_path / "prompts.jsonl"
    path.write_text('{"prompt": "a", "output_tokens": 3}\n')
    w = Workload(dataset=str(path), output_len=None)
    assert w.dataset_kind == "jsonl"
    with pytest.raises(ValueError, match="a JSONL dataset is its own path"):
        Workload(dataset=str(path), dataset_path="/data/other.json")
