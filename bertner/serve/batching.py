"""Adaptive batching: requests that arrive together are tagged together, by one model thread.

Each request is a job (its texts stay together and in order). The event loop only appends jobs to
a queue and awaits their futures; one thread takes jobs off the queue and runs the model, so the
loop never waits for the model. The thread waits at most `max_wait` after the oldest waiting job
arrived for more jobs to join it, and starts at once when the waiting texts reach `max_tokens`
(characters count as tokens: exact for char alignment, about right for subword). Under load the
queue is never empty, so batches fill without waiting; a lone request waits `max_wait` at most.
Inside a batch the Predictor sorts the windows by length, as training batches are.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Sequence

log = logging.getLogger(__name__)


class QueueFullError(Exception):
    """The queue holds as many texts as it may: the request is refused (503) and may be retried later."""

    def __init__(self, retry_after: int):
        super().__init__(f"the queue is full; retry in {retry_after} s")
        self.retry_after = retry_after


class NotServingError(Exception):
    """The model could not be loaded, or the service is shutting down (503)."""


@dataclass
class Job:
    """One request's texts and the future its handler awaits, resolved from the model thread."""

    texts: list[str]
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    arrived: float = field(default_factory=time.monotonic)

    @property
    def tokens(self) -> int:
        return sum(len(t) for t in self.texts)


@dataclass
class BatchDone:
    """What the model thread reports after each batch (for the metrics)."""

    texts: int
    tokens: int
    seconds: float


class Batcher:
    """A queue of jobs and the one thread that tags them in batches: `submit` from the event loop."""

    def __init__(self, tag: Callable[[list[str]], Sequence], max_tokens: int, max_wait_s: float, max_queue: int,
                 on_batch: Callable[[BatchDone], None] = lambda done: None,
                 on_queue: Callable[[int], None] = lambda texts: None):
        self.tag = tag  # texts -> one result per text, in order
        self.max_tokens, self.max_wait_s, self.max_queue = max_tokens, max_wait_s, max_queue
        self.on_batch, self.on_queue = on_batch, on_queue
        self.jobs: deque[Job] = deque()
        self.queued_texts = 0
        self.queued_tokens = 0
        self.tokens_per_s = 0.0  # the model's speed in the last batch, for Retry-After
        self.ready = threading.Event()  # the model is loaded and warmed
        self.failure: str | None = None  # why the model could not be loaded
        self.closing = False
        self.condition = threading.Condition()
        self.thread: threading.Thread | None = None

    # ------------------------------------------------------------------ the event loop's side

    def submit(self, texts: list[str]) -> asyncio.Future:
        """Queue the texts; the future gets one result per text. Raises QueueFullError or NotServingError."""
        loop = asyncio.get_running_loop()
        job = Job(texts, loop.create_future(), loop)
        with self.condition:
            if self.failure is not None:
                raise NotServingError(self.failure)
            if self.closing:
                raise NotServingError("the service is shutting down")
            if self.queued_texts + len(texts) > self.max_queue:
                raise QueueFullError(self.retry_after())
            self.jobs.append(job)
            self.queued_texts += len(texts)
            self.queued_tokens += job.tokens
            self.condition.notify()
        self.on_queue(self.queued_texts)
        return job.future

    def retry_after(self) -> int:
        """Seconds until the queue has room, by the model's last speed: at least 1."""
        if self.tokens_per_s <= 0:
            return 1
        return max(1, math.ceil(self.queued_tokens / self.tokens_per_s))

    # ------------------------------------------------------------------ the model thread

    def start(self, prepare: Callable[[], None]) -> None:
        """Start the model thread: it runs `prepare` (load, warm up), then tags batches until `close`."""
        self.thread = threading.Thread(target=self._run, args=(prepare,), name="bertner-model", daemon=True)
        self.thread.start()

    def close(self, timeout: float | None = None) -> None:
        """Refuse new jobs, let the thread finish every queued one, then stop it."""
        with self.condition:
            self.closing = True
            self.condition.notify_all()
        if self.thread is not None:
            self.thread.join(timeout)

    def _run(self, prepare: Callable[[], None]) -> None:
        try:
            prepare()
        except Exception as e:  # noqa: BLE001 - reported by /ready and to every request, the thread stops
            log.exception("the model could not be loaded")
            with self.condition:
                self.failure = f"the model could not be loaded: {e}"
                failed = list(self.jobs)
                self.jobs.clear()
            for job in failed:
                _settle(job, error=NotServingError(self.failure))
            return
        self.ready.set()
        while True:
            batch = self._take()
            if batch is None:
                return
            self._tag(batch)

    def _take(self) -> list[Job] | None:
        """The next batch: jobs in arrival order up to `max_tokens` (at least one); None once closed and empty."""
        with self.condition:
            while not self.jobs:
                if self.closing:
                    return None
                self.condition.wait()
            deadline = self.jobs[0].arrived + self.max_wait_s
            while self.queued_tokens < self.max_tokens and not self.closing:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.condition.wait(left)
            batch, tokens = [self.jobs.popleft()], 0
            tokens = batch[0].tokens
            while self.jobs and tokens + self.jobs[0].tokens <= self.max_tokens:
                job = self.jobs.popleft()
                batch.append(job)
                tokens += job.tokens
            self.queued_texts -= sum(len(job.texts) for job in batch)
            self.queued_tokens -= tokens
            waiting = self.queued_texts
        self.on_queue(waiting)
        return batch

    def _tag(self, batch: list[Job]) -> None:
        texts = [text for job in batch for text in job.texts]
        tokens = sum(len(t) for t in texts)
        start = time.perf_counter()
        try:
            results = list(self.tag(texts))
        except Exception as e:  # noqa: BLE001 - a failed batch fails its requests (500), not the service
            log.exception("tagging a batch failed")
            for job in batch:
                _settle(job, error=e)
            return
        seconds = time.perf_counter() - start
        if seconds > 0 and tokens:
            self.tokens_per_s = tokens / seconds
        position = 0
        for job in batch:
            _settle(job, result=results[position : position + len(job.texts)])
            position += len(job.texts)
        self.on_batch(BatchDone(len(texts), tokens, seconds))


def _settle(job: Job, result: object = None, error: BaseException | None = None) -> None:
    """Resolve a job's future on its event loop (a client that went away left it cancelled: skip it)."""
    def settle() -> None:
        if job.future.done():
            return
        if error is not None:
            job.future.set_exception(error)
        else:
            job.future.set_result(result)

    try:
        job.loop.call_soon_threadsafe(settle)
    except RuntimeError:  # the loop is closed: nobody waits for this answer any more
        pass
