"""Prompt sets, all seeded: a registry of loaders keyed by `Workload.dataset`.

Random and fixed prompts are token ids (sent as ids, so the engine sees exactly `input_len`
tokens); they need only the vocabulary size and the special ids, read from the model's
`tokenizer.json` with the light `tokenizers` library. ShareGPT and JSONL prompts are text.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_mgpu.bench.workload import Workload

Tokenizer = Any  # tokenizers.Tokenizer (imported lazily)


@dataclass(frozen=True)
class Sample:
    prompt: str | tuple[int, ...]  # token ids are sent as ids on /v1/completions
    prompt_len: int  # tokens as this side counts them; the server's usage overrides it
    output_len: int  # tokens asked for (max_tokens, ignore_eos)


@dataclass(frozen=True)
class DatasetLoader:
    name: str
    load: Callable[[Workload, int, int, Tokenizer | None], list[Sample]]  # (workload, seed, n, tokenizer)
    needs_tokenizer: bool
    check: Callable[[Workload], list[str]]  # problems with a workload, for Workload validation


def load_tokenizer(path: str | Path) -> Tokenizer:
    """A `tokenizers.Tokenizer` from a model directory (or its tokenizer.json)."""
    from tokenizers import Tokenizer as _Tokenizer

    p = Path(path)
    file = p if p.is_file() else p / "tokenizer.json"
    if not file.is_file():
        raise FileNotFoundError(
            f"expected a tokenizer.json in {p} (a Hugging Face model directory); none found. "
            "Pass the model's local directory as the tokenizer (CLI: --tokenizer DIR)."
        )
    return _Tokenizer.from_file(str(file))


def vocabulary(tok: Tokenizer) -> tuple[int, tuple[int, ...]]:
    """(vocabulary size, special token ids) of a tokenizer."""
    size = int(tok.get_vocab_size(with_added_tokens=True))
    special = tuple(sorted(i for i, t in tok.get_added_tokens_decoder().items() if t.special))
    return size, special


def kind_of(dataset: str) -> str:
    if dataset.endswith(".jsonl"):
        return "jsonl"
    return dataset if dataset in LOADERS and dataset != "jsonl" else "unknown"


def check(w: Workload) -> list[str]:
    kind = kind_of(w.dataset)
    if kind == "unknown":
        names = ", ".join(n for n in LOADERS if n != "jsonl")
        return [f"dataset must be one of {names} or the path of a .jsonl file, got {w.dataset!r}"]
    return LOADERS[kind].check(w)


def load(w: Workload, seed: int, n: int, tok: Tokenizer | None) -> list[Sample]:
    loader = LOADERS[kind_of(w.dataset)]
    if loader.needs_tokenizer and tok is None:
        raise ValueError(
            f"dataset {w.dataset!r} needs the model's tokenizer (for its vocabulary), but none is known; "
            "give the engine a local model directory or pass --tokenizer DIR"
        )
    return loader.load(w, seed, n, tok)


def needs_tokenizer(w: Workload, accepts_token_ids: bool) -> bool:
    kind = kind_of(w.dataset)
    return LOADERS[kind].needs_tokenizer or (kind in ("random", "fixed") and not sends_ids(w, accepts_token_ids))


def sends_ids(w: Workload, accepts_token_ids: bool) -> bool:
    """Do token-id prompts go out as ids (True) or as text that re-encodes to the same length?"""
    return accepts_token_ids and not w.text_prompts


# --- random and fixed: token ids ---------------------------------------------------------


def _allowed_ids(tok: Tokenizer) -> Any:
    import numpy as np

    size, special = vocabulary(tok)
    return np.setdiff1d(np.arange(size), np.array(special, dtype=np.int64))


def _random(w: Workload, seed: int, n: int, tok: Tokenizer | None) -> list[Sample]:
    """vLLM's random dataset: lengths uniform in [floor(L(1-r)), ceil(L(1+r))], a shared prefix."""
    import numpy as np

    rng = np.random.default_rng(seed)
    allowed = _allowed_ids(tok)
    r = w.range_ratio
    out_len = w.output_len or 1
    in_lens = rng.integers(math.floor(w.input_len * (1 - r)), math.ceil(w.input_len * (1 + r)) + 1, size=n)
    out_lo, out_hi = max(math.floor(out_len * (1 - r)), 1), max(math.ceil(out_len * (1 + r)), 1)
    out_lens = rng.integers(out_lo, out_hi + 1, size=n)
    prefix = allowed[rng.integers(0, len(allowed), size=w.prefix_len)].tolist()
    samples = []
    for i in range(n):
        body = allowed[rng.integers(0, len(allowed), size=int(in_lens[i]))].tolist()
        ids = tuple(prefix + body)
        samples.append(Sample(ids, len(ids), int(out_lens[i])))
    return samples


