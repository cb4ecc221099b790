"""Building a Redis client, and the one place Redis errors become ours.

``build_client`` accepts a URL (``redis://``, ``rediss://`` for TLS,
``unix://``) or host/port/db, and sets short socket timeouts so an
unreachable Redis costs a fraction of a second, not a hung request.
Connecting is lazy: building a client never touches the network.
"""

from __future__ import annotations

from typing import Any, cast
from urllib.parse import urlsplit

from ...errors import BackendUnavailable, ConfigurationError, MissingDependency

try:
    import redis
    from redis import Redis
    from redis.asyncio import Redis as AsyncRedis
    from redis.asyncio.retry import Retry as AsyncRetry
    from redis.backoff import ExponentialBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import NoScriptError, RedisError
    from redis.retry import Retry
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise MissingDependency("redis", "redis") from exc

__all__ = [
    "SETTING",
    "AsyncRedis",
    "NoScriptError",
    "Redis",
    "RedisConnectionError",
    "RedisError",
    "build_async_client",
    "build_client",
    "ping",
    "resolve",
    "unavailable",
]

#: The settings an operator should check when Redis cannot be reached.
SETTING = "REDIS_URL / REDIS_HOST"
_SCHEMES = ("redis", "rediss", "unix")


def unavailable(exc: BaseException) -> BackendUnavailable:
    """Translate a driver error into ``BackendUnavailable`` naming the setting."""
    detail = f"{type(exc).__name__}: {exc}".rstrip(": ")
    return BackendUnavailable("Redis", detail, setting=SETTING)


def build_client(url: str | None = None, **connect: Any) -> redis.Redis:
    """A ``redis.Redis`` from ``url`` or ``host``/``port``/``db``.

    Options (keywords): ``host``, ``port``, ``db``, ``password``, ``ssl``,
    ``ssl_ca_certs``, ``socket_timeout`` and ``connect_timeout`` (0.5 s
    each), ``client_name``. ``rediss://`` (or ``ssl=True``) uses TLS with
    certificate verification; ``ssl_ca_certs`` points at a private CA
    bundle. A connection error is retried once (a pooled connection may have
    died with a server restart); a timeout is not retried.
    """
    retry = Retry(ExponentialBackoff(cap=0.05, base=0.005), 1, supported_errors=(RedisConnectionError,))
    return cast(redis.Redis, _build(redis.Redis, retry, url, **connect))


def build_async_client(url: str | None = None, **connect: Any) -> AsyncRedis:
    """The ``redis.asyncio`` twin of ``build_client`` (same arguments), for
    calls made on an event loop; it belongs to the loop it is first used on."""
    retry = AsyncRetry(ExponentialBackoff(cap=0.05, base=0.005), 1, supported_errors=(RedisConnectionError,))
    return cast(AsyncRedis, _build(AsyncRedis, retry, url, **connect))


def _build(
    cls: Any,
    retry: Any,
    url: str | None,
    *,
    host: str | None = None,
    port: int | None = None,
    db: int | None = None,
    password: str | None = None,
    ssl: bool = False,
    ssl_ca_certs: str | None = None,
    socket_timeout: float = 0.5,
    connect_timeout: float = 0.5,
    client_name: str | None = "somafractalmemory",
) -> Any:
    options: dict[str, Any] = {
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": connect_timeout,
        "retry": retry,
        "client_name": client_name,
    }
    if url:
        scheme = urlsplit(url).scheme
        if scheme not in _SCHEMES:
            raise ConfigurationError(f"REDIS_URL must start with redis://, rediss:// or unix://, got {url!r}")
        if db is not None:
            options["db"] = db
        if password is not None:
            options["password"] = password
        if scheme == "rediss" and ssl_ca_certs:
            options["ssl_ca_certs"] = ssl_ca_certs
        return cls.from_url(url, **options)
    if ssl:
        options["ssl"] = True
        if ssl_ca_certs:
            options["ssl_ca_certs"] = ssl_ca_certs
    return cls(host=host or "localhost", port=port or 6379, db=db or 0, password=password, **options)


def ping(client: redis.Redis) -> None:
    """Return quietly if Redis answers, else raise ``BackendUnavailable``."""
    try:
        client.ping()
    except RedisError as exc:
        raise unavailable(exc) from exc


def resolve(client: redis.Redis | str | None, connect: dict[str, Any]) -> tuple[redis.Redis, bool]:
    """``(client, owned)`` from an injected client, a URL, or connect options.

    ``owned`` is true when the adapter built the client and must close it.
    """
    if isinstance(client, redis.Redis):
        return client, False
    return build_client(client, **connect), True
