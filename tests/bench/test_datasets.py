from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_mgpu import Workload
from pytest_mgpu.bench import datasets


@pytest.fixture(scope="module")
def tok() -> datasets.Tokenizer:
    from pytest_mgpu.engines.launchers import TINY_MODEL

    return datasets.load_tokenizer(TINY_MODEL)


def test_tiny_vocabulary_and_special_ids(tok: datasets.Tokenizer) -> None:
    assert datasets.vocabulary(tok) == (1024, (0, 1))


def test_random_prompts_have_exact_lengths_and_no_special_ids(tok: datasets.Tokenizer) -> None:
    w = Workload(input_len=100, output_len=7)
    samples = datasets.load(w, 0, 50, tok)
    assert len(samples) == 50
    for s in samples:
        assert isinstance(s.prompt, tuple)
        assert len(s.prompt) == s.prompt_len == 100
        assert s.output_len == 7
        assert min(s.prompt) >= 2
        assert max(s.prompt) < 1024


def test_random_prompts_are_reproducible_per_seed(tok: datasets.Tokenizer) -> None:
    w = Workload(input_len=64)
    assert datasets.load(w, 3, 10, tok) == datasets.load(w, 3, 10, tok)
    assert datasets.load(w, 3, 10, tok) != datasets.load(w, 4, 10, tok)
    assert len({s.prompt for s in datasets.load(w, 3, 10, tok)}) == 10


def test_range_ratio_spreads_lengths_within_vllm_bounds(tok: datasets.Tokenizer) -> None:
    samples = datasets.load(Workload(input_len=100, output_len=50, range_ratio=0.2), 0, 400, tok)
    ins, outs = [s.prompt_len for s in samples], [s.output_len for s in samples]
    assert (min(ins), max(ins)) == (80, 120)
    assert min(outs) >= 40
    assert max(outs) <= 60
    assert len(set(ins)) > 20


def test_prefix_is_shared_and_counted(tok: datasets.Tokenizer) -> None:
    samples = datasets.load(Workload(input_len=40, prefix_len=16), 0, 5, tok)
    prefixes = {s.prompt[:16] for s in samples}
    assert len(prefixes) == 1
    assert all(s.prompt_len == 56 for s in samples)
    assert len({s.prompt[16:] for s in samples}) == 5


def test_fixed_prompts_are_arithmetic(tok: datasets.Tokenizer) -> None:
    w = Workload(dataset="fixed", input_len=10, output_len=3)
    a = datasets.load(w, 0, 4, tok)
    assert a == datasets.load(w, 0, 4, tok)
    assert a[0].prompt == tuple(range(2, 12))  # ids 0 and 1 are special
    assert a[1].prompt == tuple(range(2 + 131, 2 + 141))
    assert all(s.prompt_len == 10 and s.output_len == 3 for s in a)


def test_as_text_reencodes_to_the_target_length(tok: datasets.Tokenizer) -> None:
    ids = datasets.load(Workload(input_len=128), 0, 20, tok)
    texts = datasets.as_text(ids, tok, 0)
    for s in texts:
        assert isinstance(s.prompt, str)
        assert len(tok.encode(s.prompt, add_special_tokens=False).ids) == s.prompt_len == 128


def _sharegpt(path: Path, entries: list[dict[str, object]]) -> str:
    path.write_text(json.dumps(entries))
    return str(path)


def _conv(prompt: str, reply: str) -> dict[str, object]:
    return {"conversations": [{"from": "human", "value": prompt}, {"from": "gpt", "value": reply}]}


