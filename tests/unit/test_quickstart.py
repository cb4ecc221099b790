"""The README's quick start runs exactly as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _quickstart() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quick start (Python)", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "README has no Python quick start"
    return match.group(1)


def test_readme_quickstart_runs_verbatim(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SOMA_FORCE_HASH_EMBEDDINGS"}
    env["SOMA_DATA_DIR"] = str(tmp_path / ".soma")
    for _ in range(2):  # a second run finds the on-disk Qdrant data of the first
        result = subprocess.run(
            [sys.executable, "-c", _quickstart()],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        assert "'task': 'document SFM'" in result.stdout
        assert "'coordinate': [1.0, 2.0, 3.0]" in result.stdout
    assert (tmp_path / "qdrant.db").exists()
