"""Decisions benchmark: do class weights, tuned thresholds and temperature scaling help
on real data, and how much does a dev score move between folds?

    python benchmarks/decisions.py [--run KEY ...] [--threads 1] [--no-report]
    python benchmarks/decisions.py --report

Each run trains a task's config through spaCy's training loop (as the accuracy benchmark
does, same checkpoint, learning rate, batch size and maximum length), usually with a
smaller step budget (each run's steps are in the table), saves the pipeline, then:
- `*-calibration`: fits a temperature on a held-out part of the training data and reports
  ECE / Brier on dev before and after (never fitted on the set it reports);
- `goemotions-thresholds`: tunes a threshold per label on a held-out part of train and
  reports dev macro-F1 at the config's fixed 0.3 and at the tuned thresholds;
- `*-weights-none` / `*-weights-balanced`: the same run without and with
  class_weights = "balanced" (TNEWS, and SST-2 with positives cut to 1 in 20 negatives);
- `trec-cv`: `spacy_cls.decisions.cv` over 5 folds of TREC's training file.

Resumable: a run's result is benchmarks/results/decisions_runs/KEY.json (skipped when it
exists), its progress is appended to KEY.log beside it, and a trained pipeline that is
already saved (benchmarks/runs/decisions/KEY/model) is reused. The report
(decisions.md, decisions.json) is rebuilt from every result there.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Dict, List, Optional, Sequence

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("ANSI_COLORS_DISABLED", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy  # noqa: E402
import torch  # noqa: E402

from _common import ROOT, RESULTS, lock_holder_alive, machine, markdown_table  # noqa: E402
from accuracy_tasks import (  # noqa: E402
    BATCH_SIZE,
    TASKS,
    Task,
    config_overrides,
    load_config,
    log,
    read_split,
)

RUNS = RESULTS / "decisions_runs"
MODELS = ROOT / "benchmarks" / "runs" / "decisions"
SEED = 0


@dataclass(frozen=True)
class Run:
    key: str
    task: str
    kind: str  # calibration | thresholds | weights | cv
    steps: int
    holdout: int = 0  # training rows held out to fit on (calibration, thresholds)
    class_weights: Optional[str] = None
    positive_ratio: Optional[int] = None  # keep 1 positive per this many negatives
    folds: int = 0
    dev_limit: int = 0  # score on the first rows of dev only (0: all)


# Steps are cut from the accuracy benchmark's full budgets (SST-2 500, ChnSentiCorp 250,
# GoEmotions 600, TNEWS 600, TREC 250) so that every run fits on a shared 2-core machine;
# raise them here for a longer, closer-to-converged run.
RUNS_LIST: List[Run] = [
    Run("sst2-calibration", "sst2", "calibration", steps=80, holdout=2000),
    Run("goemotions-thresholds", "goemotions", "thresholds", steps=60, holdout=3000),
    Run("sst2-1to20-weights-none", "sst2", "weights", steps=150, positive_ratio=20),
    Run("sst2-1to20-weights-balanced", "sst2", "weights", steps=150, positive_ratio=20,
        class_weights="balanced"),
    Run("chnsenticorp-calibration", "chnsenticorp", "calibration", steps=60, holdout=1000),
    Run("tnews-weights-none", "tnews", "weights", steps=60, dev_limit=2000),
    Run("tnews-weights-balanced", "tnews", "weights", steps=60, class_weights="balanced", dev_limit=2000),
    Run("trec-cv", "trec", "cv", steps=20, folds=5),
    # The accuracy benchmark's budgets (benchmarks/accuracy_tasks.py), where the runs above cut them.
    Run("goemotions-thresholds-full", "goemotions", "thresholds", steps=600, holdout=3000),
    Run("sst2-calibration-full", "sst2", "calibration", steps=500, holdout=2000),
    Run("chnsenticorp-calibration-full", "chnsenticorp", "calibration", steps=250, holdout=1000),
    Run("trec-cv-full", "trec", "cv", steps=250, folds=5),
    Run("tnews-weights-none-full", "tnews", "weights", steps=600, dev_limit=2000),
    Run("tnews-weights-balanced-full", "tnews", "weights", steps=600, class_weights="balanced", dev_limit=2000),
]
RUNS_BY_KEY = {run.key: run for run in RUNS_LIST}


def command_line() -> str:
    return " ".join(["python", "benchmarks/decisions.py", *sys.argv[1:]])


# ---------------------------------------------------------------------------
# Training


def training_rows(run: Run, task: Task):
    """(train examples, held-out examples) as spaCy Examples of a blank pipeline."""
    import spacy
    from spacy.training import Example

    data = read_split(task, task.full, "train")
    nlp = spacy.blank(load_config(task, {})["nlp"]["lang"])
    rows = list(zip(data.texts, data.gold))
    random.Random(SEED).shuffle(rows)
    if run.positive_ratio:
        positive = data.labels.index("positive")
        negatives = [r for r in rows if r[1][positive] == 0]
        positives = [r for r in rows if r[1][positive] == 1][: max(1, len(negatives) // run.positive_ratio)]
        rows = negatives + positives
        random.Random(SEED).shuffle(rows)
    held, train = rows[: run.holdout], rows[run.holdout:]

    def examples(part):
        out = []
        for text, gold in part:
            doc = nlp.make_doc(text)
            out.append(Example(doc.copy(), _with_cats(doc, data.labels, gold)))
        return out

    return examples(train), examples(held), data.labels


def _with_cats(doc, labels, gold):
    doc.cats = {label: float(value) for label, value in zip(labels, gold)}
    return doc


def write_docbin(examples, path: Path) -> None:
    from spacy.tokens import DocBin

    DocBin(docs=[eg.reference for eg in examples], store_user_data=False).to_disk(path)


def train(run: Run, log_path: Path) -> Path:
    """Train and save the run's pipeline (reused when already saved)."""
    from spacy.training.initialize import init_nlp
    from spacy.training.loop import train as train_loop

    work = MODELS / run.key
    model_dir = work / "model"
    if (model_dir / "meta.json").exists():
        log(log_path, f"reusing the saved pipeline {model_dir.relative_to(ROOT)}")
        return model_dir
    work.mkdir(parents=True, exist_ok=True)
    task = TASKS[run.task]
    train_examples, held, labels = training_rows(run, task)
    write_docbin(train_examples, work / "train.spacy")
    if held:
        write_docbin(held, work / "holdout.spacy")
    counts = numpy.array([[eg.reference.cats[label] for label in labels] for eg in train_examples]).sum(axis=0)
    log(log_path, f"train rows {len(train_examples)}, held out {len(held)}; label counts "
                  f"{dict(zip(labels, counts.astype(int).tolist()))}")
    budget = replace(task.full, steps=run.steps)
    overrides = config_overrides(task, budget)
    if run.class_weights is not None:
        overrides[f"components.{task.component}.class_weights"] = run.class_weights
    config = load_config(task, overrides)
    config["corpora"]["train"] = {
        "@readers": "spacy.Corpus.v1", "path": str(work / "train.spacy"), "max_length": 0,
        "gold_preproc": False, "limit": 0, "augmenter": None,
    }
    with log_path.open("a", encoding="utf8") as stream, contextlib.redirect_stdout(stream):
        wall0 = time.perf_counter()
        nlp = init_nlp(config, use_gpu=-1)
        nlp, _ = train_loop(nlp, None, use_gpu=-1, stdout=stream, stderr=stream)
        log(log_path, f"trained in {(time.perf_counter() - wall0) / 60:.1f} min")
    nlp.to_disk(model_dir)
    return model_dir


