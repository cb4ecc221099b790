"""``schemas/memory.event.json``: a valid draft 2020-12 schema, the events the
core builds validate against it (with the reference ``jsonschema`` library and
with the compiled validator the core uses), and both reject the same bad ones."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from somafractalmemory.errors import InvalidInput
from somafractalmemory.eventing.schema import by_type, event_schema, validate_event
from somafractalmemory.models import Link, Memory, MemoryType, memory_id
from somafractalmemory.services.events import EventEmitter

ROOT = Path(__file__).resolve().parents[2]
EPISODIC = MemoryType.EPISODIC


class _Bus:
    name = "memory"
    transactional = False

    def __init__(self) -> None:
        self.events: list[Any] = []

    def publish(self, events: Any) -> None:
        self.events.extend(events)

    def subscribe(self, handler: Any) -> None: ...

    def pending(self) -> int:
        return 0

    def close(self) -> None: ...


def _samples() -> list[dict[str, Any]]:
    emitter = EventEmitter(_Bus())
    a = Memory(memory_id("n", (1.0, 2.0)), "n", (1.0, 2.0), {"text": "a", "tags": ["x"]}, EPISODIC, 1.0, 1.0)
    b = Memory(memory_id("n", (3.0,)), "n", (3.0,), {"text": "b"}, MemoryType.SEMANTIC, 1.0, 2.0, version=2)
    link = Link("n", a.id, b.id, a.coordinate, b.coordinate, "related", 0.5, {"why": "test"}, 1.0)
    events = [
        *emitter.for_stored([a, b]),
        *emitter.for_deleted([a]),
        *emitter.for_links([link]),
        *emitter.for_links([link], created=False),
    ]
    return [e.to_dict() for e in events]


def test_schema_is_valid_and_the_packaged_copy_matches() -> None:
    schema = event_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert json.loads((ROOT / "schemas" / "memory.event.json").read_text()) == schema
    assert schema["properties"]["schema_version"] == {"const": 1}


def test_every_event_type_validates() -> None:
    samples = _samples()
    assert {s["type"] for s in samples} == {
        "memory.created",
        "memory.updated",
        "memory.deleted",
        "link.created",
        "link.deleted",
    }
    validator = jsonschema.Draft202012Validator(event_schema())
    for sample in samples:
        validator.validate(sample)
        validate_event(sample)
        assert sample["schema_version"] == 1


@pytest.mark.parametrize(
    "change",
    [
        {"type": "memory.moved"},
        {"schema_version": 2},
        {"namespace": ""},
        {"coordinate": []},
        {"unexpected": 1},
        {"payload": None},
        {"timestamp": -1},
    ],
)
def test_both_validators_reject_the_same_bad_events(change: dict[str, Any]) -> None:
    bad = {**_samples()[0], **change}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, event_schema(), cls=jsonschema.Draft202012Validator)
    with pytest.raises(InvalidInput):
        validate_event(bad)


def test_required_fields_per_type() -> None:
    created, *_ = _samples()
    for key in ("payload", "memory_type", "version"):
        with pytest.raises(InvalidInput):
            validate_event({k: v for k, v in created.items() if k != key})
    link_event = _samples()[3]
    with pytest.raises(InvalidInput):
        validate_event({k: v for k, v in link_event.items() if k != "link"})


def test_kafka_adapters_name_their_extra_when_the_driver_is_missing() -> None:
    code = (
        "import sys; sys.modules['confluent_kafka'] = None\n"
        "from somafractalmemory.errors import MissingDependency\n"
        "try:\n    import somafractalmemory.adapters.kafka\n"
        "except MissingDependency as exc:\n    assert isinstance(exc, ImportError); print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "pip install 'somafractalmemory[kafka]'" in out and "confluent-kafka" in out


def test_specialised_validators_agree_with_the_reference_on_mutated_events() -> None:
    """``validate_event`` checks each type with a schema specialised from the
    published one (``by_type``); on thousands of mutated events it accepts
    exactly what the reference validator of the published schema accepts."""
    import random

    assert by_type(event_schema()) is not None  # the fast path is in use
    reference = jsonschema.Draft202012Validator(event_schema())
    values: list[Any] = [None, "", "x", 0, -1, 1.5, True, [], [1.0], {}, {"a": 1}, "memory.created"]
    values += ["link.deleted", "memory.deleted", "episodic", 2, [1.0] * 17]
    rng = random.Random(5)
    samples = _samples()
    accepted = rejected = 0
    for _ in range(3000):
        event = dict(rng.choice(samples))
        for _ in range(rng.randint(0, 2)):
            key = rng.choice([*event, "type", "payload", "link", "version", "extra"])
            if rng.random() < 0.3:
                event.pop(key, None)
            else:
                event[key] = rng.choice(values)
        ok = reference.is_valid(event)
        try:
            validate_event(event)
        except InvalidInput:
            assert not ok, event
            rejected += 1
        else:
            assert ok, event
            accepted += 1
    assert accepted > 300 and rejected > 300


def test_an_emitter_compiles_the_validators_when_built_not_in_the_first_write() -> None:
    from somafractalmemory.eventing import schema

    class _Null(_Bus):
        name = "null"

    schema._validators.cache_clear()
    EventEmitter(_Null())  # events off: nothing to compile
    assert schema._validators.cache_info().currsize == 0
    EventEmitter(_Bus(), validate=False)
    assert schema._validators.cache_info().currsize == 0
    EventEmitter(_Bus())
    assert schema._validators.cache_info().currsize == 1
