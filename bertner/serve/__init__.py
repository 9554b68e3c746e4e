"""`bertner serve`: a run behind an HTTP service (FastAPI + uvicorn + prometheus-client, the `serve` extra).

settings.py (every option and its range), batching.py (the queue that feeds one model thread),
metrics.py (Prometheus), page.py (GET /: paste text, see its entities), app.py (the routes, limits,
key, and running it under uvicorn). This module imports none of the extra's packages, so the command
line can say which extra is missing.
"""

from __future__ import annotations

import importlib.util

from bertner.errors import BertnerError

EXTRA_PACKAGES = {"fastapi": "fastapi", "uvicorn": "uvicorn", "prometheus_client": "prometheus-client"}


def require_serve_extra() -> None:
    """One line naming the extra when one of its packages is not installed."""
    missing = []
    for module, package in EXTRA_PACKAGES.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a module set to None in sys.modules, or one without a spec
            found = False
        if not found:
            missing.append(package)
    if missing:
        raise BertnerError(f"bertner serve needs the serve extra ({', '.join(missing)} missing): "
                           'pip install "bertner[serve]" (from a checkout: pip install -e ".[serve]")')
