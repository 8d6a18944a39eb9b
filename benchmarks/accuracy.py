"""Accuracy benchmark: which pooling of a BERT encoder classifies best, fine-tuned or
frozen, and how do spacy_cls's pipelines compare with plain Hugging Face fine-tuning
and with logistic regression on frozen [CLS] vectors?

    python benchmarks/accuracy.py --task sst2 [--pooling cls mean] [--frozen | --fine-tuned]
                                  [--quick | --budget-scale K] [--baselines] [--only-baselines]

Our runs train the task's config in `configs/` through spaCy's own training loop
(`spacy.training.initialize.init_nlp` + `spacy.training.loop.train`, what `spacy train`
runs), with the offline checkpoints and the project's data folder swapped in by
overrides. Every system of a task gets the same training budget: the same examples
(the config's corpus reader), the same number of steps of 32 examples, the same
maximum length and the same dev set, scored by the same function.

Runs are resumable: each (task, mode, variant) result is a JSON file in
benchmarks/results/accuracy_runs/, an existing result is skipped, and a run in progress
appends its progress to a .log file beside it. After the runs, the report
(accuracy.md, accuracy.json, accuracy.png) is rebuilt from every result there.

`--budget-scale K` reruns a system with K times the full budget's steps (mode `full-xK`):
the report puts those runs in a table of their own, beside the full-budget run of the
same system, to show how much of a missed target the budget explains.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from importlib.metadata import version
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("ANSI_COLORS_DISABLED", "1")  # plain text in the progress logs

import numpy  # noqa: E402
import torch  # noqa: E402

from _common import ROOT, lock_holder_alive, machine as shared_machine  # noqa: E402
from accuracy_tasks import (  # noqa: E402
    RUNS,
    BATCH_SIZE,
    FROZEN_LEARN_RATE,
    FROZEN_EPOCHS,
    PROGRESS_EVERY,
    POOLINGS,
    Budget,
    Task,
    mode_name,
    TASKS,
    log,
    LabelledData,
    config_overrides,
    load_config,
    read_split,
    examples_in_steps,
    scores,
)

PROGRESS_CALLBACK = "spacy_cls_bench.accuracy_progress.v1"
# log path -> wall-clock and CPU time at the first update of the run writing to it
_FIRST_UPDATE: Dict[str, Tuple[float, float]] = {}


# ---------------------------------------------------------------------------
# Our runs: the task's config through spaCy's training loop


def _register_progress_callback() -> None:
    from spacy.util import registry

    if PROGRESS_CALLBACK in registry.callbacks:
        return

    @registry.callbacks(PROGRESS_CALLBACK)
    def accuracy_progress(log_path: str, total_steps: int, batch_size: int, every: int) -> Callable:
        def before_update(nlp, info: Dict) -> None:
            step = info["step"]
            if step == 0:
                _FIRST_UPDATE[log_path] = (time.perf_counter(), time.process_time())
            if step == 0 or step % every:
                return
            elapsed = time.perf_counter() - _FIRST_UPDATE[log_path][0]
            rate = step * batch_size / elapsed
            eta = (total_steps - step) * batch_size / rate
            log(Path(log_path), f"step {step}/{total_steps} epoch {info['epoch']}: "
                                f"{rate:.1f} examples/s, about {eta / 60:.1f} min left")

        return before_update


def train_ours(task: Task, budget: Budget, pooling: str, frozen: bool, log_path: Path) -> Dict:
    from spacy.training.initialize import init_nlp
    from spacy.training.loop import train as train_loop

    _register_progress_callback()
    n_train = len(read_split(task, budget, "train").texts)
    steps, train_limit = budget.steps, budget.train_limit
    if frozen:
        steps, train_limit = frozen_schedule(budget, n_train)
        n_train = train_limit
    overrides = config_overrides(task, budget, pooling=pooling, frozen=frozen, steps=steps,
                                 train_limit=train_limit)
    config = load_config(task, overrides)
    config["training"]["before_update"] = {
        "@callbacks": PROGRESS_CALLBACK, "log_path": str(log_path), "total_steps": steps,
        "batch_size": BATCH_SIZE, "every": PROGRESS_EVERY,
    }
    dev = read_split(task, budget, "dev")
    with log_path.open("a", encoding="utf8") as stream, contextlib.redirect_stdout(stream):
        nlp = init_nlp(config, use_gpu=-1)
        nlp, _ = train_loop(nlp, None, use_gpu=-1, stdout=stream, stderr=stream)
        # From the first update on: reading the corpus and loading the model are not training.
        wall0, cpu0 = _FIRST_UPDATE.pop(str(log_path))
        train_seconds = time.perf_counter() - wall0
        train_cpu = time.process_time() - cpu0
    component = nlp.get_pipe(task.component)
    if set(component.labels) != set(dev.labels):
        raise RuntimeError(f"Labels differ: pipeline {component.labels}, dev corpus {dev.labels}")
    wall0 = time.perf_counter()
    docs = list(nlp.pipe(dev.texts, batch_size=64))
    eval_seconds = time.perf_counter() - wall0
    probs = numpy.array([[doc.cats[label] for label in dev.labels] for doc in docs], dtype="float32")
    result = {
        "system": "spacy_cls",
        "pooling": pooling,
        "frozen": frozen,
        "learn_rate": FROZEN_LEARN_RATE if frozen else task.learn_rate,
        "train_rows": n_train,
        "examples_seen": examples_in_steps(n_train, steps),
        "distinct_rows": min(n_train, examples_in_steps(n_train, steps)),
        "steps": steps,
        "overrides": {k: v for k, v in overrides.items() if not k.startswith("paths.")},
        "scores": scores(task, probs, dev.gold),
        "spacy_scores": _spacy_scores(nlp, component, docs, dev),
        "train_seconds": train_seconds,
        "train_cpu_seconds": train_cpu,
        "eval_seconds": eval_seconds,
        "dev_rows": len(dev.texts),
    }
    return result


def frozen_schedule(budget: Budget, n_available: int) -> Tuple[int, int]:
    """(steps, train_limit) of a frozen run: the first min(budget examples, rows there
    are) training rows, FROZEN_EPOCHS times."""
    rows = min(budget.examples, n_available)
    return FROZEN_EPOCHS * -(-rows // BATCH_SIZE), rows


def _spacy_scores(nlp, component, docs, dev: LabelledData) -> Dict[str, float]:
    """The pipeline's own scorer on the same predictions: what `spacy evaluate` reports."""
    from spacy.training import Example

    examples = []
    for doc, row in zip(docs, dev.gold):
        reference = nlp.make_doc(doc.text)
        reference.cats = {label: float(value) for label, value in zip(dev.labels, row)}
        examples.append(Example(doc, reference))
    found = component.score(examples)
    return {key: float(found[key]) for key in ("cats_score", "cats_micro_f", "cats_macro_f") if key in found}


