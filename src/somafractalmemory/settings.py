"""All settings, read from the environment and ``.env`` (edges only).

The API, the CLI, the workers and the factory read these; the core takes
plain arguments. ``.env.example`` lists every variable with its default.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings"]


class Settings(BaseSettings):
    """Every environment variable Soma Fractal Memory reads."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    memory_mode: str = Field(
        "development",
        alias="MEMORY_MODE",
        description="test | development | evented_enterprise | cloud_managed",
    )
    namespace: str = Field("default", alias="SOMA_NAMESPACE", description="namespace used when none is given")
    data_dir: str = Field(".soma", alias="SOMA_DATA_DIR", description="where DEVELOPMENT keeps its files")
    postgres_url: str | None = Field(
        None, alias="POSTGRES_URL", description="PostgreSQL DSN; enables the PostgreSQL canonical store"
    )
    postgres_pool_max: int = Field(
        10, alias="POSTGRES_POOL_MAX", description="connections in the PostgreSQL pool"
    )
    redis_url: str | None = Field(
        None, alias="REDIS_URL", description="redis:// or rediss:// URL (beats host/port)"
    )
    redis_host: str | None = Field(
        None, alias="REDIS_HOST", description="Redis host; enables the Redis cache"
    )
    redis_port: int = Field(6379, alias="REDIS_PORT", description="Redis port")
    redis_db: int = Field(0, alias="REDIS_DB", description="Redis database number")
    qdrant_url: str | None = Field(None, alias="QDRANT_URL", description="Qdrant server or Cloud URL")
    qdrant_host: str | None = Field(None, alias="QDRANT_HOST", description="Qdrant server host")
    qdrant_port: int = Field(6333, alias="QDRANT_PORT", description="Qdrant server port")
    qdrant_api_key: str | None = Field(None, alias="QDRANT_API_KEY", description="Qdrant Cloud API key")
    qdrant_path: str | None = Field(None, alias="QDRANT_PATH", description="Qdrant local mode directory")
    vector_backend: str | None = Field(
        None, alias="SOMA_VECTOR_BACKEND", description="memory | fast | qdrant (overrides the mode's choice)"
    )
    fast_core: bool | None = Field(
        None, alias="SFM_FAST_CORE", description="1 = fast core vector index, 0 = reference in-process store"
    )
    sync_interval_ms: int = Field(
        200,
        alias="SOMA_SYNC_INTERVAL_MS",
        description="longest a recall may miss another process's writes (0 = check before every read)",
    )
    change_feed_keep: int = Field(
        1_000_000,
        ge=0,
        alias="SOMA_CHANGE_FEED_KEEP",
        description="newest changes the canonical store's change feed keeps (0 = all)",
    )
    ann_threshold: int = Field(
        5_000,
        alias="SOMA_ANN_THRESHOLD",
        description="vectors per namespace above which the fast core uses HNSW",
    )
    kafka_bootstrap_servers: str | None = Field(
        None,
        alias="KAFKA_BOOTSTRAP_SERVERS",
        description="Kafka or Redpanda brokers (host:port,...); the evented modes need it",
    )
    kafka_security_protocol: str | None = Field(
        None,
        alias="KAFKA_SECURITY_PROTOCOL",
        description="PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL (managed Kafka: SASL_SSL)",
    )
    kafka_sasl_mechanism: str | None = Field(
        None, alias="KAFKA_SASL_MECHANISM", description="PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512"
    )
    kafka_sasl_username: str | None = Field(None, alias="KAFKA_SASL_USERNAME", description="SASL user name")
    kafka_sasl_password: str | None = Field(None, alias="KAFKA_SASL_PASSWORD", description="SASL password")
    kafka_ssl_ca_location: str | None = Field(
        None, alias="KAFKA_SSL_CA_LOCATION", description="CA certificate file for TLS to the brokers"
    )
    kafka_topic: str = Field(
        "memory.events", alias="KAFKA_TOPIC", description="topic of events; dead letters go to <topic>.dlq"
    )
    kafka_topic_partitions: int = Field(
        6, alias="KAFKA_TOPIC_PARTITIONS", description="partitions when the worker creates the topic"
    )
    kafka_session_timeout_ms: int = Field(
        10_000, alias="KAFKA_SESSION_TIMEOUT_MS", description="consumer group session timeout of workers"
    )
    worker_group: str = Field(
        "soma-indexers", alias="SOMA_WORKER_GROUP", description="consumer group of soma worker"
    )
    read_your_writes: bool = Field(
        False,
        alias="SOMA_READ_YOUR_WRITES",
        description="evented modes: a store waits until workers have indexed it",
    )
    read_your_writes_timeout: float = Field(
        10.0,
        alias="SOMA_READ_YOUR_WRITES_TIMEOUT",
        description="seconds such a wait may take before the store fails with 503",
    )
    eventing_enabled: bool = Field(
        True, alias="EVENTING_ENABLED", description="publish events of writes (always off in TEST)"
    )
    force_hash_embeddings: bool = Field(
        False, alias="SOMA_FORCE_HASH_EMBEDDINGS", description="use the hash embedder (tests only)"
    )
    embeddings_model: str | None = Field(None, alias="SOMA_EMBEDDINGS_MODEL", description="minilm | hash")
    share_embeddings: bool | None = Field(
        None,
        alias="SOMA_SHARE_EMBEDDINGS",
        description="save vectors in the SQLite file for other processes (unset: only for model embedders)",
    )
    max_memory_size: int | None = Field(
        None,
        alias="SOMA_MAX_MEMORY_SIZE",
        description="prune the least important memories beyond this many per namespace",
    )
    rate_limit_max: int = Field(
        5000, alias="SOMA_RATE_LIMIT_MAX", description="requests per window per API key or client address"
    )
    rate_limit_window: float = Field(
        60.0, alias="SOMA_RATE_LIMIT_WINDOW", description="rate-limit window in seconds"
    )
    api_keys: str | None = Field(None, alias="SOMA_API_KEYS", description="key=ns1|ns2[:ro],... (see docs)")
    api_keys_file: str | None = Field(None, alias="SOMA_API_KEYS_FILE", description="JSON file of API keys")
    max_body_bytes: int = Field(
        8 * 1024 * 1024, alias="SOMA_MAX_BODY_BYTES", description="largest accepted request body"
    )
    openapi_path: str | None = Field(
        "openapi.json",
        alias="SOMA_OPENAPI_PATH",
        description="where the API writes its spec at start (empty = don't)",
    )
    host: str = Field("127.0.0.1", alias="SOMA_HOST", description="address soma serve binds")
    port: int = Field(9595, alias="SOMA_PORT", description="port soma serve binds")
    uvicorn_workers: int = Field(1, alias="UVICORN_WORKERS", description="API worker processes")
    api_store_writers: int = Field(
        2,
        alias="SOMA_API_STORE_WRITERS",
        ge=0,
        description="store batches written at once per namespace and API process (0 = no batching)",
    )
    uvicorn_timeout_graceful: int = Field(
        30, alias="UVICORN_TIMEOUT_GRACEFUL", description="seconds to drain requests on shutdown"
    )
    metrics_port: int = Field(8001, alias="SOMA_METRICS_PORT", description="Prometheus port of workers")
    blas_threads: int = Field(
        1,
        alias="SOMA_BLAS_THREADS",
        ge=0,
        description="BLAS threads per API or worker process (0 = as numpy started)",
    )
