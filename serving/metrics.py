"""Prometheus metrics: request counts and latency per route template, and the model in service."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """One registry per app, so several apps (tests) never share counters."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "churnguard_http_requests", "HTTP requests", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "churnguard_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.model_info = Gauge(
            "churnguard_model_info", "The model in service (value 1)", ["version"], registry=self.registry
        )
        self.scores_accounts = Gauge(
            "churnguard_scores_accounts", "Accounts in the served scores", registry=self.registry
        )
        self.scores_date = Gauge(
            "churnguard_scores_snapshot_timestamp_seconds",
            "Scoring date of the served scores",
            registry=self.registry,
        )
        self.reload_failures = Gauge(
            "churnguard_reload_failures", "Failed model or scores reloads since start", registry=self.registry
        )
        self._model_version: str | None = None
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count and time one request; label children are cached (labels() costs a lock + hash)."""
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            children = (
                self.requests.labels(method, route, str(status)),
                self.latency.labels(method, route),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def set_model(self, version: str | None) -> None:
        if version == self._model_version:
            return
        if self._model_version is not None:
            self.model_info.remove(self._model_version)
        if version is not None:
            self.model_info.labels(version=version).set(1)
        self._model_version = version


class MetricsMiddleware:
    """Counts and times every request by route template (never by raw path: ids are unbounded)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route: Any = scope.get("route")
            name = getattr(route, "path", None) or "unmatched"
            self.metrics.observe(scope.get("method", ""), name, status, time.perf_counter() - start)