# ---------------------------------------------------------------------------
# Run bookkeeping


def run_key(task: Task, mode: str, variant: str) -> str:
    return f"{task.key}-{mode}-{variant}"


def variant_name(pooling: str, frozen: bool) -> str:
    return f"{pooling}-{'frozen' if frozen else 'finetuned'}"


def machine() -> Dict[str, object]:
    return {**shared_machine(), "scikit-learn": version("scikit-learn")}


def shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def command_line() -> str:
    script = Path(sys.argv[0]).resolve()
    if script.is_relative_to(ROOT):
        script = script.relative_to(ROOT)
    return " ".join(["python", script.as_posix(), *sys.argv[1:]])


def run_once(task: Task, mode: str, budget: Budget, variant: str,
             work: Callable[[Path], Dict]) -> Optional[Path]:
    """Run `work` unless its result exists; write the result JSON atomically."""
    RUNS.mkdir(parents=True, exist_ok=True)
    key = run_key(task, mode, variant)
    out = RUNS / f"{key}.json"
    if out.exists():
        print(f"[skip] {key}: {shown(out)} exists (delete it to run again)")
        return None
    with claimed(RUNS / f"{key}.lock") as mine:
        if not mine:
            print(f"[busy] {key}: another benchmark process is running it")
            return None
        return _run_claimed(task, mode, budget, variant, work, key, out)


@contextlib.contextmanager
def claimed(lock: Path):
    """Lets several benchmark processes share a list of runs (say one per CPU core,
    with --threads 1): the first to create a run's lock file runs it. A lock left by
    a process that died is taken over."""
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            if lock_holder_alive(lock):
                yield False
                return
            lock.unlink(missing_ok=True)
            continue
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        try:
            yield True
        finally:
            lock.unlink(missing_ok=True)
        return
    yield False


