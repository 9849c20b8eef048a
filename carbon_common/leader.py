"""Leader election on a coordination.k8s.io/v1 Lease, the way client-go's leaderelection does it.

Shared by the services that must act from one replica at a time (the deferral controller releases
pods, the rebalancer evicts them): only the leader acts; every replica keeps its caches warm so a new
leader acts at once.

Expiry is judged on our own monotonic clock, never by comparing the Lease's renewTime with our wall
clock: a follower remembers when it last *saw the Lease change* and takes over only after
``lease_duration`` seconds without a change. Clock skew between replicas therefore cannot produce two
leaders; writes use the Lease's resourceVersion, so of two replicas racing for an expired Lease exactly
one wins (the other gets 409 Conflict).

A leader that cannot renew for ``renew_deadline`` seconds steps down before its Lease can expire for
the others, whatever the API server does: every Lease call has a deadline (an attempt never outlives
the renew deadline), and a timer armed at each renewal deposes the leader at ``renew_deadline`` even
while a call hangs, then tells ``on_change`` so in-flight work is cancelled. The countdown starts when
the successful attempt *started* (before its write reached the API server), and a follower starts its
own ``lease_duration`` countdown only after it saw that write, so the old leader has stopped at least
``lease_duration - renew_deadline`` seconds before anyone else may take over. Losing leadership is also
safe for correctness because every release is a JSON patch with a ``test`` op: two replicas can never
both remove the gate.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubernetes_asyncio import client

from carbon_common.kube import ApiStatusError, read_json

log = logging.getLogger(__name__)


def _micro_time(moment: datetime) -> str:
    # metav1.MicroTime: RFC 3339 with exactly six fractional digits.
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True, slots=True)
class LeaseConfig:
    namespace: str
    name: str = "carbon-deferral"
    identity: str = ""
    lease_duration: float = 15.0
    """Seconds a follower waits without seeing a renewal before taking over (client-go default 15)."""
    renew_deadline: float = 10.0
    """Seconds a leader keeps trying to renew before it steps down; must be < lease_duration."""
    retry_period: float = 2.0


@dataclass(frozen=True, slots=True)
class LeaderSettings:
    """Leader election over a coordination.k8s.io/v1 Lease: a settings group (carbon_common.settings)
    shared by the leader-elected services; each gives its own default lease name."""

    leader_elect: bool = True
    """Elect one leader among the replicas; only the leader acts."""
    lease_namespace: str = "default"
    """Usually the service's own namespace (set from the downward API)."""
    lease_name: str = ""
    """Name of the Lease the replicas compete for."""
    identity: str = ""
    """Unique per replica; default: the host name (the pod name in a Deployment)."""
    lease_duration: float = 15.0
    """Seconds a follower waits without seeing a renewal before taking over."""
    renew_deadline: float = 10.0
    """Seconds a leader keeps trying to renew before it steps down; below --lease-duration."""
    retry_period: float = 2.0
    """Seconds between attempts to acquire or renew the Lease; below --renew-deadline."""

    def problems(self) -> list[str]:
        """What is wrong with these settings, phrased with the flag names; empty when valid."""
        found = []
        if not self.lease_name:
            found.append("--lease-name must not be empty")
        if not 0 < self.retry_period < self.renew_deadline < self.lease_duration:
            found.append("need 0 < --retry-period < --renew-deadline < --lease-duration")
        return found

    def lease(self, identity: str) -> LeaseConfig:
        return LeaseConfig(
            namespace=self.lease_namespace,
            name=self.lease_name,
            identity=identity,
            lease_duration=self.lease_duration,
            renew_deadline=self.renew_deadline,
            retry_period=self.retry_period,
        )


