"""The one place where provider HTTP calls are made: retries, backoff, Retry-After, rate limits, timeouts.

Every provider module calls `HttpClient.get_json`; none of them retries or sleeps on its own, so the
behaviour under trouble is the same for all sources and is tested once (tests/unit/test_http_retry*.py).

Classification (the `outcome` reported to the RequestObserver for each attempt):
    ok, http_4xx, http_429, http_5xx, timeout, network, malformed.
Retried: 429, 5xx, timeouts and network errors, within `max_attempts` and the total deadline.
Not retried: 401/403 (AuthError; WattTime re-logins itself), other 4xx (RequestError), bodies that are
not JSON (MalformedError; the next refresh cycle tries again anyway).
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import json
import logging
import math
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

import aiohttp
import orjson
from yarl import URL

from carbon_common.timeutil import utcnow
from carbon_feed.secrets import Secret, redact

log = logging.getLogger(__name__)

Outcome = Literal["ok", "http_4xx", "http_429", "http_5xx", "timeout", "network", "malformed"]
OUTCOMES: Final[tuple[Outcome, ...]] = (
    "ok",
    "http_4xx",
    "http_429",
    "http_5xx",
    "timeout",
    "network",
    "malformed",
)
RequestObserver = Callable[[str, str, float], None]
"""observer(provider_name, outcome, seconds), called once per HTTP attempt (metrics hook)."""

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

_BODY_SNIPPET: Final = 200
# A 72 h WattTime forecast for one region is ~100 kB; anything near this is a misbehaving upstream.
MAX_BODY_BYTES: Final = 16 * 1024 * 1024
_DEFAULT_HEADERS: Final = {"Accept": "application/json", "User-Agent": "carbon-aware-scheduler-feed/0.1"}


class ProviderError(Exception):
    """A fetch (not a single value) failed. The message never contains secrets."""

    outcome: Outcome = "network"
    retryable: bool = False

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class AuthError(ProviderError):
    """401/403: credentials missing, wrong, expired, or the plan does not include this data."""

    outcome = "http_4xx"


class RequestError(ProviderError):
    """Another 4xx (unknown zone, bad parameter) or an unexpected redirect: retrying will not help."""

    outcome = "http_4xx"


class RateLimitedError(ProviderError):
    """429. `retry_after` (seconds) is the provider's own hint when it sent one."""

    outcome = "http_429"
    retryable = True

    def __init__(self, message: str, *, status: int | None = 429, retry_after: float | None = None) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class UnavailableError(ProviderError):
    """5xx, timeout, or a network failure (refused, reset, truncated body)."""

    retryable = True

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        outcome: Outcome = "http_5xx",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status=status)
        self.outcome = outcome
        self.retry_after = retry_after


