#!/usr/bin/env python3
"""Run event workers: the same entry point as ``soma worker``.

    scripts/run_consumers.py [--group G] [--metrics-port P] [--burst] [--relay] [--batch-size N]

Mode, namespace and services come from the environment (``MEMORY_MODE``,
``POSTGRES_URL``, ``REDIS_URL``, ``KAFKA_BOOTSTRAP_SERVERS``, ...; see
docs/CONFIGURATION.md). Exit codes are those of ``soma`` (3: a service is
unavailable or the configuration cannot work).
"""

from __future__ import annotations

import os
import sys

from somafractalmemory.cli.main import main

if __name__ == "__main__":
    mode = os.environ.get("MEMORY_MODE", "evented_enterprise")
    main(["--mode", mode, "worker", *sys.argv[1:]])