def _fixed(w: Workload, seed: int, n: int, tok: Tokenizer | None) -> list[Sample]:
    """Exact lengths, ids computed arithmetically: the same prompts on every numpy version."""
    import numpy as np

    allowed = _allowed_ids(tok)
    span = np.arange(w.input_len)
    out = w.output_len or 1
    return [
        Sample(tuple(allowed[(seed * 7919 + i * 131 + span) % len(allowed)].tolist()), w.input_len, out)
        for i in range(n)
    ]


def _check_synthetic(w: Workload) -> list[str]:
    p = []
    if w.dataset_path is not None:
        p.append(f"dataset {w.dataset!r} is synthetic and takes no dataset_path (got {w.dataset_path!r})")
    if w.output_len is None:
        p.append(f"dataset {w.dataset!r} needs an output_len")
    if w.prefix_len + math.floor(w.input_len * (1 - w.range_ratio)) < 1:
        p.append("prefix_len + floor(input_len * (1 - range_ratio)) must be >= 1 so no prompt is empty")
    if w.dataset == "fixed" and (w.range_ratio or w.prefix_len):
        p.append("dataset 'fixed' has exact lengths: range_ratio and prefix_len must be 0 (use 'random')")
    return p


def as_text(samples: list[Sample], tok: Tokenizer, seed: int) -> list[Sample]:
    """Token-id prompts as text that re-encodes to the same length (for the chat endpoint).

    Decoding then re-encoding does not always round-trip (BPE merges across the joins), so the
    ids are adjusted until it does, as vLLM's random dataset does (here: twenty tries, keeping
    the closest; `prompt_len` is the final count, and the server's usage has the last word).
    """
    import numpy as np

    rng = np.random.default_rng(seed + 0x7E47)
    allowed = _allowed_ids(tok)
    # ids that survive decode -> encode alone (byte-level BPEs have lone bytes that decode to U+FFFD)
    ids_all = allowed.tolist()
    pieces = tok.encode_batch(tok.decode_batch([[i] for i in ids_all]), add_special_tokens=False)
    clean = np.array([i for i, enc in zip(ids_all, pieces, strict=True) if enc.ids == [i]])
    is_clean = np.zeros(int(allowed.max()) + 1, dtype=bool)
    is_clean[clean] = True
    out = []
    for s in samples:
        if isinstance(s.prompt, str):
            out.append(s)
            continue
        ids, target = [i if is_clean[i] else int(clean[i % len(clean)]) for i in s.prompt], len(s.prompt)
        best = ""
        best_miss = target + 1
        for _ in range(20):
            text = tok.decode(ids, skip_special_tokens=False)
            ids = tok.encode(text, add_special_tokens=False).ids
            miss = abs(len(ids) - target)
            if miss < best_miss:
                best, best_miss = text, miss
            if miss == 0:
                break
            if len(ids) < target:
                ids += clean[rng.integers(0, len(clean), size=target - len(ids))].tolist()
            else:
                ids = ids[:target]
        out.append(replace(s, prompt=best, prompt_len=len(tok.encode(best, add_special_tokens=False).ids)))
    return out


# --- ShareGPT and JSONL: text -------------------------------------------------------------


