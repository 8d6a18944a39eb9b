"""Micro-batching across requests: a bounded queue of texts, cut into batches by a
word-piece budget and a maximum wait, each batch length-sorted and run in one worker
thread, so the event loop keeps answering while the model runs.

Admission counts texts, whatever the request's shape: a request whose texts do not
all fit in the queue is refused whole (`QueueFull`), never partly queued. It is also
refused when the work ahead of it (what is left of the running batch, and the texts
queued) would take longer than `max_queue_ms`, as estimated from the recent rate, or
when, since texts queued together run as one batch, its own texts would hold a request
queued earlier past the answer that one was promised (its admission + the bound + its
own run time). Under overload the accepted requests keep a bounded latency and the rest
get 429 at once; the bound also sizes the batches, since the queue never holds more
than about `max_queue_ms` of work. Each text carries its own future, so every request gets
exactly its own answers back."""
from __future__ import annotations

import asyncio
import collections
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Deque, List, Optional, Sequence

from .served import Outcome


# The default bound on the estimated wait ahead of a new request (docs/serve.md gives
# the measurement behind it); applied once MEASURED_BATCHES batches gave a rate.
DEFAULT_QUEUE_MS = 250.0
MEASURED_BATCHES = 3


class QueueFull(Exception):
    def __init__(self, retry_after: int, why: str) -> None:
        super().__init__(f"{why}; retry in {retry_after}s")
        self.retry_after = retry_after


class Stopped(Exception):
    """The service is shutting down and takes no new texts."""


@dataclass
class _Item:
    text: str
    cost: int
    vector: bool
    future: asyncio.Future
    enqueued: float = field(default_factory=time.monotonic)
    # When its request was promised an answer: admitted + the bound + its own run time.
    deadline: float = math.inf


