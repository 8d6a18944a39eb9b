"""The batcher alone (no HTTP, no model): batches cut by the word-piece budget and
the wait, length-sorted, every caller its own outcomes in order, all-or-none admission."""
import asyncio
import random
import time

import pytest

from spacy_cls.serve.batcher import MicroBatcher, QueueFull, _Item
from spacy_cls.serve.served import Outcome


class Recorder:
    def __init__(self, fail_on=None):
        self.batches = []
        self.fail_on = fail_on

    def __call__(self, texts, vectors):
        self.batches.append(list(texts))
        if self.fail_on is not None and self.fail_on in texts:
            raise RuntimeError("boom")
        return [Outcome(result={"echo": text}) for text in texts]


def _batcher(recorder, **options):
    options.setdefault("max_batch_tokens", 10)
    options.setdefault("max_wait_ms", 20)
    options.setdefault("max_queue_texts", 1000)
    options.setdefault("max_queue_ms", 60_000)
    return MicroBatcher(recorder, len, **options)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_callers_get_their_own_outcomes_and_batches_keep_the_budget(seed):
    rng = random.Random(seed)
    recorder = Recorder()

    async def main():
        b = _batcher(recorder, max_batch_tokens=30)
        requests = [[("x" * rng.randint(1, 12)) + f"{r}.{i}" for i in range(rng.randint(1, 5))] for r in range(30)]

        async def one(texts):
            await asyncio.sleep(rng.random() / 100)
            return texts, await b.classify(texts, False, [len(t) for t in texts])

        answers = await asyncio.gather(*(one(texts) for texts in requests))
        await b.drain()
        return answers

    for texts, outcomes in asyncio.run(main()):
        assert [o.result["echo"] for o in outcomes] == texts
    for batch in recorder.batches:
        assert len(batch) == 1 or sum(map(len, batch)) <= 30  # a text over the budget goes alone
        assert [len(t) for t in batch] == sorted(len(t) for t in batch)
    assert any(len(batch) > 1 for batch in recorder.batches)


def test_the_wait_fills_batches_and_a_full_budget_does_not_wait():
    recorder = Recorder()

    async def main():
        b = _batcher(recorder, max_batch_tokens=100, max_wait_ms=200)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await asyncio.gather(*(b.classify([f"t{i}"], False, [50]) for i in range(2)))
        full = loop.time() - started
        started = loop.time()
        await b.classify(["alone"], False, [5])
        waited = loop.time() - started
        await b.drain()
        return full, waited

    full, waited = asyncio.run(main())
    assert recorder.batches[0] == ["t0", "t1"] and full < 0.15
    assert 0.15 <= waited < 2


def test_admission_is_all_or_none_and_counts_texts():
    async def main():
        b = _batcher(Recorder(), max_queue_texts=4, max_wait_ms=500, max_batch_tokens=10**6)
        first = asyncio.ensure_future(b.classify(["a", "b", "c"], False, [1, 1, 1]))
        await asyncio.sleep(0.01)
        with pytest.raises(QueueFull) as e:
            await b.classify(["d", "e"], False, [1, 1])
        assert e.value.retry_after >= 1 and b.waiting == 3
        single = await b.classify(["d"], False, [1])
        await first
        await b.drain()
        return single

    assert asyncio.run(main())[0].result == {"echo": "d"}


def _measured(b, rate):
    """As if batches had already given `rate` texts per second."""
    b._rate, b._batches = rate, 3


def test_the_wait_ahead_counts_what_is_left_of_the_running_batch():
    b = _batcher(Recorder(), max_queue_ms=500)
    _measured(b, 10.0)
    b.in_flight = 10  # a batch of 10 texts, 0.7 s into its 1 s
    b._batch_started = time.monotonic() - 0.7
    assert 0.25 < b.seconds_ahead() < 0.35
    b.admit(1)  # 0.3 s left: within 0.5 s
    b._batch_started = time.monotonic()
    with pytest.raises(QueueFull, match="over the queue's bound of 0.50s"):
        b.admit(1)  # the whole second is ahead of it


@pytest.mark.parametrize("queued_ago, admitted", [(0.1, True), (0.3, True), (0.45, False)])
def test_texts_that_would_hold_an_earlier_request_past_its_promise_are_refused(queued_ago, admitted):
    async def main():
        b = _batcher(Recorder(), max_queue_ms=500)
        _measured(b, 10.0)
        # A text queued `queued_ago` s ago, promised its answer 0.5 + 0.1 s after it came.
        came = time.monotonic() - queued_ago
        b._queue.append(_Item("first", 1, False, asyncio.get_running_loop().create_future(),
                              enqueued=came, deadline=came + 0.6))
        # One more text: it waits 0.1 s (within its bound) and both run together, done
        # 0.2 s from now: queued_ago + 0.2 s after the first came.
        if admitted:
            b.admit(1)
        else:
            with pytest.raises(QueueFull, match="would hold a request queued earlier"):
                b.admit(1)

    asyncio.run(main())


def test_a_large_request_waits_the_bound_then_runs_its_own_texts():
    b = _batcher(Recorder(), max_queue_ms=250)
    _measured(b, 100.0)
    b.in_flight = 20  # 0.2 s of work just started
    b._batch_started = time.monotonic()
    b.admit(32)  # waits 0.2 s, then its own 0.32 s: admitted, its promise counts its size
    assert b.promise(32) - time.monotonic() == pytest.approx(0.25 + 0.32, abs=0.01)


def test_the_default_wait_bound():
    from spacy_cls.serve.batcher import DEFAULT_QUEUE_MS

    assert MicroBatcher(Recorder(), len, max_batch_tokens=10, max_wait_ms=0, max_queue_texts=10).max_queue_s == DEFAULT_QUEUE_MS / 1000


def test_a_failing_batch_answers_each_of_its_texts_with_the_error():
    recorder = Recorder(fail_on="bad")

    async def main():
        b = _batcher(recorder, max_wait_ms=50)
        results = await asyncio.gather(b.classify(["bad"], False, [1]), b.classify(["good"], False, [1]))
        after = await b.classify(["later"], False, [1])
        await b.drain()
        return results, after

    (bad, good), after = asyncio.run(main())
    assert "boom" in bad[0].error and "boom" in good[0].error
    assert after[0].result == {"echo": "later"}


def test_cancelled_callers_are_dropped_before_their_batch():
    recorder = Recorder()

    async def main():
        b = _batcher(recorder, max_wait_ms=100, max_batch_tokens=10**6)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(b.classify(["gone"], False, [1]), timeout=0.01)
        kept = await b.classify(["kept"], False, [1])
        await b.drain()
        return kept

    assert asyncio.run(main())[0].result == {"echo": "kept"}
    assert all("gone" not in batch for batch in recorder.batches)