# ---------------------------------------------------------------------------
# Analysis (spacy_cls.decisions on the saved pipeline)


def dev_docbin(task: Task, work: Path, limit: int = 0) -> Path:
    import spacy
    from spacy.tokens import DocBin

    path = work / "dev.spacy"
    if not path.exists():
        dev = read_split(task, replace(task.full, dev_limit=limit), "dev")
        nlp = spacy.blank(load_config(task, {})["nlp"]["lang"])
        docs = [_with_cats(nlp.make_doc(t), dev.labels, g) for t, g in zip(dev.texts, dev.gold)]
        DocBin(docs=docs, store_user_data=False).to_disk(path)
    return path


def analyse(run: Run, model_dir: Path, log_path: Path) -> Dict:
    import spacy

    from spacy_cls.decisions import collect, coverage_curve, evaluate, fit_temperature, tune_thresholds
    from spacy_cls.decisions.tune import COVERAGE_CUTS

    task = TASKS[run.task]
    work = model_dir.parent
    nlp = spacy.load(model_dir)
    component = nlp.get_pipe(task.component)
    dev = collect(nlp, task.component, dev_docbin(task, work, run.dev_limit))
    log(log_path, f"dev scored: {len(dev.gold)} docs")
    result: Dict = {"dev_rows": int(len(dev.gold))}
    if run.kind == "calibration":
        held = collect(nlp, task.component, work / "holdout.spacy")
        temperature = fit_temperature(held.logits, held.gold)
        result.update(temperature=temperature,
                      before=evaluate(dev, temperature=1.0),
                      after=evaluate(dev, temperature=temperature),
                      coverage=coverage_curve(dev.probabilities(temperature), dev.gold, COVERAGE_CUTS))
    elif run.kind == "thresholds":
        held = collect(nlp, task.component, work / "holdout.spacy")
        tuned = tune_thresholds(held.probabilities(), held.gold, held.labels, default=component.cfg["threshold"])
        result.update(global_threshold=component.cfg["threshold"], thresholds=tuned,
                      before=evaluate(dev, threshold=component.cfg["threshold"]),
                      after=evaluate(dev, threshold=component.cfg["threshold"], thresholds=tuned))
    else:
        result.update(scores=evaluate(dev))
    return result


