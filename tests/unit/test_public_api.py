"""The public API is explicit, and every setting is documented."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import somafractalmemory
from somafractalmemory.adapters.registry import ADAPTERS, load
from somafractalmemory.errors import ConfigurationError, MissingDependency, SFMError
from somafractalmemory.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_all_names_exist_and_nothing_else_is_public() -> None:
    exported = set(somafractalmemory.__all__)
    for name in exported:
        assert hasattr(somafractalmemory, name), name
    assert {
        "create_memory_system",
        "MemoryMode",
        "MemoryType",
        "SomaFractalMemoryEnterprise",
        "SFMError",
    } <= exported
    for name in exported:
        obj = getattr(somafractalmemory, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, SFMError), name


def test_spec_import_paths() -> None:
    from somafractalmemory.core import MemoryType as CoreMemoryType
    from somafractalmemory.core import SomaFractalMemoryEnterprise
    from somafractalmemory.factory import MemoryMode, create_memory_system

    assert CoreMemoryType.EPISODIC.value == "episodic"
    assert {m.value for m in MemoryMode} == {"test", "development", "evented_enterprise", "cloud_managed"}
    assert isinstance(create_memory_system(MemoryMode.TEST, "x"), SomaFractalMemoryEnterprise)


@pytest.mark.parametrize("field", sorted(Settings.model_fields))
def test_every_setting_is_documented(field: str) -> None:
    alias = Settings.model_fields[field].alias
    assert alias, field
    assert f"`{alias}`" in (ROOT / "docs" / "CONFIGURATION.md").read_text(), alias
    assert alias in (ROOT / ".env.example").read_text(), alias


def test_registry_rows_name_their_extras() -> None:
    for (port, name), row in ADAPTERS.items():
        if row.package:
            assert row.extra in {"postgres", "redis", "qdrant", "kafka", "embeddings", "ann"}, (port, name)
    with pytest.raises(ConfigurationError, match="known"):
        load("vector", "nope")


def test_missing_extra_names_the_install_command() -> None:
    code = (
        "import sys; sys.modules['qdrant_client'] = None\n"
        "from somafractalmemory.adapters.registry import load\n"
        "from somafractalmemory.errors import MissingDependency\n"
        "try:\n    load('vector', 'qdrant')\nexcept MissingDependency as e:\n"
        "    assert isinstance(e, ImportError); print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "pip install 'somafractalmemory[qdrant]'" in out.stdout
    assert issubclass(MissingDependency, ImportError)
