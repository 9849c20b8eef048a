"""The extender's app factory: the API client and binder it builds are closed by the app's cleanup,
after the services stop, so `runner.cleanup()` is the one shutdown."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from extender.app import STATE
from extender.assembly import build_app
from extender.settings import ExtenderSettings


class FakeApi:
    def __init__(self, events: list[str]) -> None:
        self.events = events

    async def close(self) -> None:
        self.events.append("api closed")


async def test_the_app_cleanup_closes_binder_then_api_after_the_services(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []

    async def load_api_client(kubeconfig: Path | None, *, connections: int | None = None) -> Any:
        return FakeApi(events)

    monkeypatch.setattr("carbon_common.kube.load_api_client", load_api_client)
    nodes = tmp_path / "nodes.json"
    nodes.write_bytes(orjson.dumps({"apiVersion": "v1", "kind": "NodeList", "items": []}))
    settings = ExtenderSettings(nodes_file=nodes, kubeconfig=tmp_path / "kubeconfig")
    app, ssl_context = await build_app(settings)
    assert ssl_context is None
    state = app[STATE]
    binder = state.binder
    assert binder is not None
    real_close = binder.close

    async def close_binder() -> None:
        events.append("binder closed")
        await real_close()

    binder.close = close_binder  # type: ignore[method-assign]
    node_cache: Any = state.services[0]
    real_stop = node_cache.stop

    async def stop_nodes() -> None:
        events.append("nodes stopped")
        await real_stop()

    node_cache.stop = stop_nodes
    runner = web.AppRunner(app)
    await runner.setup()
    assert events == []
    await runner.cleanup()
    assert events == ["nodes stopped", "binder closed", "api closed"]