class LeaderElector:
    def __init__(
        self,
        api: client.ApiClient,
        config: LeaseConfig,
        on_change: Callable[[bool], None] | None = None,
        monotonic: Callable[[], float] | None = None,
        on_error: Callable[[], None] | None = None,
    ) -> None:
        """``on_error`` is called for every failed or timed-out attempt (e.g. to count it)."""
        if not config.identity:
            raise ValueError("leader election needs a non-empty identity (e.g. the pod name)")
        if not 0 < config.retry_period < config.renew_deadline < config.lease_duration:
            raise ValueError("need 0 < retry_period < renew_deadline < lease_duration")
        # Typed as Any: we pass raw dicts and read raw responses (_preload_content=False), which the
        # generated signatures (V1Lease in, V1Lease out) do not describe.
        self._api: Any = client.CoordinationV1Api(api)
        self._config = config
        self._on_change = on_change
        self._on_error = on_error or (lambda: None)
        self._monotonic = monotonic or (lambda: asyncio.get_running_loop().time())
        self._leader = False
        self._observed: tuple[str, str] | None = None
        """(holderIdentity, renewTime) as last seen; a change restarts the expiry countdown."""
        self._observed_at = 0.0
        self._renewed_at = 0.0
        """Monotonic start of the last successful acquire/renew attempt."""
        self._deadline_timer: asyncio.TimerHandle | None = None

    @property
    def is_leader(self) -> bool:
        # Judged at every use, not only when the loop gets round to it: a renewal stuck in a hung
        # call must not extend the leadership.
        return self._leader and self._monotonic() - self._renewed_at < self._config.renew_deadline

    def _renewed(self, started: float) -> None:
        self._renewed_at = started
        self._set_leader(True)
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
        remaining = started + self._config.renew_deadline - self._monotonic()
        self._deadline_timer = asyncio.get_running_loop().call_later(max(0.0, remaining), self._deposed)

    def _deposed(self) -> None:
        self._deadline_timer = None
        if self._leader:
            log.warning(
                "could not renew the lease within the renew deadline: stepping down",
                extra={"identity": self._config.identity, "renew_deadline": self._config.renew_deadline},
            )
            self._set_leader(False)

    def _attempt_budget(self) -> float:
        """Seconds one acquire/renew attempt may take: a leader's ends at its renew deadline (after
        that a success would come too late to count), a follower's at one renew deadline."""
        if self._leader:
            return max(0.0, self._renewed_at + self._config.renew_deadline - self._monotonic())
        return self._config.renew_deadline

    def _set_leader(self, value: bool) -> None:
        if not value and self._deadline_timer is not None:
            self._deadline_timer.cancel()
            self._deadline_timer = None
        if value != self._leader:
            self._leader = value
            log.info(
                "leadership changed",
                extra={"leader": value, "identity": self._config.identity, "lease": self._config.name},
            )
            if self._on_change is not None:
                try:
                    self._on_change(value)
                except Exception:  # the hook's bug must not stop elections (nor the deposing timer)
                    self._on_error()
                    log.exception("leadership change hook failed")

    async def run(self) -> None:
        """Try to acquire or renew every retry_period, forever (until cancelled)."""
        try:
            while True:
                started = self._monotonic()
                try:
                    async with asyncio.timeout(self._attempt_budget()):
                        won = await self.try_acquire_or_renew()
                except TimeoutError:
                    self._on_error()
                    log.warning("lease update timed out", extra={"identity": self._config.identity})
                    won = False
                except Exception as error:  # API down: keep trying; the timer steps down at the deadline
                    self._on_error()
                    log.warning("lease update failed", extra={"error": repr(error)})
                    won = False
                if won:
                    self._renewed(started)
                elif self._leader and self._monotonic() - self._renewed_at >= self._config.renew_deadline:
                    self._set_leader(False)
                await asyncio.sleep(self._config.retry_period)
        finally:
            self._set_leader(False)

    async def release(self) -> None:
        """On clean shutdown, hand the Lease back so another replica takes over without waiting.

        Call after `run` has stopped (it steps down on the way out); a Lease held by someone else is
        left alone.
        """
        self._set_leader(False)
        try:
            # Bounded: shutdown must fit the pod's grace period, and the Lease expires anyway.
            async with asyncio.timeout(self._config.retry_period):
                lease = await self._read()
                if (
                    lease is not None
                    and (lease.get("spec") or {}).get("holderIdentity") == self._config.identity
                ):
                    lease["spec"]["holderIdentity"] = None
                    lease["spec"]["leaseDurationSeconds"] = 1
                    await self._write(self._replace(lease))
        except Exception as error:  # best effort: the Lease expires on its own anyway
            log.warning("could not release the lease", extra={"error": repr(error)})

    async def try_acquire_or_renew(self) -> bool:
        cfg = self._config
        now_wall = datetime.now(UTC)
        now = self._monotonic()
        lease = await self._read()
        if lease is None:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": cfg.name, "namespace": cfg.namespace},
                "spec": self._spec(now_wall, transitions=0, acquired=now_wall),
            }
            return await self._write(
                self._api.create_namespaced_lease(
                    cfg.namespace, body, _preload_content=False, _request_timeout=self._call_timeout
                )
            )
        spec: dict[str, Any] = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        record = (holder, str(spec.get("renewTime")))
        if record != self._observed:
            self._observed = record
            self._observed_at = now
        duration = float(spec.get("leaseDurationSeconds") or cfg.lease_duration)
        if holder and holder != cfg.identity and now - self._observed_at < duration:
            return False  # someone else holds a live Lease
        transitions = int(spec.get("leaseTransitions") or 0)
        if holder == cfg.identity:
            acquired = spec.get("acquireTime") or _micro_time(now_wall)
            lease["spec"] = self._spec(now_wall, transitions, acquired=None) | {"acquireTime": acquired}
        else:
            lease["spec"] = self._spec(now_wall, transitions + 1, acquired=now_wall)
        return await self._write(self._replace(lease))

    @property
    def _call_timeout(self) -> float:
        # Each HTTP call is bounded on its own too (closing its connection), not only the attempt.
        return self._config.renew_deadline

    def _spec(self, now: datetime, transitions: int, acquired: datetime | None) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "holderIdentity": self._config.identity,
            "leaseDurationSeconds": round(self._config.lease_duration),
            "renewTime": _micro_time(now),
            "leaseTransitions": transitions,
        }
        if acquired is not None:
            spec["acquireTime"] = _micro_time(acquired)
        return spec

    async def _read(self) -> dict[str, Any] | None:
        resp = await self._api.read_namespaced_lease(
            self._config.name,
            self._config.namespace,
            _preload_content=False,
            _request_timeout=self._call_timeout,
        )
        try:
            lease: dict[str, Any] = await read_json(resp)
        except ApiStatusError as error:
            if error.status == 404:
                return None
            raise
        return lease

    def _replace(self, lease: dict[str, Any]) -> Any:
        # The body keeps metadata.resourceVersion: the API server rejects the write (409) if the
        # Lease changed since we read it.
        return self._api.replace_namespaced_lease(
            self._config.name,
            self._config.namespace,
            lease,
            _preload_content=False,
            _request_timeout=self._call_timeout,
        )

    async def _write(self, call: Any) -> bool:
        resp = await call
        try:
            await read_json(resp)
        except ApiStatusError as error:
            if error.status in (409, 422):
                return False  # another replica won the race
            raise
        return True