def _valid_sharegpt(prompt_len: int, output_len: int, output_fixed: bool) -> bool:
    """vLLM's pruning: prompt and reply >= 4 tokens, prompt <= 1024, both together <= 2048."""
    return not (
        prompt_len < 4
        or (not output_fixed and output_len < 4)
        or prompt_len > 1024
        or prompt_len + output_len > 2048
    )


def _oversample(samples: list[Sample], n: int, seed: int, source: str) -> list[Sample]:
    if not samples:
        raise ValueError(f"{source} has no usable prompts")
    pick = random.Random(seed)
    return samples + [pick.choice(samples) for _ in range(n - len(samples))]


def _read_json(path: str, what: str) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} file {path} does not exist") from None


def _sharegpt(w: Workload, seed: int, n: int, tok: Tokenizer | None) -> list[Sample]:
    """The first two turns of each conversation, shuffled with `seed` as vLLM shuffles them."""
    assert w.dataset_path is not None
    assert tok is not None
    data = _read_json(w.dataset_path, "ShareGPT")
    if not isinstance(data, list):
        raise ValueError(f"ShareGPT file {w.dataset_path} must hold a JSON list of conversations")
    entries = [e for e in data if isinstance(e, dict) and len(e.get("conversations", ())) >= 2]
    random.Random(seed).shuffle(entries)
    samples: list[Sample] = []
    for entry in entries:
        if len(samples) >= n:
            break
        prompt, reply = entry["conversations"][0]["value"], entry["conversations"][1]["value"]
        prompt_len = len(tok.encode(prompt).ids)
        out = w.output_len if w.output_len is not None else len(tok.encode(reply).ids)
        if _valid_sharegpt(prompt_len, out, w.output_len is not None):
            samples.append(Sample(prompt, prompt_len, out))
    return _oversample(samples, n, seed, f"ShareGPT file {w.dataset_path}")


def _jsonl(w: Workload, seed: int, n: int, tok: Tokenizer | None) -> list[Sample]:
    rows = []
    try:
        lines = Path(w.dataset).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise FileNotFoundError(f"JSONL dataset {w.dataset} does not exist") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        row = json.loads(line)
        if not isinstance(row, dict) or not isinstance(row.get("prompt"), str):
            raise ValueError(f"{w.dataset}:{number}: expected an object with a string 'prompt', got {line[:80]!r}")
        if w.output_len is None and not isinstance(row.get("output_tokens"), int):
            raise ValueError(
                f"{w.dataset}:{number}: no integer 'output_tokens' and the workload has output_len=None; "
                "add output_tokens to every line or set output_len"
            )
        rows.append(row)
    random.Random(seed).shuffle(rows)
    samples = [
        Sample(r["prompt"], len(tok.encode(r["prompt"]).ids) if tok is not None else 0,
               w.output_len if w.output_len is not None else int(r["output_tokens"]))
        for r in rows[:n]
    ]
    return _oversample(samples, n, seed, f"JSONL dataset {w.dataset}")


def _check_sharegpt(w: Workload) -> list[str]:
    if not w.dataset_path:
        return ["dataset 'sharegpt' needs dataset_path, the ShareGPT JSON file"]
    if not Path(w.dataset_path).is_file():
        return [f"dataset_path {w.dataset_path!r} is not a file (the ShareGPT JSON file was expected there; "
                f"working directory {Path.cwd()})"]
    return []


def _check_jsonl(w: Workload) -> list[str]:
    if w.dataset_path is not None:
        return [f"a JSONL dataset is its own path; dataset_path must be None (got {w.dataset_path!r})"]
    if not Path(w.dataset).is_file():
        return [f"dataset {w.dataset!r} is not a file (a JSONL file of {{\"prompt\": ..., \"output_tokens\": ...}} "
                f"lines was expected there; working directory {Path.cwd()})"]
    return []


LOADERS: dict[str, DatasetLoader] = {
    d.name: d
    for d in (
        DatasetLoader("random", _random, True, _check_synthetic),
        DatasetLoader("fixed", _fixed, True, _check_synthetic),
        DatasetLoader("sharegpt", _sharegpt, True, _check_sharegpt),
        DatasetLoader("jsonl", _jsonl, False, _check_jsonl),
    )
}
