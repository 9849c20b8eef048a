"""Secrets (API tokens, passwords): read from a file or the environment, never printed.

A `Secret` is deliberately *not* a `str` subclass: a str subclass leaks through f-strings, `%s`,
`str.join` and JSON encoders. Code that really needs the value calls `reveal()`, which is easy to grep.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final

MASK: Final = "***"


class SecretError(ValueError):
    """A secret is configured wrongly (missing file, empty value, several sources); never holds the value."""


class Secret:
    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str) or not value:
            raise SecretError("a secret must be a non-empty string")
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({MASK!r})"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __reduce__(self) -> Any:
        # Pickling would write the value somewhere we do not control (multiprocessing, caches).
        raise TypeError("Secret values cannot be pickled")


def load_secret(options: Mapping[str, Any], key: str, *, required: bool = True) -> Secret | None:
    """Read secret `key` from `<key>_file` (e.g. a mounted Kubernetes Secret) or `<key>_env`.

    An inline `<key>` value is refused: config files end up in ConfigMaps, Git and bug reports.
    Trailing newlines are stripped because `kubectl create secret --from-file` keeps them.
    """
    if key in options:
        raise SecretError(f"{key}: inline secrets are not accepted; use {key}_file or {key}_env")
    file_opt, env_opt = options.get(f"{key}_file"), options.get(f"{key}_env")
    if file_opt is not None and env_opt is not None:
        raise SecretError(f"{key}: set only one of {key}_file and {key}_env")
    if file_opt is not None:
        path = Path(str(file_opt))
        try:
            text = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SecretError(f"{key}_file {str(path)!r}: cannot read ({exc.strerror})") from None
        if not text:
            raise SecretError(f"{key}_file {str(path)!r} is empty")
        return Secret(text)
    if env_opt is not None:
        value = os.environ.get(str(env_opt), "").strip()
        if not value:
            raise SecretError(f"{key}_env: environment variable {str(env_opt)!r} is unset or empty")
        return Secret(value)
    if required:
        raise SecretError(f"{key} is required: set {key}_file or {key}_env")
    return None


def redact(text: str, secrets: Iterable[Secret | None]) -> str:
    """Mask every occurrence of the given secrets, for text that came from outside (response bodies)."""
    for secret in secrets:
        if secret is not None:
            text = text.replace(secret.reveal(), MASK)
    # Bearer tokens we never saw (e.g. a provider echoing a header back) are masked as well.
    return _BEARER.sub("Bearer " + MASK, text)


_BEARER = re.compile(r"Bearer\s+[A-Za-z0-9._~+/=-]+")


def require_secret(options: Mapping[str, Any], key: str) -> Secret:
    """load_secret for secrets a provider cannot work without."""
    secret = load_secret(options, key, required=True)
    if secret is None:  # unreachable with required=True; keeps the type narrow without assert
        raise SecretError(f"{key} is required")
    return secret
