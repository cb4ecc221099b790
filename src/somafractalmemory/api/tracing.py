"""Optional OpenTelemetry: a server span per request when ``opentelemetry`` is importable.

Without the package every call here is a no-op. With only the API package
installed and no SDK configured, no span is started at all (they would be
OpenTelemetry's non-recording no-ops, at a cost per request); install and
configure an SDK (e.g. ``opentelemetry-sdk`` with an OTLP exporter, or run
under ``opentelemetry-instrument``) and every request gets a server span.
The incoming ``traceparent`` header is honoured.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any

__all__ = ["Tracing", "load_tracing"]


class Tracing:
    """Starts and finishes request spans; ``Tracing(None)`` does nothing."""

    def __init__(self, api: Any | None) -> None:
        self._api = api
        self._tracer = api.get_tracer("somafractalmemory.api") if api is not None else None
        self._configured = False

    @property
    def enabled(self) -> bool:
        return self._tracer is not None

    def recording(self) -> bool:
        """Whether requests get spans: an SDK is configured (with only the API,
        every span would be a no-op). Once set, a tracer provider cannot be
        replaced, so a yes is remembered."""
        if self._configured:
            return True
        api = self._api
        self._configured = api is not None and not isinstance(
            api.get_tracer_provider(), api.ProxyTracerProvider
        )
        return self._configured

    @contextmanager
    def span(self, scope: MutableMapping[str, Any]) -> Iterator[Any | None]:
        if self._tracer is None or not self.recording():
            yield None
            return
        from opentelemetry import propagate

        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}
        method = scope.get("method", "")
        with self._tracer.start_as_current_span(
            f"HTTP {method}",
            context=propagate.extract(headers),
            kind=self._api.SpanKind.SERVER,  # type: ignore[union-attr]
            attributes={"http.request.method": method, "url.path": scope.get("path", "")},
        ) as span:
            yield span

    def finish(self, span: Any | None, method: str, route: str, status: int) -> None:
        if span is None:
            return
        span.update_name(f"HTTP {method} {route}")
        span.set_attribute("http.route", route)
        span.set_attribute("http.response.status_code", status)
        if status >= 500:
            span.set_status(self._api.Status(self._api.StatusCode.ERROR))  # type: ignore[union-attr]


def load_tracing() -> Tracing:
    """``Tracing`` over ``opentelemetry.trace`` if it can be imported, else a no-op one."""
    try:
        api = importlib.import_module("opentelemetry.trace")
    except ImportError:
        return Tracing(None)
    return Tracing(api)
