"""The composition root: settings and a ``config`` dict in, a wired system out.

Precedence: explicit ``config`` beats environment variables, which beat the
mode's defaults. See docs/CONFIGURATION.md for every key.
"""

from __future__ import annotations

import logging
import os
from enum import StrEnum
from pathlib import Path
from typing import Any

from .adapters.registry import load
from .core import SomaFractalMemoryEnterprise
from .errors import BackendUnavailable, ConfigurationError, InvalidInput
from .eventing.config import KafkaSettings
from .services.backends import Backends, Options
from .services.follower import IndexFollower
from .settings import Settings

__all__ = ["MemoryMode", "create_backends", "create_memory_system"]
log = logging.getLogger(__name__)


class MemoryMode(StrEnum):
    """Which wiring the factory builds (SPEC section 4)."""

    TEST = "test"
    DEVELOPMENT = "development"
    EVENTED_ENTERPRISE = "evented_enterprise"
    CLOUD_MANAGED = "cloud_managed"

    @classmethod
    def parse(cls, value: MemoryMode | str | None) -> MemoryMode:
        if isinstance(value, MemoryMode):
            return value
        text = (value or os.environ.get("MEMORY_MODE") or "development").strip().lower()
        try:
            return cls(text)
        except ValueError:
            raise InvalidInput(
                "mode", f"unknown mode {value!r}; use one of {[m.value for m in cls]}"
            ) from None


def _section(config: dict[str, Any], key: str) -> dict[str, Any]:
    value = config.get(key) or {}
    if not isinstance(value, dict):
        raise InvalidInput(f"config.{key}", "must be an object")
    return value


class _Wiring:
    """Decides, port by port, which adapter to build."""

    def __init__(self, mode: MemoryMode, config: dict[str, Any], settings: Settings) -> None:
        self.mode = mode
        self.config = config
        self.s = settings
        self.redis_cfg = _section(config, "redis")
        self.pg_cfg = _section(config, "postgres")
        self.qdrant_cfg = _section(config, "qdrant")
        self.vector_cfg = _section(config, "vector")
        self.embed_cfg = _section(config, "embeddings")
        self.event_cfg = _section(config, "eventing")
        self.lifecycle_cfg = _section(config, "memory_enterprise")
        explicit_store = bool(self.pg_cfg) or "data_dir" in config
        self.test_wiring = mode is MemoryMode.TEST or (
            bool(self.redis_cfg.get("testing")) and not explicit_store
        )
        self.enterprise = mode in (MemoryMode.EVENTED_ENTERPRISE, MemoryMode.CLOUD_MANAGED)

    # -- decisions ----------------------------------------------------------
    def postgres_url(self) -> str | None:
        if self.pg_cfg.get("url"):
            return str(self.pg_cfg["url"])
        if self.test_wiring:
            return None
        return self.s.postgres_url

    def redis_url(self) -> str | None:
        if self.redis_cfg.get("testing"):
            return None
        if self.redis_cfg.get("url"):
            return str(self.redis_cfg["url"])
        if self.redis_cfg.get("host"):
            c = self.redis_cfg
            return f"redis://{c['host']}:{int(c.get('port', 6379))}/{int(c.get('db', 0))}"
        if self.test_wiring:
            return None
        if self.s.redis_url:
            return self.s.redis_url
        if self.s.redis_host:
            return f"redis://{self.s.redis_host}:{self.s.redis_port}/{self.s.redis_db}"
        return None

    def data_dir(self) -> Path:
        path = Path(str(self.config.get("data_dir") or self.s.data_dir)).expanduser()
        path.mkdir(parents=True, exist_ok=True)
        return path

    def vector_backend(self) -> str:
        explicit = self.vector_cfg.get("backend") or self.s.vector_backend
        if explicit:
            return str(explicit)
        q = self.qdrant_cfg
        if q and not q.get("testing") and any(q.get(k) for k in ("url", "host", "path", "location")):
            return "qdrant"
        if self.enterprise and not self.test_wiring:
            return "qdrant"
        if self.s.fast_core is False:
            return "memory"
        return "fast"

    def embedder(self) -> Any:
        from .embeddings.registry import create_embedder

        force = bool(self.embed_cfg.get("force_hash")) or self.s.force_hash_embeddings
        model = self.embed_cfg.get("model") or self.s.embeddings_model
        if model is None and self.mode is MemoryMode.TEST:
            model = "hash"
        dim = self.embed_cfg.get("dim")
        return create_embedder(model=model, dim=int(dim) if dim else None, force_hash=force)


