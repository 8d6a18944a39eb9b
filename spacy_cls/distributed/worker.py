"""One rank of a data-parallel `spacy train`: spaCy's own `train` function, with the
batches sharded by rank, the gradients all-reduced before the optimizer step, and only
rank 0 evaluating, logging and saving.

spaCy's `train` has no hook for the batches it draws or for its evaluation, so this
process replaces `spacy.training.loop.create_train_batches` and
`create_evaluation_callback` (module attributes `train` looks up when it runs) with
wrappers around spaCy's own functions, in this worker process only.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any, Dict, Optional

import numpy
import torch
import torch.distributed as dist

from .gradients import DEFAULT_BUCKET_BYTES, GradientSync, pipeline_weights, sync_before_first_update, trainable_models
from .sharding import ShardState, shard_batches

# A collective that waits longer than this for a peer fails (a worker that hangs).
COLLECTIVE_TIMEOUT = timedelta(minutes=10)
REPORT_FILE = "distributed.json"


class WorkerStopped(BaseException):
    """The launcher stopped this worker (another worker failed). A BaseException, so that
    spaCy's loop does not treat it as a training error, yet still saves model-last."""


_STOP = {"requested": False}


def _request_stop(signum, frame):
    # Raising here could cut short spaCy's saving of model-last; the next step stops instead.
    _STOP["requested"] = True


def run_worker(config_path: str, output: Optional[str], overrides: Dict[str, Any], *, use_gpu: bool = False,
               check_sync: bool = False, bucket_bytes: int = DEFAULT_BUCKET_BYTES) -> Dict[str, Any]:
    """Train one rank. The process group comes from torchrun's environment, or is the one
    Ray Train set up already."""
    import spacy.training.loop as loop
    from spacy.training.initialize import init_nlp
    from spacy.util import load_config

    import spacy_cls  # noqa: F401  (factories)

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_gpu else "gloo", timeout=COLLECTIVE_TIMEOUT)
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device("cpu")
    if use_gpu:
        import spacy

        local = int(os.environ.get("LOCAL_RANK", "0"))
        spacy.require_gpu(local)
        device = torch.device("cuda", local)
    quiet = open(os.devnull, "w")
    out = sys.stdout if rank == 0 else quiet
    config = load_config(Path(config_path), overrides=overrides, interpolate=False)
    with contextlib.redirect_stdout(out):
        nlp = init_nlp(config, use_gpu=0 if use_gpu else -1)
    training = nlp.config.interpolate()["training"]
    seed = int(training.get("seed") or 0)
    frozen = list(training.get("frozen_components") or [])
    sync = GradientSync(pipeline_weights(trainable_models(nlp, frozen)), device=device, bucket_bytes=bucket_bytes)
    sync.broadcast_weights(0)
    state = ShardState()
    digests = []

    def check_in_step():
        mine = sync.weights_digest()
        everyone = [None] * world
        dist.all_gather_object(everyone, mine)
        if len(set(everyone)) != 1:
            raise RuntimeError(f"The ranks' weights differ after step {sync.calls}: {everyone}")
        digests.append(mine)

    def local_weight() -> float:
        if _STOP["requested"]:
            raise WorkerStopped("stopped by the launcher (a signal, or another worker failed)")
        return state.weight

    sync_before_first_update(nlp, sync, local_weight, exclude=frozen, after=check_in_step if check_sync else None)
    original_batches, original_evaluation = loop.create_train_batches, loop.create_evaluation_callback

    def sharded_batches(nlp_, corpus, batcher, max_epochs):
        # `train` seeded every generator alike just before this call: shuffling (Python's
        # random) stays shared so that the ranks cut the same batches; dropout (numpy,
        # torch) is seeded per rank.
        numpy.random.seed(seed + rank)
        torch.manual_seed(seed + rank)
        return shard_batches(original_batches(nlp_, corpus, batcher, max_epochs), rank, world, state)

    def broadcast_evaluation(nlp_, dev_corpus, score_weights):
        evaluate = original_evaluation(nlp_, dev_corpus, score_weights) if rank == 0 else None

        def shared():
            result = [evaluate() if rank == 0 else None]
            dist.broadcast_object_list(result, src=0)
            return result[0]

        return shared

    loop.create_train_batches, loop.create_evaluation_callback = sharded_batches, broadcast_evaluation
    if rank == 0 and output:
        Path(output).mkdir(parents=True, exist_ok=True)  # as spacy train's command line does
    # Ray Train runs the loop in a worker thread, where signals cannot be caught: there
    # Ray itself ends the workers, and a lost peer still ends the collectives.
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _request_stop) if rank == 0 and in_main_thread else None
    start = time.perf_counter()
    stopped: Optional[BaseException] = None
    try:
        loop.train(nlp, Path(output) if (output and rank == 0) else None, use_gpu=0 if use_gpu else -1,
                   stdout=out, stderr=sys.stderr if rank == 0 else quiet)
    except (WorkerStopped, RuntimeError) as err:
        stopped = err
    finally:
        loop.create_train_batches, loop.create_evaluation_callback = original_batches, original_evaluation
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    seconds = time.perf_counter() - start
    report = {
        "rank": rank, "world_size": world, "steps": sync.calls, "seconds": seconds,
        "allreduce_seconds": sync.seconds, "allreduce_seconds_per_step": sync.seconds / max(1, sync.calls),
        "weights": sync.n_weights, "values": sync.n_values, "buckets": len(sync.buckets),
        "skipped_batches": state.skipped_batches, "digests": digests,
        "stopped": None if stopped is None else f"{type(stopped).__name__}: {stopped}",
    }
    if rank == 0 and output:
        Path(output).mkdir(parents=True, exist_ok=True)
        (Path(output) / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n", encoding="utf8")
    if stopped is not None:
        if rank == 0:
            where = f"; {Path(output) / 'model-last'} holds the weights after the last completed step" if output else ""
            print(f"Distributed training stopped after {sync.calls} steps: a worker was lost "
                  f"({report['stopped']}){where}. The run does not resume: start it again, e.g. from "
                  f"model-last with [initialize] / a `name` pointing at it.", file=sys.stderr)
        raise SystemExit(3)
    if dist.is_initialized():
        dist.barrier()
    return report


def main(argv=None) -> None:
    """`python -m spacy_cls.distributed.worker CONFIG OUTPUT OVERRIDES_JSON [--gpu] [--check-sync]`,
    as the torchrun launcher starts it."""
    args = list(sys.argv[1:] if argv is None else argv)
    flags = {arg for arg in args if arg.startswith("--")}
    config, output, overrides = [arg for arg in args if not arg.startswith("--")]
    run_worker(config, output or None, json.loads(overrides), use_gpu="--gpu" in flags,
               check_sync="--check-sync" in flags)
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