class MalformedError(ProviderError):
    """The body is not JSON, or not the shape the provider documents."""

    outcome = "malformed"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 4
    base_delay: float = 0.5
    """First backoff in seconds; doubles per attempt, with jitter, up to max_delay."""
    max_delay: float = 30.0
    request_timeout: float = 10.0
    """Per attempt, connect to last byte."""
    total_timeout: float = 60.0
    """For one get_json call, all attempts and waits included."""
    max_retry_after: float = 60.0
    """A longer Retry-After is not slept through: RateLimitedError goes to the service loop instead."""

    def __post_init__(self) -> None:
        for name in ("base_delay", "max_delay", "request_timeout", "total_timeout", "max_retry_after"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
                raise ValueError(f"{name} must be a number, got {value!r}")
            if value < 0 or (value == 0 and name in ("request_timeout", "total_timeout")):
                raise ValueError(f"{name} must be positive, got {value!r}")
        if not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise ValueError(f"max_attempts must be an integer >= 1, got {self.max_attempts!r}")

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> RetryPolicy:
        """Keys of a provider's config entry: max_attempts, base_delay, max_delay, request_timeout, ..."""
        fields = (
            "max_attempts",
            "base_delay",
            "max_delay",
            "request_timeout",
            "total_timeout",
            "max_retry_after",
        )
        return cls(**{key: options[key] for key in fields if key in options})

    def backoff(self, attempt: int, rng: Callable[[], float]) -> float:
        """Equal jitter: half the exponential step is fixed, half random, so clients that failed
        together spread out but never retry instantly."""
        step = min(float(self.max_delay), self.base_delay * 2.0 ** (attempt - 1))
        return step / 2 + rng() * step / 2


class TokenBucket:
    """Client-side rate limit so we stay under the provider's quota instead of collecting 429s.

    With capacity `burst` and refill `rate`/s, any window of length W admits at most burst + rate·W
    requests; `for_quota` picks the rate so that stays within "requests per window".
    """

    def __init__(
        self, rate: float, burst: float, *, clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep
    ):
        if not rate > 0 or not burst >= 1:
            raise ValueError(f"rate limit needs rate > 0 and burst >= 1, got rate={rate!r} burst={burst!r}")
        self.rate, self.burst = float(rate), float(burst)
        self._clock, self._sleep = clock, sleep
        self._tokens = self.burst
        self._stamp = clock()
        self._lock = asyncio.Lock()

    @classmethod
    def for_quota(
        cls,
        requests: int,
        per_seconds: float,
        *,
        burst: int | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> TokenBucket:
        if requests < 1 or per_seconds <= 0:
            raise ValueError(
                f"rate limit needs requests >= 1 and per_seconds > 0, got {requests}/{per_seconds}"
            )
        size = burst if burst is not None else max(1, requests // 20)
        if not 1 <= size < requests + 1:
            raise ValueError(f"burst must be between 1 and requests, got {size}")
        rate = max(requests - size, 1) / per_seconds
        return cls(rate, size, clock=clock, sleep=sleep)

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    async def acquire(self, deadline: float | None = None) -> None:
        """Take one token, waiting for it; RateLimitedError if the wait would pass `deadline`."""
        async with self._lock:  # FIFO: waiters are served in arrival order
            self._refill()
            if self._tokens < 1:
                wait = (1 - self._tokens) / self.rate
                if deadline is not None and self._clock() + wait > deadline:
                    raise RateLimitedError(
                        f"client-side rate limit: next request slot in {wait:.1f} s",
                        status=None,
                        retry_after=wait,
                    )
                await self._sleep(wait)
                self._refill()
            self._tokens -= 1


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Retry-After as seconds from `now`: delta-seconds or an HTTP-date (RFC 9110 §10.2.3).

    Unparseable values give None (the caller falls back to its own backoff) rather than an error.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # HTTP-dates are GMT by definition
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


async def _read_limited(response: aiohttp.ClientResponse, limit: int, where: str) -> bytes:
    """The body, refusing to buffer more than `limit` bytes (memory is shared with the API server)."""
    if response.content_length is not None and response.content_length > limit:
        raise MalformedError(
            f"{where}: response of {response.content_length} bytes exceeds the {limit} byte limit"
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(65536):
        size += len(chunk)
        if size > limit:
            raise MalformedError(f"{where}: response exceeds the {limit} byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


def basic_auth(username: Secret, password: Secret) -> str:
    """The Authorization header value for HTTP Basic (RFC 7617), without aiohttp's deprecated BasicAuth."""
    raw = f"{username.reveal()}:{password.reveal()}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


def decode_json(body: bytes) -> Any:
    """orjson first; the stdlib accepts the NaN/Infinity literals some providers emit, so one bad value
    is rejected by validation instead of losing the whole response."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedError(f"response is not valid JSON ({type(exc).__name__}: {str(exc)[:80]})") from None


class HttpClient:
    """GET-JSON with the shared policy. One per provider instance; safe for concurrent use."""

    def __init__(
        self,
        provider: str,
        session: aiohttp.ClientSession,
        *,
        policy: RetryPolicy | None = None,
        bucket: TokenBucket | None = None,
        observer: RequestObserver | None = None,
        secrets: Iterable[Secret | None] = (),
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        wall: Callable[[], datetime] = utcnow,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.provider = provider
        self.policy = policy or RetryPolicy()
        self.bucket = bucket
        self.max_body_bytes = MAX_BODY_BYTES
        self._session = session
        self._observer = observer
        self._secrets = tuple(secrets)
        # Rotating values (WattTime tokens): the last few are enough, older ones are long expired.
        self._rotating: deque[Secret] = deque(maxlen=4)
        self._clock, self._sleep, self._wall, self._rng = clock, sleep, wall, rng

    def add_secret(self, secret: Secret) -> None:
        """Register a rotating value (e.g. a freshly issued token) to mask in error text."""
        self._rotating.append(secret)

    def _all_secrets(self) -> tuple[Secret | None, ...]:
        return (*self._secrets, *self._rotating)

    async def get_json(
        self,
        url: str,
        *,
        params: Mapping[str, str] | list[tuple[str, str]] | None = None,
        headers: Mapping[str, str] | None = None,
        bucket: TokenBucket | None = None,
    ) -> Any:
        policy = self.policy
        deadline = self._clock() + policy.total_timeout
        limiter = bucket if bucket is not None else self.bucket
        attempt = 0
        while True:
            attempt += 1
            if limiter is not None:
                await limiter.acquire(deadline)
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise UnavailableError(
                    f"{self._where(url)}: total timeout of {policy.total_timeout:g} s", outcome="timeout"
                )
            started = self._clock()
            try:
                result = await self._attempt(url, params, headers, min(policy.request_timeout, remaining))
            except ProviderError as exc:
                self._observe(exc.outcome, self._clock() - started)
                delay = self._retry_delay(exc, attempt, deadline)
                if delay is None:
                    raise
                log.info(
                    "provider request failed, retrying",
                    extra={
                        "provider": self.provider,
                        "error": str(exc),
                        "attempt": attempt,
                        "delay": round(delay, 3),
                    },
                )
                await self._sleep(delay)
                continue
            self._observe("ok", self._clock() - started)
            return result

    def _retry_delay(self, exc: ProviderError, attempt: int, deadline: float) -> float | None:
        """Seconds to wait before the next attempt, or None to give up and raise `exc`."""
        if not exc.retryable or attempt >= self.policy.max_attempts:
            return None
        hint = getattr(exc, "retry_after", None)
        if hint is not None:
            if hint > self.policy.max_retry_after:
                return None
            delay = float(hint)
        else:
            delay = self.policy.backoff(attempt, self._rng)
        if self._clock() + delay >= deadline:
            return None
        return delay

    async def _attempt(
        self,
        url: str,
        params: Mapping[str, str] | list[tuple[str, str]] | None,
        headers: Mapping[str, str] | None,
        seconds: float,
    ) -> Any:
        where = self._where(url)
        try:
            async with self._session.get(
                url,
                params=params,
                headers={**_DEFAULT_HEADERS, **(headers or {})},
                timeout=aiohttp.ClientTimeout(total=seconds),
                # A redirect could carry our auth header to another host: treat it as an error instead.
                allow_redirects=False,
            ) as response:
                status = response.status
                retry_after = response.headers.get("Retry-After")
                body = await _read_limited(response, self.max_body_bytes, where)
        except TimeoutError:
            raise UnavailableError(
                f"{where}: no complete response within {seconds:g} s", outcome="timeout"
            ) from None
        except aiohttp.ClientError as exc:
            detail = redact(str(exc), self._all_secrets())[:_BODY_SNIPPET]
            raise UnavailableError(f"{where}: {type(exc).__name__}: {detail}", outcome="network") from None
        if 200 <= status < 300:
            try:
                return decode_json(body)
            except MalformedError as exc:
                raise MalformedError(f"{where}: {exc}", status=status) from None
        snippet = self._snippet(body)
        message = f"{where}: HTTP {status}{': ' + snippet if snippet else ''}"
        if status in (401, 403):
            raise AuthError(message, status=status)
        if status == 429:
            raise RateLimitedError(message, retry_after=parse_retry_after(retry_after, self._wall()))
        if status >= 500:
            raise UnavailableError(
                message, status=status, retry_after=parse_retry_after(retry_after, self._wall())
            )
        raise RequestError(message, status=status)

    def _where(self, url: str) -> str:
        # Path only: query strings and userinfo stay out of messages, whatever a config puts there.
        return f"{self.provider} GET {URL(url).path}"

    def _snippet(self, body: bytes) -> str:
        text = body[:_BODY_SNIPPET].decode("utf-8", errors="replace").strip()
        return redact(" ".join(text.split()), self._all_secrets())

    def _observe(self, outcome: Outcome, seconds: float) -> None:
        if self._observer is None:
            return
        try:
            self._observer(self.provider, outcome, max(0.0, seconds))
        except Exception:  # a metrics bug must not turn into a failed fetch
            log.exception("request observer failed", extra={"provider": self.provider})


def bucket_from_options(
    options: Mapping[str, Any],
    *,
    default: tuple[int, float] | None,
    clock: Clock = time.monotonic,
    sleep: Sleep = asyncio.sleep,
) -> TokenBucket | None:
    """`rate_limit: {requests: 3000, per_seconds: 300, burst: 50}` from a provider's config entry.

    `default` is the provider's documented quota; `rate_limit: null` turns client-side limiting off.
    """
    if "rate_limit" in options and options["rate_limit"] is None:
        return None
    raw = options.get("rate_limit")
    if raw is None:
        if default is None:
            return None
        return TokenBucket.for_quota(default[0], default[1], clock=clock, sleep=sleep)
    if not isinstance(raw, Mapping):
        raise ValueError(f"rate_limit must be a mapping with requests and per_seconds, got {raw!r}")
    unknown = set(raw) - {"requests", "per_seconds", "burst"}
    if unknown:
        raise ValueError(f"rate_limit: unknown keys {sorted(unknown)}")
    requests, per_seconds, burst = raw.get("requests"), raw.get("per_seconds"), raw.get("burst")
    if not isinstance(requests, int) or isinstance(requests, bool):
        raise ValueError(f"rate_limit.requests must be an integer, got {requests!r}")
    if not isinstance(per_seconds, int | float) or isinstance(per_seconds, bool):
        raise ValueError(f"rate_limit.per_seconds must be a number, got {per_seconds!r}")
    if burst is not None and (not isinstance(burst, int) or isinstance(burst, bool)):
        raise ValueError(f"rate_limit.burst must be an integer, got {burst!r}")
    return TokenBucket.for_quota(requests, float(per_seconds), burst=burst, clock=clock, sleep=sleep)
