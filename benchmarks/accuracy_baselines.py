"""Baselines of the accuracy benchmark, measured on the same rows, checkpoint, maximum
length, budget and dev set as the spacy_cls runs, and scored by the same function:

- `run_hf`: Hugging Face `AutoModelForSequenceClassification` fine-tuned with a plain
  PyTorch loop: AdamW (weight decay 0.01), the learning rates of thinc's
  `warmup_linear.v1` step by step, the gradient clipped to norm 1.0, and the same
  batches as spaCy's loop (the training rows shuffled each epoch after seeding Python's
  `random` as spaCy does, cut into runs of BATCH_SIZE).
- `run_logreg`: the frozen encoder's raw last-layer [CLS] rows and scikit-learn's
  `LogisticRegression`, fitted to convergence on as many distinct training rows as the
  others see examples (all of them when the budget is larger than the training set).
"""
from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Dict, Iterator, List

import numpy
import torch

from accuracy_tasks import BATCH_SIZE, SEED, Budget, Task, log, read_split, scores

EVAL_BATCH_SIZE = 64
GRAD_CLIP_NORM = 1.0
WEIGHT_DECAY = 0.01
PROGRESS_EVERY = 20


def _folder(task: Task) -> str:
    from spacy_cls.models.loaders import package_folder

    return str(package_folder(task.model_name))


def _tokenizer(task: Task):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(_folder(task), use_fast=True, **task.tokenizer_config)


def _encode(tokenizer, texts: List[str], max_length: int) -> Dict[str, torch.Tensor]:
    return tokenizer(texts, truncation=True, max_length=max_length, padding=True, return_tensors="pt")


def spacy_order_batches(n_rows: int, steps: int, seed: int) -> Iterator[List[int]]:
    """Row indexes of each step, as spaCy's loop draws them: after
    `fix_random_seed(seed)`, each epoch shuffles the rows with Python's `random` and
    `spacy.batch_by_sequence.v1` cuts them into runs of BATCH_SIZE (the last may be short)."""
    from spacy.util import fix_random_seed

    fix_random_seed(seed)
    order = list(range(n_rows))
    step = 0
    while step < steps:
        random.shuffle(order)
        for start in range(0, n_rows, BATCH_SIZE):
            if step == steps:
                return
            yield order[start: start + BATCH_SIZE]
            step += 1


def run_hf(task: Task, budget: Budget, log_path: Path) -> Dict:
    from spacy.util import fix_random_seed, registry
    from transformers import AutoModelForSequenceClassification

    train = read_split(task, budget, "train")
    dev = read_split(task, budget, "dev")
    tokenizer = _tokenizer(task)
    fix_random_seed(SEED)
    model = AutoModelForSequenceClassification.from_pretrained(
        _folder(task),
        num_labels=len(train.labels),
        problem_type="multi_label_classification" if task.multilabel else "single_label_classification",
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=task.learn_rate, betas=(0.9, 0.999),
                                  eps=1e-8, weight_decay=WEIGHT_DECAY)
    rates = registry.schedules.get("warmup_linear.v1")(
        initial_rate=task.learn_rate, warmup_steps=budget.warmup_steps, total_steps=budget.steps
    )
    model.train()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    seen = 0
    for step, rows in enumerate(spacy_order_batches(len(train.texts), budget.steps, SEED)):
        learn_rate = next(rates)
        for group in optimizer.param_groups:
            group["lr"] = learn_rate
        inputs = _encode(tokenizer, [train.texts[i] for i in rows], budget.max_length)
        gold = torch.from_numpy(train.gold[rows])
        labels = gold if task.multilabel else gold.argmax(dim=1)
        loss = model(**inputs, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP_NORM)
        optimizer.step()
        optimizer.zero_grad()
        seen += len(rows)
        if step and step % PROGRESS_EVERY == 0:
            rate = seen / (time.perf_counter() - wall0)
            left = (budget.steps - step) * BATCH_SIZE / rate
            log(log_path, f"step {step}/{budget.steps}: loss {loss.item():.4f}, {rate:.1f} examples/s, "
                          f"about {left / 60:.1f} min left")
    train_seconds = time.perf_counter() - wall0
    train_cpu = time.process_time() - cpu0
    model.eval()
    wall0 = time.perf_counter()
    probs = _predict_hf(model, tokenizer, dev.texts, budget.max_length, task.multilabel)
    return {
        "system": "hf",
        "pooling": "pooler (HF head)",
        "frozen": False,
        "learn_rate": task.learn_rate,
        "train_rows": len(train.texts),
        "examples_seen": seen,
        "scores": scores(task, probs, dev.gold),
        "train_seconds": train_seconds,
        "train_cpu_seconds": train_cpu,
        "eval_seconds": time.perf_counter() - wall0,
        "dev_rows": len(dev.texts),
    }


