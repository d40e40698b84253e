"""Make ``src/`` importable when strongroom is not installed into the environment."""

import importlib.util
import sys
from pathlib import Path

if importlib.util.find_spec("strongroom") is None:  # pragma: no cover - depends on the setup
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