def _run_claimed(task: Task, mode: str, budget: Budget, variant: str, work: Callable[[Path], Dict],
                 key: str, out: Path) -> Path:
    log_path = RUNS / f"{key}.log"
    log_path.write_text("", encoding="utf8")
    log(log_path, f"start {key}: {command_line()}")
    print(f"[run] {key} (progress: {shown(log_path)})", flush=True)
    wall0 = time.perf_counter()
    found = work(log_path)
    total = time.perf_counter() - wall0
    record = {
        "key": key,
        "task": task.key,
        "title": task.title,
        "mode": mode,
        "variant": variant,
        "checkpoint": task.model_name,
        "config": task.config,
        "budget": {**asdict(budget), "batch_size": BATCH_SIZE, "examples": budget.examples,
                   "warmup_steps": budget.warmup_steps},
        "headline": task.headline,
        **found,
        "examples_per_second": found["examples_seen"] / found["train_seconds"],
        "total_seconds": total,
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "command": command_line(),
        "machine": machine(),
    }
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf8")
    tmp.replace(out)
    log(log_path, f"done in {total / 60:.1f} min: {found['scores']}")
    print(f"[done] {key}: {found['scores']} in {total / 60:.1f} min", flush=True)
    return out


def selected_variants(task: Task, poolings: Optional[Sequence[str]], only_frozen: bool,
                      only_fine_tuned: bool) -> List[Tuple[str, bool]]:
    """The task's default (pooling, frozen) runs, narrowed or widened by the flags."""
    poolings = list(poolings or dict.fromkeys(p for p, _ in task.variants))
    frozen_options = tuple(dict.fromkeys(f for _, f in task.variants))
    if only_frozen:
        frozen_options = (True,)
    elif only_fine_tuned:
        frozen_options = (False,)
    return [(pooling, frozen) for frozen in frozen_options for pooling in poolings]


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", required=True, choices=sorted(TASKS))
    parser.add_argument("--pooling", nargs="+", choices=POOLINGS,
                        help="poolings to run (default: all five on sst2 and chnsenticorp, cls elsewhere)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--frozen", action="store_true", help="only the frozen-encoder runs")
    group.add_argument("--fine-tuned", action="store_true", help="only the fine-tuned runs")
    parser.add_argument("--quick", action="store_true", help="the task's small fixed subset and budget")
    parser.add_argument("--budget-scale", type=int, default=1, metavar="K",
                        help="K times the full budget's steps (same rows, length and schedule shape); "
                             "these runs are saved as mode 'full-xK' and reported apart, as the "
                             "experiment behind a missed target")
    parser.add_argument("--baselines", action="store_true",
                        help="also run the Hugging Face fine-tuning and frozen [CLS] + LR baselines")
    parser.add_argument("--only-baselines", action="store_true", help="run the baselines only")
    parser.add_argument("--no-report", action="store_true", help="do not rebuild the report afterwards")
    parser.add_argument("--threads", type=int, default=2,
                        help="torch threads (default 2; two queues side by side on 2 cores: 1 each)")
    args = parser.parse_args(argv)

    if args.budget_scale < 1 or (args.quick and args.budget_scale != 1):
        parser.error("--budget-scale takes a whole number >= 1 and applies to the full budget only")
    torch.set_num_threads(args.threads)
    task = TASKS[args.task]
    budget = task.budget(args.quick, args.budget_scale)
    mode = mode_name(args.quick, args.budget_scale)
    jobs: List[Tuple[str, Callable[[Path], Dict]]] = []
    if not args.only_baselines:
        for pooling, frozen in selected_variants(task, args.pooling, args.frozen, args.fine_tuned):
            jobs.append((variant_name(pooling, frozen),
                         lambda path, p=pooling, f=frozen: train_ours(task, budget, p, f, path)))
    if args.baselines or args.only_baselines:
        import accuracy_baselines as baselines

        jobs.append(("hf-finetuned", lambda path: baselines.run_hf(task, budget, path)))
        jobs.append(("lr-frozen", lambda path: baselines.run_logreg(task, budget, path)))
    for variant, work in jobs:
        run_once(task, mode, budget, variant, work)
    if not args.no_report:
        import accuracy_report

        print(f"Report: {shown(accuracy_report.build())}")


if __name__ == "__main__":
    main()