@torch.no_grad()
def _predict_hf(model, tokenizer, texts: List[str], max_length: int, multilabel: bool) -> numpy.ndarray:
    out = []
    for start in range(0, len(texts), EVAL_BATCH_SIZE):
        logits = model(**_encode(tokenizer, texts[start: start + EVAL_BATCH_SIZE], max_length)).logits
        out.append((torch.sigmoid(logits) if multilabel else torch.softmax(logits, dim=-1)).numpy())
    return numpy.concatenate(out).astype("float32")


@torch.no_grad()
def cls_features(model, tokenizer, texts: List[str], max_length: int) -> numpy.ndarray:
    """The raw last-layer [CLS] row of each text (what `doc._.cls_vector` holds)."""
    rows = []
    for start in range(0, len(texts), EVAL_BATCH_SIZE):
        hidden = model(**_encode(tokenizer, texts[start: start + EVAL_BATCH_SIZE], max_length)).last_hidden_state
        rows.append(hidden[:, 0].float().numpy())
    return numpy.concatenate(rows)


def run_logreg(task: Task, budget: Budget, log_path: Path) -> Dict:
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from transformers import AutoModel

    train = read_split(task, budget, "train")
    dev = read_split(task, budget, "dev")
    n_rows = min(budget.examples, len(train.texts))
    rows = sorted(random.Random(SEED).sample(range(len(train.texts)), n_rows))
    tokenizer = _tokenizer(task)
    model = AutoModel.from_pretrained(_folder(task))
    model.eval()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    log(log_path, f"encoding {n_rows} training rows")
    features = cls_features(model, tokenizer, [train.texts[i] for i in rows], budget.max_length)
    gold = train.gold[rows]
    log(log_path, f"fitting LogisticRegression on {features.shape}")
    if task.multilabel:
        classifier = OneVsRestClassifier(LogisticRegression(max_iter=2000))
        classifier.fit(features, gold.astype(int))
    else:
        classifier = LogisticRegression(max_iter=2000)
        classifier.fit(features, gold.argmax(axis=1))
    train_seconds = time.perf_counter() - wall0
    train_cpu = time.process_time() - cpu0
    wall0 = time.perf_counter()
    dev_features = cls_features(model, tokenizer, dev.texts, budget.max_length)
    probs = numpy.zeros((len(dev.texts), len(dev.labels)), dtype="float32")
    if task.multilabel:
        probs[:] = classifier.predict_proba(dev_features)
    else:
        # Classes missing from a small training sample keep probability 0.
        probs[:, classifier.classes_] = classifier.predict_proba(dev_features)
    return {
        "system": "logreg",
        "pooling": "cls",
        "frozen": True,
        "learn_rate": None,
        "train_rows": len(train.texts),
        # distinct rows, each used until the fit converges
        "examples_seen": n_rows,
        "scores": scores(task, probs, dev.gold),
        "train_seconds": train_seconds,
        "train_cpu_seconds": train_cpu,
        "eval_seconds": time.perf_counter() - wall0,
        "dev_rows": len(dev.texts),
    }