def test_sharegpt_applies_vllm_pruning(tmp_path: Path, tok: datasets.Tokenizer) -> None:
    def n(text: str) -> int:
        return len(tok.encode(text).ids)

    short, ok_a, ok_b = "hi", "hello " * 5, "hello world " * 3
    near_limit, too_long, long_reply = "hello " * 250, "hello " * 300, "world " * 300
    assert n(short) < 4 <= min(n(ok_a), n(ok_b))
    assert n(too_long) > 1024 >= n(near_limit)
    assert n(near_limit) + n(long_reply) > 2048
    entries: list[dict[str, object]] = [
        _conv(ok_a, ok_b),  # kept
        _conv(short, ok_a),  # prompt under 4 tokens
        _conv(ok_a, short),  # reply under 4 tokens (the reply's own length is the output length)
        _conv(too_long, ok_a),  # prompt over 1024 tokens
        _conv(near_limit, long_reply),  # prompt and reply together over 2048
        {"conversations": [{"value": ok_a}]},  # a single turn: dropped before sampling
        _conv(ok_b, ok_a),  # kept
    ]
    path = _sharegpt(tmp_path / "sg.json", entries)
    samples = datasets.load(Workload(dataset="sharegpt", dataset_path=path, output_len=None), 0, 2, tok)
    assert sorted((s.prompt_len, s.output_len) for s in samples) == sorted([(n(ok_a), n(ok_b)), (n(ok_b), n(ok_a))])
    # a fixed output length skips the short-reply rule, as vLLM's --sharegpt-output-len does
    # (and the long prompt now fits: 1000 + 9 <= 2048)
    fixed = datasets.load(Workload(dataset="sharegpt", dataset_path=path, output_len=9), 0, 4, tok)
    assert sorted(s.prompt_len for s in fixed) == sorted([n(ok_a), n(ok_a), n(near_limit), n(ok_b)])
    assert {s.output_len for s in fixed} == {9}


def test_sharegpt_oversamples_and_shuffles_by_seed(tmp_path: Path, tok: datasets.Tokenizer) -> None:
    path = _sharegpt(tmp_path / "sg.json", [_conv("hello " * (4 + i), "world " * 8) for i in range(6)])
    w = Workload(dataset="sharegpt", dataset_path=path)
    a = datasets.load(w, 0, 10, tok)
    assert len(a) == 10
    assert a == datasets.load(w, 0, 10, tok)
    assert [s.prompt for s in a[:6]] != [s.prompt for s in datasets.load(w, 1, 6, tok)]


def test_sharegpt_missing_file_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match=r"dataset_path '/nonexistent/sg.json' is not a file"):
        Workload(dataset="sharegpt", dataset_path="/nonexistent/sg.json")


def test_missing_jsonl_dataset_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match=r"dataset '/nonexistent/p.jsonl' is not a file \(a JSONL file"):
        Workload(dataset="/nonexistent/p.jsonl")


def test_jsonl_prompts_and_output_tokens(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "a b c", "output_tokens": 5}\n\n{"prompt": "d e", "output_tokens": 9}\n')
    samples = datasets.load(Workload(dataset=str(path), output_len=None), 0, 4, None)
    assert sorted({s.output_len for s in samples}) == [5, 9]
    assert len(samples) == 4
    fixed = datasets.load(Workload(dataset=str(path), output_len=3), 0, 2, None)
    assert {s.output_len for s in fixed} == {3}


def test_jsonl_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "a"}\n{"text": "b"}\n')
    with pytest.raises(ValueError, match=r"p.jsonl:2: expected an object with a string 'prompt'"):
        datasets.load(Workload(dataset=str(path)), 0, 1, None)
    with pytest.raises(ValueError, match=r"p.jsonl:1: no integer 'output_tokens'"):
        datasets.load(Workload(dataset=str(path), output_len=None), 0, 1, None)


def test_random_without_tokenizer_says_what_to_do() -> None:
    with pytest.raises(ValueError, match="needs the model's tokenizer"):
        datasets.load(Workload(), 0, 1, None)


def test_load_tokenizer_error_names_the_directory(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=f"expected a tokenizer.json in {tmp_path}"):
        datasets.load_tokenizer(tmp_path)
