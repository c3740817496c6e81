"""`app/` is a pure HTTP client: it must import (and build its UI) with torch unavailable, and of the
backend it may use only the torch-free contract (`backend.schemas`, which the API answers with)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SCRIPT = """
import sys
sys.modules["torch"] = None  # any `import torch` now raises ImportError
import app, app.main, app.client, app.params, app.state, app.figures, app.lab_page, app.image_panel
from app.main import Catalog, build_ui
from app.client import LabSpec
lab = LabSpec(name="predict", title="Predict", params_schema={"properties": {"top_k": {"type": "integer"}}},
              model_tasks=["classification"])
demo = build_ui("http://127.0.0.1:9", catalog=Catalog(labs=[lab]))
assert demo is not None
contract = {"backend", "backend.schemas", "backend.api", "backend.api.guards"}
leaked = sorted(m for m in sys.modules if (m == "backend" or m.startswith("backend.")) and m not in contract)
assert not leaked, leaked
print("ok")
"""


def test_app_imports_and_builds_without_torch() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("ok")