class MicroBatcher:
    """`classify(texts, vectors)` is awaited by the request handlers; `run_batch` (the
    served pipeline's `classify`) runs in the worker thread."""

    def __init__(self, run_batch: Callable[[Sequence[str], Sequence[bool]], List[Outcome]],
                 count_pieces: Callable[[str], int], *, max_batch_tokens: int, max_wait_ms: float,
                 max_queue_texts: int, max_queue_ms: Optional[float] = None, metrics=None,
                 executor: Optional[ThreadPoolExecutor] = None) -> None:
        self.run_batch = run_batch
        self.count_pieces = count_pieces
        self.max_batch_tokens = max_batch_tokens
        self.max_wait = max_wait_ms / 1000.0
        self.max_queue_texts = max_queue_texts
        self.max_queue_s = (max_queue_ms or DEFAULT_QUEUE_MS) / 1000.0
        self.metrics = metrics
        self._queue: Deque[_Item] = collections.deque()
        self._arrived: Optional[asyncio.Event] = None
        # One thread runs every batch: the caller's (the thread that loaded the model), or our own.
        self._own_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(max_workers=1, thread_name_prefix="spacy-cls-batch")
        self._task: Optional[asyncio.Task] = None
        self._stopping = False
        self.in_flight = 0  # texts in the running batch
        self._batch_started = 0.0
        self._rate = 0.0  # texts per second, a moving average over batches
        self._batches = 0

    @property
    def waiting(self) -> int:
        return len(self._queue)

    def start(self) -> None:
        self._arrived = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="spacy-cls-batcher")

    def retry_after(self) -> int:
        seconds = self.seconds_ahead() if self._rate > 0 else 1.0
        return int(min(60, max(1, math.ceil(seconds))))

    def seconds_ahead(self) -> float:
        """Estimated time until the texts now queued are answered: what is left of the
        running batch, then the queue, at the recent rate."""
        if self._rate <= 0:
            return 0.0
        running = 0.0
        if self.in_flight:
            running = max(0.0, self.in_flight / self._rate - (time.monotonic() - self._batch_started))
        return running + self.waiting / self._rate

    def admit(self, n_texts: int) -> None:
        """Raise QueueFull unless `n_texts` more texts fit in the queue."""
        if self._stopping:
            raise Stopped()
        if self.waiting + n_texts > self.max_queue_texts:
            raise QueueFull(self.retry_after(), f"the queue holds {self.waiting} texts of at most {self.max_queue_texts}")
        ahead = self.waiting + self.in_flight
        if ahead and self._batches >= MEASURED_BATCHES and self._rate > 0:
            # A request waits for the work ahead of it at most the bound; then its own
            # texts run. Texts queued together run as one batch, so it must not hold an
            # earlier request past the answer that one was promised either.
            wait = self.seconds_ahead()
            if wait > self.max_queue_s:
                raise QueueFull(self.retry_after(), f"the {ahead} texts ahead would take about {wait:.2f}s, "
                                                    f"over the queue's bound of {self.max_queue_s:.2f}s (--max-queue-ms)")
            promised = self._earliest_deadline()
            late = time.monotonic() + wait + n_texts / self._rate - promised
            if late > 0:
                raise QueueFull(self.retry_after(), f"these {n_texts} texts would hold a request queued earlier "
                                                    f"{late:.2f}s past its answer, which the queue's bound of "
                                                    f"{self.max_queue_s:.2f}s (--max-queue-ms) promised")

    def promise(self, n_texts: int) -> float:
        """When a request of `n_texts` admitted now is promised its answer."""
        own = n_texts / self._rate if self._rate > 0 else 0.0
        return time.monotonic() + self.max_queue_s + own

    def _earliest_deadline(self) -> float:
        return min((item.deadline for item in self._queue if not item.future.done()), default=math.inf)

    async def classify(self, texts: Sequence[str], vectors: bool, costs: Sequence[int]) -> List[Outcome]:
        """Queue the texts (all or none) and wait for their outcomes, in order. The
        caller bounds the wait; cancelling it drops the texts not yet in a batch."""
        self.admit(len(texts))
        if self._task is None:
            self.start()
        loop = asyncio.get_running_loop()
        deadline = self.promise(len(texts))
        items = [_Item(text, cost, vectors, loop.create_future(), deadline=deadline) for text, cost in zip(texts, costs)]
        self._queue.extend(items)
        self._observe_depth()
        assert self._arrived is not None, "MicroBatcher.start() was not called"
        self._arrived.set()
        try:
            return list(await asyncio.gather(*(item.future for item in items)))
        finally:
            for item in items:
                if not item.future.done():
                    item.future.cancel()

    async def drain(self) -> None:
        """Take no new texts, finish those queued and running, stop the worker."""
        self._stopping = True
        if self._arrived is not None:
            self._arrived.set()
        if self._task is not None:
            await self._task
        if self._own_executor:
            self._executor.shutdown(wait=True)

    async def _loop(self) -> None:
        while True:
            self._drop_cancelled()
            if not self._queue:
                if self._stopping:
                    return
                self._arrived.clear()
                await self._arrived.wait()
                continue
            await self._fill(self._queue[0].enqueued + self.max_wait)
            batch = self._cut()
            if batch:
                await self._run(batch)

    async def _fill(self, deadline: float) -> None:
        """Wait until the queue holds a full budget or the oldest text waited max_wait."""
        while not self._stopping:
            if self._queued_cost() >= self.max_batch_tokens:
                return
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), timeout=left)
            except asyncio.TimeoutError:
                return

    def _queued_cost(self) -> int:
        total = 0
        for item in self._queue:
            total += item.cost
            if total >= self.max_batch_tokens:
                break
        return total

    def _drop_cancelled(self) -> None:
        if any(item.future.done() for item in self._queue):
            self._queue = collections.deque(item for item in self._queue if not item.future.done())
            self._observe_depth()

    def _cut(self) -> List[_Item]:
        """Texts from the head of the queue, in arrival order, up to the budget (a
        text over the budget on its own goes alone)."""
        self._drop_cancelled()
        batch: List[_Item] = []
        used = 0
        while self._queue:
            item = self._queue[0]
            if batch and used + item.cost > self.max_batch_tokens:
                break
            batch.append(self._queue.popleft())
            used += item.cost
        self._observe_depth()
        return batch

    async def _run(self, batch: List[_Item]) -> None:
        batch.sort(key=lambda item: item.cost)
        self.in_flight = len(batch)
        started = self._batch_started = time.monotonic()
        loop = asyncio.get_running_loop()
        try:
            outcomes = await loop.run_in_executor(
                self._executor, self.run_batch, [item.text for item in batch], [item.vector for item in batch])
        except Exception as e:  # noqa: BLE001  (the pipeline failed beyond one text)
            outcomes = [Outcome(error=f"{type(e).__name__}: {e}")] * len(batch)
        finally:
            self.in_flight = 0
        elapsed = max(time.monotonic() - started, 1e-6)
        rate = len(batch) / elapsed
        self._rate = rate if self._rate == 0 else 0.8 * self._rate + 0.2 * rate
        self._batches += 1
        if self.metrics is not None:
            self.metrics.observe_batch(len(batch), sum(item.cost for item in batch), elapsed)
        for item, outcome in zip(batch, outcomes):
            if not item.future.done():
                item.future.set_result(outcome)

    def _observe_depth(self) -> None:
        if self.metrics is not None:
            self.metrics.queue_depth.set(len(self._queue))