def run_cv(run: Run, log_path: Path) -> Dict:
    from spacy_cls.decisions.cv import run_cross_validation

    task = TASKS[run.task]
    budget = replace(task.full, steps=run.steps)
    overrides = {k: v for k, v in config_overrides(task, budget).items()}
    work = MODELS / run.key
    table = run_cross_validation(ROOT / task.config, work, folds=run.folds, seeds=1, overrides=overrides,
                                 log=lambda message: log(log_path, message))
    table["config"] = task.config
    return {"cv": table}


def run_one(run: Run) -> Optional[Path]:
    RUNS.mkdir(parents=True, exist_ok=True)
    out = RUNS / f"{run.key}.json"
    if out.exists():
        print(f"[skip] {run.key}: result exists")
        return None
    lock = RUNS / f"{run.key}.lock"
    if lock.exists() and not lock_holder_alive(lock):
        lock.unlink(missing_ok=True)  # left by a process that died
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        print(f"[busy] {run.key}: another process runs it")
        return None
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    try:
        log_path = RUNS / f"{run.key}.log"
        log(log_path, f"start {run.key}: {command_line()}")
        wall0 = time.perf_counter()
        if run.kind == "cv":
            found = run_cv(run, log_path)
        else:
            found = analyse(run, train(run, log_path), log_path)
        task = TASKS[run.task]
        trained = re.findall(r"trained in ([0-9.]+) min", log_path.read_text(encoding="utf8"))
        record = {
            "key": run.key, "task": run.task, "title": task.title, "kind": run.kind,
            "steps": run.steps, "full_budget_steps": task.full.steps, "batch_size": BATCH_SIZE,
            "max_length": task.full.max_length, "learn_rate": task.learn_rate,
            "checkpoint": task.model_name, "holdout": run.holdout, "class_weights": run.class_weights,
            "positive_ratio": run.positive_ratio, "folds": run.folds, "dev_limit": run.dev_limit,
            **found,
            "total_seconds": time.perf_counter() - wall0,
            "train_minutes": float(trained[-1]) if trained else None,
            "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
            "command": command_line(), "machine": machine(), "load_average": os.getloadavg(),
        }
        tmp = out.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf8")
        tmp.replace(out)
        log(log_path, f"done in {record['total_seconds'] / 60:.1f} min")
        return out
    finally:
        lock.unlink(missing_ok=True)


# ---------------------------------------------------------------------------
# Report


