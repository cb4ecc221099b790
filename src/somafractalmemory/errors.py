"""The exception tree of Soma Fractal Memory.

Every error the library raises on purpose derives from :class:`SFMError`;
adapters translate driver errors into these types at their boundary, so
callers (the HTTP API, the CLI) map *types*, never messages::

    SFMError
    ├── InvalidInput          bad argument; ``field`` names it (HTTP 422)
    │   └── PayloadTooLarge   a value over a size limit (HTTP 413)
    ├── NotFound              no memory at that coordinate (HTTP 404)
    ├── Conflict              a concurrent change or a held lock (HTTP 409)
    │   └── LockTimeout       a lock could not be acquired in time
    ├── Unauthorized          missing or wrong API key (HTTP 401)
    ├── Forbidden             the key may not touch that namespace (HTTP 403)
    ├── RateLimited           too many requests (HTTP 429)
    ├── BackendUnavailable    a service did not answer (HTTP 503)
    └── ConfigurationError    the settings cannot work as given
        └── MissingDependency an optional extra is not installed (also ImportError)
"""

from __future__ import annotations

__all__ = [
    "BackendUnavailable",
    "ConfigurationError",
    "Conflict",
    "Forbidden",
    "InvalidInput",
    "LockTimeout",
    "MissingDependency",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "SFMError",
    "Unauthorized",
    "WriteConflict",
]


class SFMError(Exception):
    """Root of every error raised by Soma Fractal Memory."""


class InvalidInput(SFMError, ValueError):
    """An argument is malformed; ``field`` names the offending input."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class PayloadTooLarge(InvalidInput):
    """A payload, text or request exceeds a documented size limit."""


class NotFound(SFMError, KeyError):
    """The addressed memory (or other object) does not exist."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it plain
        return str(self.args[0]) if self.args else "not found"


class Conflict(SFMError):
    """The operation conflicts with the current state (e.g. a held lock)."""


class LockTimeout(Conflict):
    """A named lock could not be acquired before the timeout."""


class WriteConflict(Conflict):
    """A memory changed between a write's read of it and the write itself
    (another process wrote it): nothing of the write was stored."""


class Unauthorized(SFMError):
    """No valid API key was presented."""


class Forbidden(SFMError):
    """The API key is valid but not allowed to act on the namespace."""


class RateLimited(SFMError):
    """The caller exceeded its request budget; retry after ``retry_after`` s."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"rate limit exceeded; retry after {retry_after:.1f}s")
        self.retry_after = retry_after


class BackendUnavailable(SFMError):
    """A backing service (``service``) could not be reached.

    ``setting`` names the configuration value an operator should check.
    """

    def __init__(self, service: str, detail: str = "", setting: str | None = None) -> None:
        hint = f" (check {setting})" if setting else ""
        text = f"{service} is unavailable{hint}"
        if detail:
            text += f": {detail}"
        super().__init__(text)
        self.service = service
        self.setting = setting
        self.detail = detail


class ConfigurationError(SFMError):
    """The configuration cannot produce a working system."""


class MissingDependency(ConfigurationError, ImportError):
    """An optional dependency is missing; the message names the extra."""

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(
            f"{package} is not installed; install it with: pip install 'somafractalmemory[{extra}]'"
        )
        self.package = package
        self.extra = extra
