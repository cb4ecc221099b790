"""API keys: ``Authorization: Bearer <key>``, each key bound to namespaces.

Where keys come from (both may be used; grants of the same key add up):

``SOMA_API_KEYS``
    Comma-separated entries ``KEY=NAMESPACES[:ACCESS]``. ``NAMESPACES`` is
    ``|``-separated, ``*`` meaning every namespace; ``ACCESS`` is ``rw``
    (default), ``ro`` (read only) or ``wo`` (write only). Example::

        SOMA_API_KEYS="k-agent-a=agent-a:rw,k-reader=agent-a|agent-b:ro,k-admin=*"

    A key may not contain ``=`` or ``,``; a namespace used here may not
    contain ``|``, ``:`` or ``,`` (use the file for those).

``SOMA_API_KEYS_FILE``
    A JSON file: ``{"keys": [{"key": "...", "name": "agent-a", "read": ["agent-a"],
    "write": ["agent-a"]}, ...]}`` (a bare list works too). Instead of
    ``key``, ``key_sha256`` (hex) stores only the key's SHA-256 digest.

Keys are required in ``evented_enterprise`` and ``cloud_managed`` (the app
refuses to start without any); in ``development`` and ``test`` they are
optional, and with none configured anyone may use any namespace.

A request's namespace is its ``X-Soma-Namespace`` header when given, else the
key's only namespace when it is bound to exactly one, else the default
namespace (``SOMA_NAMESPACE``, "default"). The key must be allowed to read
(or write, for writes) that namespace, else 403: a key for A can neither
read nor write B. The presented key is hashed and compared against every
configured key with ``hmac.compare_digest``, without stopping at a match.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from hmac import compare_digest
from pathlib import Path
from typing import Any, Literal

from ..errors import ConfigurationError, Forbidden, InvalidInput, Unauthorized
from ..models import validate_namespace

__all__ = ["ENFORCING_MODES", "Access", "KeyGrant", "KeyRing", "parse_key_file", "parse_key_spec"]

Access = Literal["read", "write"]
ENFORCING_MODES = frozenset({"evented_enterprise", "cloud_managed"})
WILDCARD = "*"
_ACCESS = {"rw": (True, True), "ro": (True, False), "wo": (False, True)}


@dataclass(frozen=True)
class KeyGrant:
    """One key: its digest, a label for logs and rate limits, what it may touch."""

    name: str
    digest: bytes
    read: frozenset[str]
    write: frozenset[str]

    def allows(self, namespace: str, access: Access) -> bool:
        scope = self.read if access == "read" else self.write
        return WILDCARD in scope or namespace in scope

    @property
    def only_namespace(self) -> str | None:
        """The namespace the key is bound to, if there is exactly one (and no ``*``)."""
        spaces = self.read | self.write
        if len(spaces) == 1 and WILDCARD not in spaces:
            return next(iter(spaces))
        return None


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def _namespaces(values: Iterable[Any], where: str) -> frozenset[str]:
    out = set()
    for value in values:
        if value == WILDCARD:
            out.add(WILDCARD)
            continue
        try:
            out.add(validate_namespace(value))
        except InvalidInput as exc:
            raise ConfigurationError(f"{where}: namespace {value!r} {exc.message}") from None
    return frozenset(out)


def _merge(grants: list[KeyGrant]) -> list[KeyGrant]:
    """Grants of the same key add up."""
    merged: dict[bytes, KeyGrant] = {}
    for g in grants:
        old = merged.get(g.digest)
        merged[g.digest] = (
            g if old is None else KeyGrant(old.name, g.digest, old.read | g.read, old.write | g.write)
        )
    return list(merged.values())


def parse_key_spec(spec: str, source: str = "SOMA_API_KEYS") -> list[KeyGrant]:
    """Grants from ``KEY=NS1|NS2[:ro|rw|wo],...`` (see the module docstring)."""
    grants = []
    for index, raw in enumerate(spec.split(","), start=1):
        entry = raw.strip()
        if not entry:
            continue
        where = f"{source} entry {index}"
        key, sep, rest = entry.partition("=")
        key = key.strip()
        if not sep or not key or not rest.strip():
            raise ConfigurationError(f"{where}: expected KEY=NAMESPACES[:ro|rw|wo]")
        spaces, colon, access = rest.rpartition(":")
        if not colon:
            spaces, access = rest, "rw"
        elif access.strip() not in _ACCESS:
            raise ConfigurationError(f"{where}: access must be ro, rw or wo, got {access.strip()!r}")
        can_read, can_write = _ACCESS[access.strip()]
        names = _namespaces((s.strip() for s in spaces.split("|")), where)
        label = "key-" + hashlib.sha256(key.encode()).hexdigest()[:8]
        grants.append(
            KeyGrant(
                label,
                _digest(key),
                names if can_read else frozenset(),
                names if can_write else frozenset(),
            )
        )
    return grants


def parse_key_file(data: Any, source: str = "SOMA_API_KEYS_FILE") -> list[KeyGrant]:
    """Grants from the decoded JSON of a key file (see the module docstring)."""
    items = data.get("keys") if isinstance(data, Mapping) else data
    if not isinstance(items, list):
        raise ConfigurationError(f"{source}: expected {{'keys': [...]}} or a list of keys")
    grants = []
    for index, item in enumerate(items):
        where = f"{source} keys[{index}]"
        if not isinstance(item, Mapping):
            raise ConfigurationError(f"{where}: must be an object")
        key, hashed = item.get("key"), item.get("key_sha256")
        if isinstance(key, str) and key:
            digest = _digest(key)
        elif isinstance(hashed, str):
            try:
                digest = bytes.fromhex(hashed)
            except ValueError:
                digest = b""
            if len(digest) != 32:
                raise ConfigurationError(f"{where}: key_sha256 must be 64 hex digits")
        else:
            raise ConfigurationError(f"{where}: needs 'key' (a non-empty string) or 'key_sha256'")
        lists = {}
        for access in ("read", "write"):
            value = item.get(access, [])
            if not isinstance(value, list):
                raise ConfigurationError(f"{where}: '{access}' must be a list of namespaces")
            lists[access] = _namespaces(value, where)
        if not lists["read"] and not lists["write"]:
            raise ConfigurationError(f"{where}: grants no namespace (set 'read' and/or 'write')")
        name = item.get("name")
        label = str(name) if isinstance(name, str) and name else "key-" + digest.hex()[:8]
        grants.append(KeyGrant(label, digest, lists["read"], lists["write"]))
    return grants


class KeyRing:
    """The configured keys and the rules for a request's namespace."""

    def __init__(self, grants: Iterable[KeyGrant], default_namespace: str = "default") -> None:
        self.grants: tuple[KeyGrant, ...] = tuple(_merge(list(grants)))
        self.default_namespace = validate_namespace(default_namespace)

    @property
    def enabled(self) -> bool:
        """Whether requests must present a key."""
        return bool(self.grants)

    @classmethod
    def from_settings(
        cls,
        api_keys: str | None,
        api_keys_file: str | None,
        mode: str,
        default_namespace: str = "default",
    ) -> KeyRing:
        grants: list[KeyGrant] = []
        if api_keys:
            grants += parse_key_spec(api_keys)
        if api_keys_file:
            try:
                data = json.loads(Path(api_keys_file).read_text(encoding="utf-8"))
            except OSError as exc:
                raise ConfigurationError(f"SOMA_API_KEYS_FILE: cannot read {api_keys_file}: {exc}") from None
            except ValueError as exc:
                raise ConfigurationError(f"SOMA_API_KEYS_FILE: not valid JSON: {exc}") from None
            grants += parse_key_file(data)
        if mode in ENFORCING_MODES and not grants:
            raise ConfigurationError(
                f"{mode} requires API keys: set SOMA_API_KEYS or SOMA_API_KEYS_FILE (see docs/API.md)"
            )
        return cls(grants, default_namespace)

    def authenticate(self, token: str | None) -> KeyGrant | None:
        """The grant of a bearer token; ``None`` when no keys are configured.

        Raises ``Unauthorized`` for a missing or unknown key. Every configured
        key is compared (constant time per comparison, no early exit)."""
        if not self.grants:
            return None
        if not token:
            raise Unauthorized("an API key is required: send 'Authorization: Bearer <key>'")
        presented = _digest(token)
        found = None
        for grant in self.grants:
            if compare_digest(presented, grant.digest):
                found = grant
        if found is None:
            raise Unauthorized("unknown API key")
        return found

    def namespace_for(self, grant: KeyGrant | None, requested: str | None, access: Access) -> str:
        """The namespace a request acts on; ``Forbidden`` if the key may not."""
        if requested is not None:
            try:
                namespace = validate_namespace(requested)
            except InvalidInput as exc:
                raise InvalidInput("X-Soma-Namespace", exc.message) from None
        elif grant is not None and grant.only_namespace is not None:
            namespace = grant.only_namespace
        else:
            namespace = self.default_namespace
        if grant is not None and not grant.allows(namespace, access):
            raise Forbidden(f"this API key may not {access} namespace {namespace!r}")
        return namespace
