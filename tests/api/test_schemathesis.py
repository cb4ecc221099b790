"""Property-based tests from the app's own OpenAPI document (schemathesis).

Every operation gets generated requests, valid and invalid; a response must
never be a 5xx, and must match what the document promises (status code,
content type, headers, body schema).
"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from somafractalmemory.api.app import create_app
from somafractalmemory.factory import create_backends

from .conftest import make_settings

MAX_EXAMPLES = 25
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]

# POST /import takes JSONL text: send generated strings as they are
schemathesis.serializer.alias("application/x-ndjson", "text/plain")

# one app for the module, over TEST backends (the lifespan is run by schemathesis)
app = create_app(make_settings(), create_backends("test"))
schema = schemathesis.openapi.from_asgi("/openapi.json", app)
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], max_examples=MAX_EXAMPLES
)


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_openapi_document(case: schemathesis.Case) -> None:
    case.call_and_validate(checks=CHECKS)