def _pct(value: Optional[float]) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def report() -> Path:
    records = {p.stem: json.loads(p.read_text(encoding="utf8")) for p in sorted(RUNS.glob("*.json"))}
    parts: List[str] = []

    def budget(r) -> str:
        return f"{r['steps']} of {r['full_budget_steps']}"

    rows = []
    for r in records.values():
        if r["kind"] == "thresholds":
            b, a = r["before"], r["after"]
            rows.append([r["title"], budget(r), f"fixed {r['global_threshold']:g}", _pct(b["macro_f1"]),
                         _pct(b["micro_f1"])])
            rows.append([r["title"], budget(r), f"tuned per label on {r['holdout']} held-out train rows",
                         _pct(a["macro_f1"]), _pct(a["micro_f1"])])
    if rows:
        parts += ["## Multi-label thresholds (dev)", "",
                  markdown_table(["task", "steps (of full budget)", "thresholds", "macro-F1", "micro-F1"], rows), ""]
    rows = []
    for r in records.values():
        if r["kind"] == "calibration":
            b, a = r["before"], r["after"]
            rows.append([r["title"], budget(r), f"{r['temperature']:.2f}", _pct(b["accuracy"]),
                         f"{b['ece']:.4f}", f"{a['ece']:.4f}", f"{b['brier']:.4f}", f"{a['brier']:.4f}",
                         f"{b['nll']:.4f}", f"{a['nll']:.4f}"])
    if rows:
        parts += ["## Temperature scaling (dev; T fitted on held-out train rows)", "",
                  markdown_table(["task", "steps (of full budget)", "T", "accuracy", "ECE before", "ECE after",
                                  "Brier before", "Brier after", "NLL before", "NLL after"], rows), "",
                  "Abstaining below a calibrated top score: coverage (share of dev docs given a label) "
                  "and accuracy on them.", ""]
        rows = []
        for r in records.values():
            if r["kind"] == "calibration" and r.get("coverage"):
                for c in r["coverage"]:
                    rows.append([r["title"], f"{c['threshold']:.2f}", _pct(c["coverage"]), _pct(c["accuracy"])])
        parts += [markdown_table(["task", "abstain below", "coverage", "accuracy"], rows), ""]
    rows = []
    for r in records.values():
        if r["kind"] == "weights":
            s = r["scores"]
            data = r["title"] + (f", positives 1:{r['positive_ratio']} of negatives" if r["positive_ratio"] else "")
            if r.get("dev_limit"):
                data += f" (first {r['dev_limit']} dev rows)"
            worst = min(s["per_label_f1"].items(), key=lambda kv: kv[1])
            rows.append([data, budget(r), r["class_weights"] or "none", _pct(s["accuracy"]),
                         _pct(s["macro_f1"]), f"{worst[0]} {_pct(worst[1])}"])
    if rows:
        parts += ["## Class weights (dev)", "",
                  markdown_table(["training data", "steps (of full budget)", "class_weights", "accuracy",
                                  "macro-F1", "lowest label F1"], rows), ""]
    for r in records.values():
        if r["kind"] == "cv":
            parts += [f"## Cross-validation: {r['title']}, {r['folds']} folds ({budget(r)} steps each)", "",
                      r["cv"]["markdown"], ""]
    parts += ["## Runs", "", markdown_table(
        ["run", "command", "date", "training minutes", "load average (1, 5, 15 min) at the end"],
        [[r["key"], f"`{r['command']}`", r["date"],
          "-" if r.get("train_minutes") is None else f"{r['train_minutes']:.1f}",
          ", ".join(f"{x:.1f}" for x in r["load_average"])] for r in records.values()]), ""]
    info = machine()
    header = [
        "# Decisions: class weights, thresholds, calibration, variance", "",
        f"Command: `{command_line()}`  ",
        f"Machine: {info['cpu']}, {info['logical_cpus']} logical CPUs (shared; load averages per run "
        f"in decisions_runs/*.json)", "",
    ]
    md = RESULTS / "decisions.md"
    md.write_text("\n".join(header + parts) + "\n", encoding="utf8")
    (RESULTS / "decisions.json").write_text(json.dumps(records, indent=2, ensure_ascii=False) + "\n",
                                            encoding="utf8")
    return md


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", nargs="+", choices=sorted(RUNS_BY_KEY), help="runs to do (default: all, in order)")
    parser.add_argument("--train-only", action="store_true", help="train and save the pipelines, no analysis")
    parser.add_argument("--report", action="store_true", help="only rebuild the report")
    parser.add_argument("--no-report", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if not args.report:
        for key in args.run or [run.key for run in RUNS_LIST]:
            run = RUNS_BY_KEY[key]
            if args.train_only:
                if run.kind != "cv":
                    RUNS.mkdir(parents=True, exist_ok=True)
                    train(run, RUNS / f"{run.key}.log")
                continue
            run_one(run)
    if not args.no_report:
        print(f"Report: {report()}")


if __name__ == "__main__":
    main()