def _fail_fast(adapter: Any, service: str, setting: str) -> None:
    try:
        adapter.health()
    except BackendUnavailable as exc:
        raise BackendUnavailable(service, exc.detail or str(exc), setting) from None


def _follower(backends: Backends, shared: bool, interval_ms: int) -> IndexFollower | None:
    """An ``IndexFollower`` where the canonical store is shared between processes
    (a SQLite file, PostgreSQL) but the vector or keyword index lives in this
    process, and this process indexes its own writes (no event workers)."""
    vectors_local = backends.vectors.name in ("fast", "memory")
    keywords_local = backends.keywords.name == "memory"
    if not shared or not backends.options.index_synchronously or not (vectors_local or keywords_local):
        return None
    return IndexFollower(
        backends.kv,
        backends.vectors,
        backends.keywords,
        backends.embedder,
        backends.embeddings,
        vectors_local=vectors_local,
        keywords_local=keywords_local,
        interval=max(0, interval_ms) / 1000.0,
    )


def create_backends(
    mode: MemoryMode | str | None = None,
    config: dict[str, Any] | None = None,
    settings: Settings | None = None,
) -> Backends:
    """Build every adapter for ``mode`` and ``config`` (see module docstring)."""
    mode = MemoryMode.parse(mode)
    config = dict(config or {})
    s = settings or Settings()
    w = _Wiring(mode, config, s)
    embedder = w.embedder()
    pg_url = w.postgres_url()
    redis_url = w.redis_url()
    if w.enterprise and not w.test_wiring and not pg_url:
        raise ConfigurationError(f"{mode.value} needs PostgreSQL: set POSTGRES_URL (or config postgres.url)")
    if w.enterprise and not w.test_wiring and not redis_url:
        raise ConfigurationError(
            f"{mode.value} needs Redis: set REDIS_URL or REDIS_HOST (or config redis.url)"
        )

    # canonical store, graph and keyword index
    canonical: Any
    keywords: Any
    embeddings: Any = None
    if pg_url:
        schema = w.pg_cfg.get("schema")
        canonical = load("kv", "postgres")(pg_url, schema=schema, max_size=s.postgres_pool_max)
        _fail_fast(canonical, "PostgreSQL", "POSTGRES_URL")
        if w.pg_cfg.get("migrate", True):
            canonical.migrate()
        choice = _section(config, "keyword").get("backend")
        if choice == "postgres" or (choice is None and (w.enterprise or w.vector_backend() != "fast")):
            keywords = load("keyword", "postgres")(canonical.pool)
        else:  # vectors are process-local anyway: an in-process BM25, kept fresh by the follower
            keywords = load("keyword", "memory")()
        graph = canonical
    elif mode is MemoryMode.DEVELOPMENT and not w.test_wiring:
        root = w.data_dir()
        canonical = load("kv", "sqlite")(root / "memories.db")
        share = w.embed_cfg.get("share", s.share_embeddings)
        if embedder.reuse_vectors if share is None else bool(share):  # vectors shared by processes
            embeddings = load("embeddings", "sqlite")(database=canonical.database)
        if _section(config, "keyword").get("backend") == "sqlite":
            keywords = load("keyword", "sqlite")(root / "keywords.db")
        else:  # in-process BM25 (fast queries), saved to snapshot files, caught up at start
            keywords = load("keyword", "memory")(root / "keywords")
        graph = canonical
    else:
        canonical = load("kv", "memory")()
        graph = load("graph", "memory")()
        keywords = load("keyword", "memory")()

    # cache, locks, rate limits
    if redis_url:
        prefix = str(w.redis_cfg.get("prefix", "sfm:"))
        cache = load("cache", "redis")(redis_url, prefix=prefix)
        _fail_fast(cache, "Redis", "REDIS_URL / REDIS_HOST")
        locks = load("locks", "redis")(redis_url, prefix=prefix)
        limiter = load("ratelimit", "redis")(redis_url, prefix=prefix)
        kv = load("kv", "cached")(canonical, cache)
    else:
        cache = load("cache", "memory")()
        locks = load("locks", "memory")()
        limiter = load("ratelimit", "memory")()
        kv = canonical

    # vectors
    backend = w.vector_backend()
    vector_cls = load("vector", backend)
    if backend == "qdrant":
        q = w.qdrant_cfg
        url = q.get("url") or (None if w.test_wiring else s.qdrant_url)
        host = q.get("host") or (None if (w.test_wiring or url) else s.qdrant_host)
        path = q.get("path") or (None if (w.test_wiring or url or host) else s.qdrant_path)
        location = q.get("location")
        if not any((url, host, path, location)):
            if w.enterprise and not w.test_wiring:
                raise ConfigurationError(f"{mode.value} needs Qdrant: set QDRANT_URL or QDRANT_HOST")
            location = ":memory:"
        vectors = vector_cls(
            dim=embedder.dim,
            url=url,
            host=host,
            port=int(q.get("port") or s.qdrant_port),
            path=path,
            location=location,
            api_key=q.get("api_key") or s.qdrant_api_key,
        )
        if url or host:
            _fail_fast(vectors, "Qdrant", "QDRANT_URL / QDRANT_HOST")
    elif backend == "fast":
        durable = mode is MemoryMode.DEVELOPMENT and not w.test_wiring
        path = w.vector_cfg.get("path") or (w.data_dir() / "vectors" if durable else None)
        vectors = vector_cls(dim=embedder.dim, path=path, ann_threshold=s.ann_threshold)
    else:
        vectors = vector_cls(dim=embedder.dim)

    # events
    events_on = mode is not MemoryMode.TEST and bool(w.event_cfg.get("enabled", s.eventing_enabled))
    # the evented modes: events go to a transactional outbox in PostgreSQL, a
    # relay publishes them to Kafka and workers do the indexing
    outbox = events_on and w.enterprise and not w.test_wiring and pg_url is not None
    if outbox:
        if KafkaSettings.resolve(_section(config, "kafka"), s) is None:
            raise ConfigurationError(
                f"{mode.value} publishes events to Kafka: set KAFKA_BOOTSTRAP_SERVERS "
                "(or config kafka.bootstrap_servers), or turn events off with EVENTING_ENABLED=false"
            )
        bus = load("events", "outbox")(canonical.pool)
    else:
        bus = load("events", "memory" if events_on else "null")()

    lc = w.lifecycle_cfg
    options = Options(
        max_memory_size=lc.get("max_memory_size", s.max_memory_size),
        change_feed_keep=int(w.config.get("change_feed_keep", s.change_feed_keep)),
        decay_enabled=bool(lc.get("decay_enabled", False)),
        decay_fields=dict(lc.get("decay_fields", {})),
        reconcile_on_start=not outbox,  # with an outbox the workers keep the indexes
        index_synchronously=not outbox,
        read_your_writes=bool(w.event_cfg.get("read_your_writes", s.read_your_writes)),
        index_wait_timeout=float(w.event_cfg.get("read_your_writes_timeout", s.read_your_writes_timeout)),
    )
    backends = Backends(
        kv=kv,
        graph=graph,
        vectors=vectors,
        keywords=keywords,
        cache=cache,
        locks=locks,
        rate_limiter=limiter,
        bus=bus,
        embedder=embedder,
        mode=mode.value,
        options=options,
        embeddings=embeddings,
        canonical=None if kv is canonical else canonical,
    )
    shared = bool(pg_url) or (mode is MemoryMode.DEVELOPMENT and not w.test_wiring)
    sync_ms = w.config.get("sync_interval_ms", s.sync_interval_ms)
    backends.follower = _follower(backends, shared, int(sync_ms))
    return backends


def create_memory_system(
    mode: MemoryMode | str | None = None, namespace: str = "default", config: dict[str, Any] | None = None
) -> SomaFractalMemoryEnterprise:
    """A ready memory system for one namespace (SPEC section 3)."""
    backends = create_backends(mode, config)
    memory = SomaFractalMemoryEnterprise(namespace, backends)
    if backends.follower is not None:  # snapshots + the changes since, or a full reconcile
        backends.follower.start([memory.namespace])
    elif backends.options.reconcile_on_start:
        memory.reconcile()  # heals indexes after a crash; other namespaces heal on first use by the API
    return memory
