"""Reachability probes of the services a deployment is configured with
(``soma doctor``): each reports reachable or not, the server's version and
the round-trip latency. Drivers are imported inside each probe, so a probe
of a service nobody configured never needs its extra.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from ..eventing.config import KafkaSettings
from ..settings import Settings

__all__ = ["diagnose", "probe"]

Check = Callable[[], str]


def _hide(target: str) -> str:
    """A URL without its password."""
    return re.sub(r"(//[^:/@]+):[^@/]+@", r"\1:***@", target)


def probe(service: str, target: str, check: Check) -> dict[str, Any]:
    """Run ``check`` (returns the server version) and time it."""
    started = time.perf_counter()
    entry: dict[str, Any] = {"service": service, "target": _hide(target)}
    try:
        entry["version"] = check()
        entry["ok"] = True
    except Exception as exc:  # any failure (driver, extra missing, refused) is a finding, not a crash
        entry["ok"] = False
        entry["error"] = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    entry["latency_ms"] = round((time.perf_counter() - started) * 1000, 3)
    return entry


def _postgres(url: str) -> Check:
    def check() -> str:
        import psycopg

        from .postgres.pool import normalize_url

        with psycopg.connect(normalize_url(url), connect_timeout=3, autocommit=True) as conn:
            row = conn.execute("SHOW server_version").fetchone()
        return f"PostgreSQL {row[0] if row else '?'}"

    return check


def _redis(url: str) -> Check:
    def check() -> str:
        import redis

        client = redis.Redis.from_url(url, socket_timeout=3, socket_connect_timeout=3)
        try:
            return f"Redis {client.info('server').get('redis_version', '?')}"
        finally:
            client.close()

    return check


def _qdrant(url: str | None, host: str | None, port: int, api_key: str | None) -> Check:
    def check() -> str:
        from qdrant_client import QdrantClient

        client = QdrantClient(url=url, host=None if url else host, port=port, api_key=api_key, timeout=3)
        try:
            return f"Qdrant {client.info().version}"
        finally:
            client.close()

    return check


def _kafka(settings: KafkaSettings) -> Check:
    def check() -> str:
        from .registry import load

        info = load("admin", "kafka")(settings, timeout=3.0).describe()
        return f"Kafka protocol, cluster {info['cluster_id']}, {info['brokers']} broker(s)"

    return check


def diagnose(config: dict[str, Any] | None = None, settings: Settings | None = None) -> list[dict[str, Any]]:
    """Probe every configured service (the ``config`` dict over the
    environment); services nobody configured are left out."""
    s = settings or Settings()
    config = dict(config or {})
    pg = config.get("postgres") or {}
    rd = config.get("redis") or {}
    qd = config.get("qdrant") or {}
    found: list[dict[str, Any]] = []
    pg_url = pg.get("url") or s.postgres_url
    if pg_url:
        found.append(probe("PostgreSQL", str(pg_url), _postgres(str(pg_url))))
    redis_url = rd.get("url") or s.redis_url
    if not redis_url and (rd.get("host") or s.redis_host):
        redis_url = f"redis://{rd.get('host') or s.redis_host}:{rd.get('port') or s.redis_port}/{s.redis_db}"
    if redis_url and not rd.get("testing"):
        found.append(probe("Redis", str(redis_url), _redis(str(redis_url))))
    q_url, q_host = qd.get("url") or s.qdrant_url, qd.get("host") or s.qdrant_host
    if (q_url or q_host) and not qd.get("testing"):
        port = int(qd.get("port") or s.qdrant_port)
        target = str(q_url or f"{q_host}:{port}")
        key = qd.get("api_key") or s.qdrant_api_key
        found.append(probe("Qdrant", target, _qdrant(q_url, q_host, port, key)))
    kafka = KafkaSettings.resolve(config.get("kafka"), s)
    if kafka is not None:
        found.append(probe("Kafka", kafka.bootstrap_servers, _kafka(kafka)))
    return found
