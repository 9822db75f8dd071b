"""Secrets never leave the process: the one place that decides what is secret and masks it.

Every writer (spec label and key, engine logs, reports, baselines, history, JUnit, Markdown,
terminal, error messages) goes through here rather than keeping its own list.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

MASK = "***"
# A flag with one of these words in its name carries a secret: --api-key, --hf-token, --db-password, ...
# Whole words only: --max-num-batched-tokens and --tokenizer are not secrets.
_SECRET_WORDS = frozenset({"token", "key", "apikey", "secret", "password", "passwd", "credential", "credentials"})


def is_secret_flag(flag: str) -> bool:
    name = flag.split("=", 1)[0].lstrip("-").lower()
    return bool(name) and any(w in _SECRET_WORDS for w in re.split(r"[-_.]", name))


def redact_args(args: Sequence[str]) -> tuple[str, ...]:
    """`args` with the value of every secret-looking flag masked (`--api-key X` and `--api-key=X`)."""
    out: list[str] = []
    mask_next = False
    for a in args:
        if mask_next and not a.startswith("--"):
            out.append(MASK)
            mask_next = False
            continue
        mask_next = False
        if a.startswith("-") and is_secret_flag(a):
            if "=" in a:
                out.append(a.split("=", 1)[0] + "=" + MASK)
            else:
                out.append(a)
                mask_next = True
            continue
        out.append(a)
    return tuple(out)


def secret_values(args: Sequence[str] = (), env: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> set[str]:
    """The literal secrets in `args` (values of secret flags) and `env` (every value: an engine's env is private)."""
    found: set[str] = set()
    for i, a in enumerate(args):
        if a.startswith("-") and is_secret_flag(a):
            if "=" in a:
                found.add(a.split("=", 1)[1])
            elif i + 1 < len(args) and not args[i + 1].startswith("--"):
                found.add(args[i + 1])
    items = env.items() if isinstance(env, Mapping) else env
    found.update(v for _, v in items)
    return {s for s in found if len(s) >= 4}  # masking "1" or "" would shred ordinary text


def redact_text(text: str, secrets: Iterable[str]) -> str:
    """`text` with every occurrence of each secret masked, longest first (one may contain another)."""
    for s in sorted(set(secrets), key=len, reverse=True):
        if s:
            text = text.replace(s, MASK)
    return text


def api_key_arg(args: Sequence[str]) -> str | None:
    """The value of `--api-key` in an engine's args (the server then demands it as a Bearer token)."""
    for i, a in enumerate(args):
        if a.startswith("--api-key="):
            return a.split("=", 1)[1]
        if a == "--api-key" and i + 1 < len(args):
            return args[i + 1]
    return None
