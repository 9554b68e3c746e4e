"""The service's Prometheus metrics (prometheus-client), for one process or for uvicorn's workers together.

With several workers each process writes its values to files in PROMETHEUS_MULTIPROC_DIR (set by
the parent before the workers start) and /metrics adds them up, whichever worker answers.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from bertner.serve.batching import BatchDone

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
ROUTES = ("/", "/v1/entities", "/health", "/ready", "/info", "/metrics", "/docs", "/redoc", "/openapi.json")


class Metrics:
    """Requests by route and status, latency, batch sizes in texts and tokens, queue depth, characters/s."""

    def __init__(self) -> None:
        # A registry of its own: two apps in one process (tests) do not collide.
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("bertner_requests_total", "HTTP requests answered, by route and status code",
                                ["route", "status"], registry=r)
        self.latency = Histogram("bertner_request_seconds", "Time from a request's arrival to its answer, by route",
                                 ["route"], registry=r,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
        self.batch_texts = Histogram("bertner_batch_texts", "Texts per model batch", registry=r,
                                     buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024))
        self.batch_tokens = Histogram("bertner_batch_tokens", "Tokens (characters) per model batch", registry=r,
                                      buckets=(64, 256, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 262144))
        self.batch_seconds = Histogram("bertner_batch_seconds", "Model time per batch", registry=r,
                                       buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.queue = Gauge("bertner_queue_texts", "Texts waiting for the model", registry=r,
                           multiprocess_mode="livesum")
        self.characters = Counter("bertner_characters_total", "Characters tagged (rate() of it: characters/s served)",
                                  registry=r)
        self.speed = Gauge("bertner_model_characters_per_second", "Characters per second of model time in the last batch",
                           registry=r, multiprocess_mode="livesum")

    def request(self, path: str, status: int, seconds: float) -> None:
        route = path if path in ROUTES else "other"  # unknown paths in one series, not one each
        self.requests.labels(route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def batch(self, done: BatchDone) -> None:
        self.batch_texts.observe(done.texts)
        self.batch_tokens.observe(done.tokens)
        self.batch_seconds.observe(done.seconds)
        self.characters.inc(done.tokens)
        if done.seconds > 0:
            self.speed.set(done.tokens / done.seconds)

    def queued(self, texts: int) -> None:
        self.queue.set(texts)

    def exposition(self) -> bytes:
        """The Prometheus text format: this process's values, or every worker's added up."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)
