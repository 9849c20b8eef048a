"""Loopback emulators of the provider APIs: the documented response shapes and the real failures.

Each emulator is an aiohttp app (serve it with pytest-aiohttp's `aiohttp_server`, which binds
127.0.0.1). Failures are switched per test:

    emu.fail(Fault("429", retry_after="2"), path="/v3/forecast", times=1)
    emu.values["DE"] = float("nan")        # served as a bare NaN literal, like a buggy upstream
    emu.missing.add("FR")                  # the zone is absent from (or unknown to) the API

Fault kinds: 401, 403, 429, 500, 502, 503 (with optional Retry-After), slow (sleeps `delay` seconds
before answering), truncated (JSON cut in half), malformed (an HTML error page with status 200),
cut (Content-Length larger than the body: the connection ends early).
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def body(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    # json (not orjson) so NaN/Infinity go out as the bare literals a buggy upstream would send.
    return web.Response(
        body=json.dumps(payload, allow_nan=True).encode(),
        status=status,
        content_type="application/json",
        headers=headers,
    )


@dataclass
class Fault:
    kind: str
    retry_after: str | None = None
    delay: float = 0.0


@dataclass
class Seen:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]


@dataclass
class Emulator:
    now: datetime = NOW
    values: dict[str, Any] = field(default_factory=dict)
    """Zone -> raw value served instead of the normal one (NaN, -5, 1e9, "NaN", None)."""
    missing: set[str] = field(default_factory=set)
    requests: list[Seen] = field(default_factory=list)
    _faults: list[tuple[str, str | None, Fault, list[int]]] = field(default_factory=list)

    def fail(self, fault: Fault, *, path: str = "", times: int = 1, zone: str | None = None) -> None:
        """Apply `fault` to the next `times` requests whose path starts with `path` (-1: forever) and,
        with `zone`, that ask for that zone (query zone, region or location)."""
        self._faults.append((path, zone, fault, [times]))

    def calls(self, path: str) -> list[Seen]:
        return [r for r in self.requests if r.path.startswith(path)]

    def value(self, zone: str, default: Any) -> Any:
        return self.values.get(zone, default)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        self.routes(app)
        return app

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def _take_fault(self, request: web.Request) -> Fault | None:
        asked = {request.query.get(key) for key in ("zone", "region", "location")}
        for prefix, zone, fault, left in self._faults:
            if request.path.startswith(prefix) and (zone is None or zone in asked) and left[0] != 0:
                left[0] -= 1
                return fault
        return None

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.requests.append(
            Seen(
                request.path,
                {k: request.query.getall(k) for k in request.query},
                dict(request.headers),
            )
        )
        fault = self._take_fault(request)
        if fault is None:
            return await handler(request)
        retry = {"Retry-After": fault.retry_after} if fault.retry_after is not None else None
        if fault.kind.isdigit():
            return body({"error": f"emulated HTTP {fault.kind}"}, int(fault.kind), retry)
        if fault.kind == "slow":
            await asyncio.sleep(fault.delay)
            return await handler(request)
        if fault.kind == "malformed":
            return web.Response(text="<html><body>502 Bad Gateway</body></html>", content_type="text/html")
        response = await handler(request)
        assert isinstance(response, web.Response)
        assert isinstance(response.body, bytes)
        raw = response.body
        if fault.kind == "truncated":
            return web.Response(body=raw[: len(raw) // 2], content_type="application/json")
        if fault.kind == "cut":
            stream = web.StreamResponse(
                headers={"Content-Type": "application/json", "Content-Length": str(len(raw))}
            )
            await stream.prepare(request)
            await stream.write(raw[: len(raw) // 2])
            assert request.transport is not None
            request.transport.close()
            return stream
        raise AssertionError(f"unknown fault {fault.kind!r}")


# --- Electricity Maps v3 ------------------------------------------------------------------------


@dataclass
class ElectricityMapsEmulator(Emulator):
    token: str = "em-test-token-4f1c"
    zones: dict[str, float] = field(default_factory=lambda: {"DE": 380.0, "FR": 55.0})

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/v3/carbon-intensity/{endpoint}", self._handle)

    def _hour(self) -> datetime:
        return self.now.replace(minute=0, second=0, microsecond=0)

    def _point(self, zone: str, moment: datetime, value: Any, estimated: bool = False) -> dict[str, Any]:
        return {
            "zone": zone,
            "carbonIntensity": value,
            "datetime": iso(moment),
            "updatedAt": iso(self.now - timedelta(minutes=5)),
            "createdAt": iso(moment - timedelta(days=1)),
            "emissionFactorType": "lifecycle",
            "isEstimated": estimated,
            "estimationMethod": "TIME_SLICER_AVERAGE" if estimated else None,
        }

    async def _handle(self, request: web.Request) -> web.Response:
        if request.headers.get("auth-token") != self.token:
            return body({"status": "error", "message": "Unauthorized. Invalid auth-token."}, 401)
        if request.query.get("shouldUseFallbackCallerLookup") != "false":
            return body({"error": "test emulator: shouldUseFallbackCallerLookup must be false"}, 400)
        zone = request.query.get("zone", "")
        if zone not in self.zones or zone in self.missing:
            return body({"status": "error", "message": f"Zone '{zone}' does not exist."}, 404)
        base, hour = self.zones[zone], self._hour()
        endpoint = request.match_info["endpoint"]
        if endpoint == "latest":
            return body(self._point(zone, hour, self.value(zone, base), estimated=True))
        if endpoint == "history":
            points = [self._point(zone, hour - timedelta(hours=h), base + h) for h in range(24, 0, -1)]
            return body({"zone": zone, "history": points})
        if endpoint == "forecast":
            points = [
                {"carbonIntensity": base - h, "datetime": iso(hour + timedelta(hours=h))}
                for h in range(1, 25)
            ]
            return body({"zone": zone, "forecast": points, "updatedAt": iso(self.now - timedelta(minutes=2))})
        return body({"error": "not found"}, 404)


# --- WattTime v3 --------------------------------------------------------------------------------


@dataclass
class WattTimeEmulator(Emulator):
    username: str = "wt-user"
    password: str = "wt-pass-9b7e"
    regions: dict[str, float] = field(default_factory=lambda: {"CAISO_NORTH": 900.0, "PJM_DC": 1200.0})
    forbidden: set[str] = field(default_factory=set)
    tokens: set[str] = field(default_factory=set)
    logins: int = 0

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/login", self._login)
        app.router.add_get("/v3/{signal}", self._data)

    def expire_tokens(self) -> None:
        """Server-side expiry or revocation: every issued token now gets 401."""
        self.tokens.clear()

    async def _login(self, request: web.Request) -> web.Response:
        expected = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        if request.headers.get("Authorization") != f"Basic {expected}":
            return body({"error": "Unauthorized"}, 401)
        self.logins += 1
        token = f"wt-token-{self.logins}-8d2a"
        self.tokens.add(token)
        return body({"token": token})

    async def _data(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or auth.removeprefix("Bearer ") not in self.tokens:
            return body({"error": "Invalid token"}, 401)
        region = request.query.get("region", "")
        if region in self.forbidden:
            return body({"error": f"Your account does not have access to region {region}"}, 403)
        if region not in self.regions or region in self.missing:
            return body({"error": f"Unknown region {region}"}, 400)
        signal = request.match_info["signal"]
        base = self.regions[region]
        start = self.now.replace(second=0, microsecond=0)
        start -= timedelta(minutes=start.minute % 5)
        if signal == "forecast":
            hours = int(request.query.get("horizon_hours", "24"))
            steps = range(hours * 12)
            data = [{"point_time": iso(start + timedelta(minutes=5 * i)), "value": base - i} for i in steps]
            if data:
                data[0]["value"] = self.value(region, data[0]["value"])
            meta = self._meta(region, request.query.get("signal_type", "co2_moer"), "lbs_co2_per_mwh")
            meta["generated_at"] = iso(start)
            return body({"data": data, "meta": meta})
        if signal == "historical":
            data = [
                {"point_time": iso(start - timedelta(minutes=5 * i)), "value": base + i}
                for i in range(12, 0, -1)
            ]
            data[-1]["value"] = self.value(region, data[-1]["value"])
            return body(
                {
                    "data": data,
                    "meta": self._meta(region, request.query.get("signal_type", ""), "lbs_co2_per_mwh"),
                }
            )
        if signal == "signal-index":
            data = [{"point_time": iso(start), "value": 42.0}]
            return body({"data": data, "meta": self._meta(region, "co2_moer", "percentile")})
        return body({"error": "not found"}, 404)

    @staticmethod
    def _meta(region: str, signal: str, units: str) -> dict[str, Any]:
        return {
            "data_point_period_seconds": 300,
            "region": region,
            "signal_type": signal,
            "units": units,
            "warnings": [],
            "model": {"date": "2026-03-01", "type": "binned_regression"},
        }


# --- UK Carbon Intensity ------------------------------------------------------------------------


def _uk(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%MZ")


@dataclass
class UkGridEmulator(Emulator):
    national: float = 180.0
    regions: dict[int, float] = field(default_factory=lambda: {13: 120.0, 16: 40.0, 1: 15.0})

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/intensity/{start}/fw48h", self._national)
        app.router.add_get("/regional/intensity/{start}/fw48h", self._regional)

    def _start(self, request: web.Request) -> datetime:
        return datetime.strptime(request.match_info["start"], "%Y-%m-%dT%H:%MZ").replace(tzinfo=UTC)

    async def _national(self, request: web.Request) -> web.Response:
        start = self._start(request)
        data = []
        for i in range(96):
            begin = start + timedelta(minutes=30 * i)
            forecast = self.national + i
            past = begin + timedelta(minutes=30) <= self.now
            actual = self.value("GB", forecast - 3) if past else None
            index = "moderate"
            data.append(
                {
                    "from": _uk(begin),
                    "to": _uk(begin + timedelta(minutes=30)),
                    "intensity": {"forecast": forecast, "actual": actual, "index": index},
                }
            )
        return body({"data": data})

    async def _regional(self, request: web.Request) -> web.Response:
        start = self._start(request)
        data = []
        for i in range(96):
            begin = start + timedelta(minutes=30 * i)
            regions = [
                {
                    "regionid": rid,
                    "dnoregion": f"DNO {rid}",
                    "shortname": f"Region {rid}",
                    "intensity": {
                        "forecast": self.value(f"GB-REGION-{rid}", base + i) if i == 0 else base + i,
                        "index": "low",
                    },
                    "generationmix": [{"fuel": "wind", "perc": 50.0}, {"fuel": "gas", "perc": 50.0}],
                }
                for rid, base in self.regions.items()
                if f"GB-REGION-{rid}" not in self.missing
            ]
            data.append({"from": _uk(begin), "to": _uk(begin + timedelta(minutes=30)), "regions": regions})
        return body({"data": data})


# --- GSF Carbon Aware SDK WebAPI ----------------------------------------------------------------


@dataclass
class CarbonAwareSdkEmulator(Emulator):
    locations: dict[str, float] = field(default_factory=lambda: {"eastus": 410.0, "westeurope": 250.0})

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/emissions/bylocations", self._emissions)
        app.router.add_get("/emissions/forecasts/current", self._forecasts)

    def _wanted(self, request: web.Request) -> list[str]:
        return [
            loc
            for loc in request.query.getall("location", [])
            if loc in self.locations and loc not in self.missing
        ]

    async def _emissions(self, request: web.Request) -> web.Response:
        if not request.query.getall("location", []):
            return body({"title": "One or more validation errors occurred.", "status": 400}, 400)
        hour = self.now.replace(minute=0, second=0, microsecond=0)
        items = [
            {
                "location": loc,
                "time": iso(hour),
                "rating": self.value(loc, self.locations[loc]),
                "duration": "01:00:00",
            }
            for loc in self._wanted(request)
        ]
        return body(items)

    async def _forecasts(self, request: web.Request) -> web.Response:
        start = self.now.replace(second=0, microsecond=0)
        out = []
        for loc in self._wanted(request):
            base = self.locations[loc]
            points = [
                {
                    "location": loc,
                    "timestamp": iso(start + timedelta(minutes=5 * i)),
                    "duration": 5,
                    "value": base - i,
                }
                for i in range(12)
            ]
            out.append(
                {
                    "generatedAt": iso(start),
                    "requestedAt": iso(self.now),
                    "location": loc,
                    "dataStartAt": iso(start),
                    "dataEndAt": iso(start + timedelta(hours=1)),
                    "windowSize": 5,
                    "optimalDataPoints": [points[-1]],
                    "forecastData": points,
                }
            )
        return body(out)
