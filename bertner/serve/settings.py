"""`bertner serve`'s settings: every option once, with the values it accepts (a `config.Limit`).

They are checked before anything is loaded or bound; `--batch-size` and `--device` follow predict's rules.
Workers started by uvicorn in other processes get them as JSON in an environment variable.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from bertner.config import Limit, check_settings
from bertner.errors import BertnerError

SETTINGS_VARIABLE = "BERTNER_SERVE_SETTINGS"  # how the parent hands the settings to its worker processes
API_KEY_VARIABLE = "BERTNER_API_KEY"
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def limited(default: Any, limit: Limit | None = None) -> Any:
    return field(default=default, metadata={"limit": limit})


@dataclass(frozen=True)
class ServeSettings:
    """What `bertner serve` runs: the run, where it listens, how it batches, and what it refuses."""

    run: str
    host: str = limited("127.0.0.1", Limit(pattern=r"\S+", form="an address or host name"))
    port: int = limited(8000, Limit(low=1, high=65535))
    device: str = "auto"
    batch_size: int = 32  # windows per forward pass, as predict's --batch-size
    workers: int = limited(1, Limit(low=1, high=64))
    threads: int = limited(0, Limit(low=0, high=1024, note="0: the cores it may use, shared among the workers"))
    max_batch_tokens: int = limited(8192, Limit(low=1))
    max_wait_ms: float = limited(2.0, Limit(low=0, high=10_000))
    max_queue: int = limited(1024, Limit(low=1))
    max_chars: int = limited(100_000, Limit(low=1))
    api_key: str | None = limited(None, Limit(pattern=r"[!-~]+", form="printable ASCII without spaces"))
    cors_origins: tuple[str, ...] = ()
    access_log: bool = False
    ensemble: tuple[str, ...] = ()  # more runs to tag with `run` as one model (`--ensemble`)

    def check(self) -> None:
        """Refuse a value outside its limits in one line, naming the option."""
        check_settings(batch_size=self.batch_size, device=self.device)
        for f in fields(self):
            limit, value = f.metadata.get("limit"), getattr(self, f.name)
            if limit is not None and value is not None and not limit.accepts(value, isinstance(value, int)):
                raise BertnerError(f"--{f.name.replace('_', '-')} must be {limit.describe(value)}, got {value!r}")
        for origin in self.cors_origins:
            if origin != "*" and not _is_origin(origin):
                raise BertnerError(f"--cors-origin must be an origin such as https://example.org (scheme, host and "
                                   f"port, no path) or *, got {origin!r}")

    def is_local(self) -> bool:
        return self.host in LOCAL_HOSTS or self.host.startswith("127.")

    def run_name(self) -> str:
        """What the page and /info call the model: the run's folder name, with its ensemble's."""
        return " + ".join(Path(run).name for run in (self.run, *self.ensemble))

    def torch_threads(self) -> int:
        """Threads each worker's model uses: --threads, or the cores shared evenly."""
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1  # taskset
        return self.threads or max(1, cores // self.workers)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServeSettings:
        values = json.loads(text)
        values["cors_origins"] = tuple(values["cors_origins"])
        values["ensemble"] = tuple(values["ensemble"])
        return cls(**values)


def _is_origin(text: str) -> bool:
    scheme, sep, rest = text.partition("://")
    return scheme in ("http", "https") and bool(sep) and bool(rest) and not any(c in rest for c in "/?# ")
