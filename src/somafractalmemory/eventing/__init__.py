"""The event pipeline: schema validation (``schema``), the outbox relay
(``relay``), workers and their handler (``worker``, ``handler``), their
metrics and the worker process (``runtime``). See docs/EVENTS.md.

Everything here talks to ports (``interfaces.messaging``,
``interfaces.storage``); the Kafka and PostgreSQL drivers live in
``adapters/``.
"""
