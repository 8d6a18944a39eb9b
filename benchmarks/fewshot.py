"""Few-shot benchmark: zero-shot from label descriptions, the contrastive stage, plain
fine-tuning and SetFit, side by side on the same checkpoint and the same sampled examples.

    python benchmarks/fewshot.py --run [--tasks sst2 ...] [--n 8 16 ...] [--seeds 0 1 ...]
                                       [--systems setfit plain ...] [--dev-limit K] [--threads T]
    python benchmarks/fewshot.py --report

Systems (SYSTEMS below holds each one's settings):
- ours-zeroshot: cls_classifier with `label_descriptions` and no examples, `nlp.initialize()`
  only (deterministic: run once, as N=0 seed 0);
- setfit-zeroshot: SetFit's template zero-shot (`setfit.get_templated_dataset` + training);
- plain: today's cls_classifier fine-tuned end to end on the N examples per class;
- ours-contrastive: descriptions as the warm start, the contrastive stage inside
  `nlp.initialize`, then `spacy train` stops at once (max_steps 1, learn rate 0);
- ours-contrastive-ft: the same, then a short fine-tuning run;
- setfit: SetFit (its own environment, benchmarks/setup_setfit_venv.sh) at its documented
  defaults (num_iterations 20: 40 pairs per example, twice our stage's 20), one epoch,
  batch size and body learn rate as our stage, logistic-regression head;
- reference rows, no encoder training: cosine (the checkpoint's mean vectors against the
  descriptions' in the templates) and frozen-lr (logistic regression on the frozen mean
  vectors of the N examples per class).
Every system uses the task's checkpoint (MiniLM-L6 for en, m3e-small for zh) with mean
pooling and the task's maximum length, and reads the same files: fewshot_data.py writes
the dev set and the N examples per class of each seed once, and each result records the
hashes of the files it read.

Resumable: each run is one JSON file in benchmarks/results/fewshot_runs/, named by its key
(system, task, N, seed and a hash of its settings); an existing result is skipped. Progress
goes to fewshot_runs/fewshot.log; a lock there stops a second driver. The training time
of a run is from loading the checkpoint to a trained classifier, for every system.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("ANSI_COLORS_DISABLED", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy  # noqa: E402

from _common import ROOT, RESULTS, lock_holder_alive, machine, markdown_table, model_folder  # noqa: E402
from fewshot_data import SEEDS, SIZES, TASKS, DataFiles, FewShotTask, data_files, pool_and_accounting, read_jsonl  # noqa: E402

RUNS = RESULTS / "fewshot_runs"
LOG = RUNS / "fewshot.log"
LOCK = RUNS / "driver.lock"
WORK = ROOT / "benchmarks" / "runs" / "fewshot"  # scratch: SetFit's specs and outputs
SETFIT_PYTHON = ROOT / ".venv-setfit" / "bin" / "python"
SETFIT_RUNNER = ROOT / "benchmarks" / "fewshot_setfit.py"
POOLING = "mean"  # both checkpoints were trained with mean pooling
BATCH_SIZE = 16
TEMPERATURE = 0.05
# Our contrastive stage: 20 pairs per example (half same-label, half different), one epoch.
CONTRASTIVE = {"pairs_per_example": 20, "epochs": 1, "learn_rate": 2e-5, "batch_size": BATCH_SIZE}
# SetFit at its documented defaults: num_iterations 20 draws a same-label and a different-label
# partner per example per iteration, 40 pairs per example, twice our stage's pairs.
SETFIT = {"num_iterations": 20, "num_epochs": 1, "body_learning_rate": 2e-5, "batch_size": BATCH_SIZE}
# Plain fine-tuning: at least PLAIN_MIN_STEPS updates, PLAIN_EPOCHS passes over the sample.
PLAIN_EPOCHS = 10
PLAIN_MIN_STEPS = 30
PLAIN_LEARN_RATE = 5e-5
# Short fine-tuning after the contrastive stage.
SHORT_EPOCHS = 3
SHORT_MIN_STEPS = 10
SHORT_LEARN_RATE = 2e-5
IN_LOOP_DEV_LIMIT = 32


@dataclass(frozen=True)
class System:
    key: str
    title: str
    runner: str  # ours | setfit
    zero_shot: bool = False
    descriptions: bool = False
    contrastive: bool = False
    fine_tune: Optional[str] = None  # None: stop at once | "plain" | "short"

    def settings(self, task: FewShotTask, dev_limit: int) -> Dict:
        """Everything that changes a run's result besides (task, N, seed): part of its key."""
        found: Dict = {"pooling": POOLING, "max_length": task.max_length, "dev_limit": dev_limit,
                       "checkpoint": task.model_name}
        if self.descriptions or self.zero_shot:
            found.update(descriptions=task.descriptions, templates=list(task.templates))
            if self.runner in ("ours", "reference"):
                found["temperature"] = TEMPERATURE
        if self.runner == "reference" and not self.zero_shot:
            found["head"] = "LogisticRegression"
        if self.runner == "setfit":
            found.update(SETFIT, head="LogisticRegression")
            if self.zero_shot:
                found["template_sample_size"] = 8
        if self.contrastive:
            found["contrastive"] = dict(CONTRASTIVE)
        if self.fine_tune == "plain":
            found.update(epochs=PLAIN_EPOCHS, min_steps=PLAIN_MIN_STEPS, learn_rate=PLAIN_LEARN_RATE,
                         batch_size=BATCH_SIZE)
        elif self.fine_tune == "short":
            found.update(epochs=SHORT_EPOCHS, min_steps=SHORT_MIN_STEPS, learn_rate=SHORT_LEARN_RATE,
                         batch_size=BATCH_SIZE)
        return found


SYSTEMS: Dict[str, System] = {s.key: s for s in (
    System("ours-zeroshot", "ours, zero-shot (descriptions)", "ours", zero_shot=True, descriptions=True),
    System("setfit-zeroshot", "SetFit, template zero-shot", "setfit", zero_shot=True),
    System("plain", "plain fine-tuning (cls_classifier)", "ours", fine_tune="plain"),
    System("ours-contrastive", "ours, descriptions + contrastive, no fine-tuning", "ours",
           descriptions=True, contrastive=True),
    System("ours-contrastive-ft", "ours, descriptions + contrastive + short fine-tuning", "ours",
           descriptions=True, contrastive=True, fine_tune="short"),
    System("setfit", "SetFit", "setfit"),
    # reference rows: no training of the encoder
    System("cosine", "reference: bare cosine to the descriptions (mean pooling)", "reference",
           zero_shot=True, descriptions=True),
    System("frozen-lr", "reference: logistic regression on frozen mean vectors", "reference"),
)}
OURS_FEW_SHOT = ("ours-contrastive", "ours-contrastive-ft")


def steps_for(rows: int, epochs: int, min_steps: int) -> int:
    return max(min_steps, math.ceil(epochs * rows / BATCH_SIZE))


# ---------------------------------------------------------------------------
# Keys and bookkeeping


def settings_hash(settings: Dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:8]


def run_key(system: str, task: str, n: int, seed: int, settings: Dict) -> str:
    return f"{system}-{task}-n{n}-seed{seed}-{settings_hash(settings)}"


@dataclass(frozen=True)
class Planned:
    system: System
    task: FewShotTask
    n: int
    seed: int
    settings: Dict = field(hash=False, compare=False)

    @property
    def key(self) -> str:
        return run_key(self.system.key, self.task.key, self.n, self.seed, self.settings)


def plan(tasks: Sequence[str], sizes: Sequence[int], seeds: Sequence[int], systems: Sequence[str],
         dev_limit: int = 0) -> List[Planned]:
    """The runs of a grid, each once, smallest N first (zero-shot, then N=8 on every task,
    every seed and system, then N=16, ...), so that a grid cut short still compares every
    system. A zero-shot system runs at N=0 (ours and the cosine reference once, at the first
    seed, being deterministic), the others at every N and seed."""
    out: List[Planned] = []
    seen = set()
    for n in [0, *sorted(sizes)]:
        for task_key in tasks:
            task = TASKS[task_key]
            for seed in seeds:
                for system_key in systems:
                    system = SYSTEMS[system_key]
                    if system.zero_shot != (n == 0) or (n == 0 and system.runner != "setfit" and seed != seeds[0]):
                        continue
                    run = Planned(system, task, n, seed, system.settings(task, dev_limit))
                    if run.key not in seen:
                        seen.add(run.key)
                        out.append(run)
    return out


def git_commit() -> Optional[str]:
    try:
        found = subprocess.run(["git", "rev-parse", "HEAD"], cwd=str(ROOT), capture_output=True, text=True)
    except OSError:
        return None
    return found.stdout.strip() or None


def log(message: str) -> None:
    LOG.parent.mkdir(parents=True, exist_ok=True)
    line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}"
    with LOG.open("a", encoding="utf8") as file:
        file.write(line + "\n")
    print(line, flush=True)


def command_line() -> str:
    return " ".join(["python", "benchmarks/fewshot.py", *sys.argv[1:]])


@contextlib.contextmanager
def driver_lock(lock: Optional[Path] = None):
    """One driver at a time: a second one stops with the first one's process id."""
    lock = lock or LOCK
    lock.parent.mkdir(parents=True, exist_ok=True)
    if lock.exists() and not lock_holder_alive(lock):
        lock.unlink(missing_ok=True)  # left by a driver that died
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        raise SystemExit(f"Another fewshot.py driver (process {lock.read_text().strip()}) holds {lock}; "
                         f"wait for it to end, or end that process, then run again.") from None
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def write_result(path: Path, record: Dict) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf8")
    tmp.replace(path)


def gold_matrix(labels: Sequence[str], names: Sequence[str]) -> numpy.ndarray:
    index = {label: i for i, label in enumerate(labels)}
    unknown = sorted(set(names) - set(index))
    if unknown:
        raise ValueError(f"Labels {unknown} are not among the task's labels {list(labels)}")
    gold = numpy.zeros((len(names), len(labels)), dtype="float32")
    gold[numpy.arange(len(names)), [index[name] for name in names]] = 1.0
    return gold


def score(task: FewShotTask, probs: numpy.ndarray, gold_names: Sequence[str]) -> Dict[str, float]:
    """Accuracy (%) and macro-F1 (0-1) of the arg-max, the same function for every system."""
    from accuracy_tasks import scores

    probs = numpy.asarray(probs, dtype="float32")
    if probs.shape != (len(gold_names), len(task.labels)):
        raise ValueError(f"{probs.shape} scores for {len(gold_names)} dev rows and {len(task.labels)} labels")
    return scores(task.accuracy_task, probs, gold_matrix(task.labels, gold_names))


# ---------------------------------------------------------------------------
# Our runs: the component through its config, spaCy's own initialize and training loop


def ours_config(task: FewShotTask, system: System, files: DataFiles, n_rows: int, seed: int):
    from accuracy_tasks import Budget, config_overrides, load_config

    accuracy_task = task.accuracy_task
    component = accuracy_task.component
    if system.fine_tune == "plain":
        steps, rate = steps_for(n_rows, PLAIN_EPOCHS, PLAIN_MIN_STEPS), PLAIN_LEARN_RATE
    elif system.fine_tune == "short":
        steps, rate = steps_for(n_rows, SHORT_EPOCHS, SHORT_MIN_STEPS), SHORT_LEARN_RATE
    else:
        steps, rate = 2, 0.0  # "stop at once": max_steps 1, learn rate 0
    overrides = config_overrides(accuracy_task, Budget(steps=steps, max_length=task.max_length),
                                 pooling=POOLING, frozen=False, steps=steps)
    overrides["training.batcher.size"] = BATCH_SIZE
    overrides["training.optimizer.learn_rate.initial_rate"] = rate
    overrides["system.seed"] = seed
    config = load_config(accuracy_task, overrides)
    reader = {"@readers": "spacy_cls.LabelledTextCorpus.v1", "format": "jsonl", "labels": task.labels,
              "label_map": {}, "limit": 0}
    config["corpora"]["train"] = {**reader, "path": str(files.train or files.dev)}
    config["corpora"]["dev"] = {**reader, "path": str(files.dev), "limit": IN_LOOP_DEV_LIMIT}
    init = config["initialize"]["components"].setdefault(component, {})
    init["labels"] = list(task.labels)
    if system.descriptions:
        init["label_descriptions"] = dict(task.descriptions)
        init["description_templates"] = list(task.templates)
        init["description_temperature"] = TEMPERATURE
    if system.contrastive:
        init["contrastive"] = {**CONTRASTIVE, "seed": seed}
    return config


def train_ours(run: Planned, files: DataFiles, threads: int):
    """(trained nlp, training seconds, n training rows, config) of one of our runs."""
    import torch
    from spacy.training.initialize import init_nlp
    from spacy.training.loop import train as train_loop
    from spacy.util import fix_random_seed, load_model_from_config

    torch.set_num_threads(threads)
    task, system = run.task, run.system
    n_rows = len(read_jsonl(files.train)) if files.train else 0
    config = ours_config(task, system, files, n_rows, run.seed)
    with LOG.open("a", encoding="utf8") as stream, contextlib.redirect_stdout(stream), \
            contextlib.redirect_stderr(stream):
        wall0 = time.perf_counter()
        if system.zero_shot:
            fix_random_seed(run.seed)
            nlp = load_model_from_config(config, auto_fill=True, validate=True)
            nlp.initialize()
        else:
            nlp = init_nlp(config, use_gpu=-1)
            nlp, _ = train_loop(nlp, None, use_gpu=-1, stdout=stream, stderr=stream)
        train_seconds = time.perf_counter() - wall0
    component = nlp.get_pipe(task.accuracy_task.component)
    if sorted(component.labels) != sorted(task.labels):
        raise RuntimeError(f"The pipeline's labels {component.labels} are not the task's {task.labels}")
    return nlp, train_seconds, n_rows, config


def score_pipeline(nlp, task: FewShotTask, dev_path: Path) -> Dict[str, float]:
    dev = read_jsonl(dev_path)
    docs = list(nlp.pipe(dev.texts, batch_size=64))
    probs = numpy.array([[doc.cats[label] for label in task.labels] for doc in docs], dtype="float32")
    return score(task, probs, dev.labels)


def run_ours(run: Planned, files: DataFiles, threads: int) -> Dict:
    nlp, train_seconds, n_rows, config = train_ours(run, files, threads)
    return {"scores": score_pipeline(nlp, run.task, files.dev), "train_seconds": train_seconds,
            "train_rows": n_rows,
            "config_initialize": config["initialize"]["components"][run.task.accuracy_task.component],
            "steps": config["training"]["max_steps"] + 1 if not run.system.zero_shot else 0}


# ---------------------------------------------------------------------------
# SetFit runs: benchmarks/fewshot_setfit.py in SetFit's environment


def setfit_python() -> Path:
    python = Path(os.environ.get("SETFIT_PYTHON", SETFIT_PYTHON))
    if not python.exists():
        raise SystemExit(f"No SetFit environment at {python}: create it with "
                         f"`bash benchmarks/setup_setfit_venv.sh` (or name its python in SETFIT_PYTHON).")
    return python


def setfit_spec(run: Planned, files: DataFiles, threads: int, out: Path) -> Dict:
    task = run.task
    return {
        "mode": "zeroshot" if run.system.zero_shot else "fewshot",
        "model": model_folder(task.lang),
        "tokenizer_kwargs": task.tokenizer_config,
        "max_length": task.max_length,
        "labels": task.labels,
        "descriptions": [task.descriptions[label] for label in task.labels],
        "template": task.templates[0],
        "template_sample_size": 8,
        "train": str(files.train) if files.train else None,
        "dev": str(files.dev),
        "seed": run.seed,
        "threads": threads,
        **SETFIT,
        "output": str(out),
    }


def run_setfit(run: Planned, files: DataFiles, threads: int) -> Dict:
    work = WORK / "setfit" / run.key
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    spec_path, out = work / "spec.json", work / "output.json"
    spec_path.write_text(json.dumps(setfit_spec(run, files, threads, out), ensure_ascii=False), encoding="utf8")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": "",
           "TQDM_DISABLE": "1"}
    with LOG.open("a", encoding="utf8") as stream:
        done = subprocess.run([str(setfit_python()), str(SETFIT_RUNNER), str(spec_path)], stdout=stream,
                              stderr=subprocess.STDOUT, env=env, cwd=str(ROOT))
    if done.returncode != 0 or not out.exists():
        raise RuntimeError(f"The SetFit runner failed (exit {done.returncode}); its output is in {LOG}")
    found = json.loads(out.read_text(encoding="utf8"))
    dev = read_jsonl(files.dev)
    if found["dev_texts_sha"] != hashlib.sha256("\n".join(dev.texts).encode()).hexdigest()[:16]:
        raise RuntimeError("The SetFit runner scored other dev texts than the driver read")
    shutil.rmtree(work, ignore_errors=True)
    return {"scores": score(run.task, numpy.array(found["probs"]), dev.labels),
            "train_seconds": found["train_seconds"], "train_rows": found["train_rows"],
            "versions": found["versions"]}


# ---------------------------------------------------------------------------
# Reference rows: the checkpoint's frozen mean vectors, no spacy_cls component


def mean_vectors(task: FewShotTask, texts: Sequence[str], threads: int) -> numpy.ndarray:
    """Mean-pooled last-layer vectors of `texts` (the task's checkpoint and maximum length),
    L2-normalised."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    torch.set_num_threads(threads)
    folder = model_folder(task.lang)
    tokenizer = AutoTokenizer.from_pretrained(folder, **task.tokenizer_config)
    model = AutoModel.from_pretrained(folder).eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(texts), 64):
            batch = tokenizer(list(texts[start:start + 64]), padding=True, truncation=True,
                              max_length=task.max_length, return_tensors="pt")
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
    return numpy.concatenate(out) if out else numpy.zeros((0, 0), dtype="float32")


def cached_vectors(task: FewShotTask, path: Path, threads: int) -> numpy.ndarray:
    """The mean vectors of a data file's texts, kept beside the scratch files by the file's hash."""
    from fewshot_data import file_hash

    cache = WORK / "vectors" / f"{path.stem}-{file_hash(path)}.npy"
    if cache.exists():
        return numpy.load(cache)
    vectors = mean_vectors(task, read_jsonl(path).texts, threads)
    cache.parent.mkdir(parents=True, exist_ok=True)
    numpy.save(cache, vectors)
    return vectors


def run_reference(run: Planned, files: DataFiles, threads: int) -> Dict:
    task = run.task
    dev = read_jsonl(files.dev)
    dev_vectors = cached_vectors(task, files.dev, threads)
    wall0 = time.perf_counter()
    if run.system.zero_shot:
        described = [template.format(task.descriptions[label]) for label in task.labels
                     for template in task.templates]
        centres = mean_vectors(task, described, threads).reshape(len(task.labels), len(task.templates), -1).mean(1)
        centres /= numpy.linalg.norm(centres, axis=1, keepdims=True)
        logits = dev_vectors @ centres.T / TEMPERATURE
        n_rows = 0
    else:
        from sklearn.linear_model import LogisticRegression

        train = read_jsonl(files.train)
        vectors = mean_vectors(task, train.texts, threads)
        head = LogisticRegression(max_iter=1000, random_state=run.seed)
        head.fit(vectors, [task.labels.index(label) for label in train.labels])
        logits = numpy.full((len(dev.texts), len(task.labels)), -numpy.inf)
        logits[:, head.classes_] = head.predict_log_proba(dev_vectors)
        n_rows = len(train.texts)
    seconds = time.perf_counter() - wall0
    probs = numpy.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    return {"scores": score(task, probs, dev.labels), "train_seconds": seconds, "train_rows": n_rows}


# ---------------------------------------------------------------------------
# The driver


RUNNERS: Dict[str, Callable[[Planned, DataFiles, int], Dict]] = {
    "ours": run_ours, "setfit": run_setfit, "reference": run_reference}


def run_one(run: Planned, dev_limit: int, threads: int, pools: Dict) -> Optional[Path]:
    out = RUNS / f"{run.key}.json"
    if out.exists():
        return None
    if run.n and run.task.key not in pools:
        pools[run.task.key] = pool_and_accounting(run.task)
    pool, accounting = pools.get(run.task.key, (None, None))
    files = data_files(run.task, run.n, run.seed, dev_limit, pool=pool)
    log(f"start {run.key}")
    wall0 = time.perf_counter()
    found = RUNNERS[run.system.runner](run, files, threads)
    record = {
        "key": run.key, "system": run.system.key, "system_title": run.system.title, "task": run.task.key,
        "n": run.n, "seed": run.seed, "settings": run.settings, "files": files.hashes(), "pool": accounting,
        **found, "dev_rows": len(read_jsonl(files.dev)), "threads": threads,
        "total_seconds": time.perf_counter() - wall0,
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "command": command_line(), "git_commit": git_commit(), "machine": machine(),
        "load_average": list(os.getloadavg()),
    }
    write_result(out, record)
    log(f"done {run.key}: accuracy {found['scores']['accuracy']:.1f}, training {found['train_seconds']:.1f} s")
    return out


def run_grid(runs: Sequence[Planned], dev_limit: int, threads: int) -> Tuple[int, List[str]]:
    """Run what is not done yet; a failed run is logged and the driver goes on."""
    done, failed = 0, []
    pools: Dict = {}
    with driver_lock():
        log(f"driver {os.getpid()}: {command_line()} ({len(runs)} runs planned)")
        for run in runs:
            try:
                if run_one(run, dev_limit, threads, pools):
                    done += 1
            except Exception as error:  # noqa: BLE001 - one failed run must not stop a night's grid
                failed.append(run.key)
                log(f"FAILED {run.key}: {type(error).__name__}: {error}")
    return done, failed


# ---------------------------------------------------------------------------
# Report


def load_records(folder: Optional[Path] = None) -> List[Dict]:
    return [json.loads(p.read_text(encoding="utf8")) for p in sorted((folder or RUNS).glob("*.json"))]


@dataclass
class Cell:
    values: List[float]
    seconds: List[float]
    seeds_expected: bool = True  # False: a deterministic row, run once

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def sd(self) -> float:
        return statistics.stdev(self.values) if len(self.values) > 1 else 0.0

    def shown(self, scale: float = 1.0, digits: int = 1) -> str:
        text = f"{self.mean * scale:.{digits}f}"
        if len(self.values) > 1:
            text += f" ± {self.sd * scale:.{digits}f}"
        n = len(self.values)
        if not self.seeds_expected:
            return text
        return text + ("" if n >= len(SEEDS) else f" ({n} seed{'' if n == 1 else 's'})")


def cells(records: Sequence[Dict], metric: str = "accuracy", dev_limit: int = 0) -> Dict[Tuple[str, str, int], Cell]:
    """(task, system, N) -> the runs' scores over seeds, for runs on the dev set `dev_limit`
    (0: the whole dev set) with the settings the systems have now."""
    out: Dict[Tuple[str, str, int], Cell] = {}
    for r in records:
        system = SYSTEMS.get(r["system"])
        if system is None or r["task"] not in TASKS or r["settings"].get("dev_limit", 0) != dev_limit:
            continue
        if settings_hash(r["settings"]) != settings_hash(system.settings(TASKS[r["task"]], dev_limit)):
            continue
        deterministic = system.zero_shot and system.runner != "setfit"
        cell = out.setdefault((r["task"], r["system"], r["n"]), Cell([], [], not deterministic))
        cell.values.append(float(r["scores"][metric]))
        cell.seconds.append(float(r["train_seconds"]))
    return out


def compare(ours: Cell, theirs: Cell) -> str:
    """'better', 'tie' (a difference inside the larger of the two sds) or 'worse'."""
    diff = ours.mean - theirs.mean
    if abs(diff) <= max(ours.sd, theirs.sd):
        return "tie"
    return "better" if diff > 0 else "worse"


def full(cell: Optional[Cell]) -> bool:
    """A cell over every seed (a deterministic zero-shot row: its one run)."""
    return cell is not None and len(cell.values) >= (1 if not cell.seeds_expected else len(SEEDS))


def targets(acc: Dict[Tuple[str, str, int], Cell]) -> List[str]:
    """Each target: met (every cell measured over every seed), met so far, missed, or not measured."""
    lines = []
    tasks = [t for t in TASKS if any(k[0] == t for k in acc)]
    for system in OURS_FEW_SHOT:
        outcomes = []
        for task in tasks:
            for n in SIZES:
                a, b = acc.get((task, system, n)), acc.get((task, "setfit", n))
                if a and b:
                    outcomes.append((f"{TASKS[task].title} N={n}", compare(a, b), a, b))
        if not outcomes:
            lines.append(f"- {system} >= SetFit at every N on every task: not measured.")
            continue
        worse = [o[0] for o in outcomes if o[1] == "worse"]
        ties = [o[0] for o in outcomes if o[1] == "tie"]
        total = len(TASKS) * len(SIZES)
        complete = len(outcomes) == total and all(full(o[2]) and full(o[3]) for o in outcomes)
        cover = f"{len(outcomes)} of {total} (task, N) cells measured" + (
            "" if all(full(o[2]) and full(o[3]) for o in outcomes) else f", some with fewer than {len(SEEDS)} seeds")
        verdict = "missed" if worse else "met" if complete else "met so far"
        lines.append(f"- {system} >= SetFit at every N on every task: **{verdict}** ({cover}; "
                     f"better at {len(outcomes) - len(worse) - len(ties)}, tie (inside one sd) at "
                     f"{', '.join(ties) or 'none'}, worse at {', '.join(worse) or 'none'}).")
        slower = [o[0] for o in outcomes if statistics.fmean(o[2].seconds) > statistics.fmean(o[3].seconds)]
        verdict = "missed" if slower else "met" if complete else "met so far"
        lines.append(f"- {system} training time <= SetFit's: **{verdict}** "
                     f"(slower at {', '.join(slower) or 'none'} of the {len(outcomes)} cells).")
    a = acc.get(("sst2", "ours-contrastive", 8)) or acc.get(("sst2", "ours-contrastive-ft", 8))
    if a is None:
        lines.append("- N=8 descriptions + examples >= 74 on SST-2, above both zero-shot rows and SetFit: not measured.")
    else:
        best = max((acc[k] for k in (("sst2", "ours-contrastive", 8), ("sst2", "ours-contrastive-ft", 8))
                    if k in acc), key=lambda c: c.mean)
        rivals = {name: acc.get(key) for name, key in (("ours zero-shot", ("sst2", "ours-zeroshot", 0)),
                                                        ("SetFit zero-shot", ("sst2", "setfit-zeroshot", 0)),
                                                        ("SetFit N=8", ("sst2", "setfit", 8)))}
        above = [name for name, c in rivals.items() if c is not None and best.mean > c.mean]
        missing = [name for name, c in rivals.items() if c is None]
        met = best.mean >= 74 and len(above) == len(rivals)
        verdict = "missed" if not met else "met" if all(full(c) for c in (best, *rivals.values())) else "met so far"
        lines.append(f"- N=8 descriptions + examples >= 74 on SST-2, above both zero-shot rows and SetFit: "
                     f"**{verdict}** (best of our two rows {best.shown()}; above "
                     f"{', '.join(above) or 'none'}{'; not measured: ' + ', '.join(missing) if missing else ''}).")
    for system in OURS_FEW_SHOT:
        pairs = [(acc[(t, system, 8)], acc[(t, "plain", 8)]) for t in tasks
                 if (t, system, 8) in acc and (t, "plain", 8) in acc]
        gains = [a.mean - b.mean for a, b in pairs]
        complete = len(pairs) == len(TASKS) and all(full(a) and full(b) for a, b in pairs)
        if not gains:
            lines.append(f"- {system} >= plain fine-tuning + 5 at N=8, averaged over the tasks: not measured.")
            continue
        mean_gain = statistics.fmean(gains)
        lines.append(f"- {system} >= plain fine-tuning + 5 at N=8, averaged over the tasks: "
                     f"**{'missed' if mean_gain < 5 else 'met' if complete else 'met so far'}** "
                     f"({mean_gain:+.1f} points over "
                     f"{len(gains)} of {len(TASKS)} tasks).")
    return lines


def report_tables(records: Sequence[Dict], dev_limit: int = 0) -> Tuple[str, Dict]:
    acc = cells(records, "accuracy", dev_limit)
    f1 = cells(records, "macro_f1", dev_limit)
    parts: List[str] = []
    data: Dict = {"cells": []}
    sizes = [0, *SIZES]
    for task_key, task in TASKS.items():
        systems = [s for s in SYSTEMS if any((task_key, s, n) in acc for n in sizes)]
        if not systems:
            continue
        header = ["system", *[("zero-shot" if n == 0 else f"N={n}") for n in sizes]]
        rows = [[SYSTEMS[s].title, *[acc[(task_key, s, n)].shown() if (task_key, s, n) in acc else "-"
                                      for n in sizes]] for s in systems]
        pool = next((r["pool"] for r in records if r["task"] == task_key and r.get("pool")), None)
        pool_note = "" if not pool else (
            f" Pool: {pool['kept']:,} of the {pool['read']:,} training rows read ("
            + (f"{pool['short']:,} under {task.min_words} words, " if task.min_words else "")
            + f"{pool['in_dev']:,} also in dev, {pool['duplicate']:,} second copies dropped).")
        parts += [f"## {task.title}: accuracy (%), mean ± sd over seeds", "", f"Dev: {task.dev_note}.{pool_note}", "",
                  markdown_table(header, rows), ""]
        if task.macro_f1:
            rows = [[SYSTEMS[s].title, *[f1[(task_key, s, n)].shown(100) if (task_key, s, n) in f1 else "-"
                                          for n in sizes]] for s in systems]
            parts += [f"Macro-F1 (x100):", "", markdown_table(header, rows), ""]
        rows = [[SYSTEMS[s].title, *[f"{statistics.fmean(acc[(task_key, s, n)].seconds):.1f}"
                                      if (task_key, s, n) in acc else "-" for n in sizes]] for s in systems]
        parts += ["Training wall time per run (s, mean over seeds):", "", markdown_table(header, rows), ""]
        for s in systems:
            for n in sizes:
                if (task_key, s, n) in acc:
                    a = acc[(task_key, s, n)]
                    data["cells"].append({"task": task_key, "system": s, "n": n, "runs": len(a.values),
                                          "accuracy_mean": a.mean, "accuracy_sd": a.sd,
                                          "macro_f1_mean": f1[(task_key, s, n)].mean,
                                          "macro_f1_sd": f1[(task_key, s, n)].sd,
                                          "train_seconds_mean": statistics.fmean(a.seconds)})
    goal_lines = targets(acc)
    data["targets"] = goal_lines
    parts += ["## Targets", "", *goal_lines, ""]
    return "\n".join(parts), data


def report(dev_limit: int = 0) -> Path:
    records = [r for r in load_records() if r["settings"].get("dev_limit", 0) == dev_limit]
    body, data = report_tables(records, dev_limit)
    info = machine()
    commands = sorted({r["command"] for r in records})
    versions = sorted({json.dumps(r["versions"], sort_keys=True) for r in records if r.get("versions")})
    notes = [
        "Every system: the same checkpoint (MiniLM-L6 for en, m3e-small for zh), mean pooling, the task's "
        "maximum length, the same sampled examples (N per class, seeds "
        f"{', '.join(map(str, SEEDS))}) and dev files. Training time: from loading the checkpoint to a "
        "trained classifier. Ties: a difference inside the larger of the two sds.",
        f"Settings: our contrastive stage {CONTRASTIVE}; SetFit {SETFIT} (its defaults: 40 pairs per example); "
        f"plain fine-tuning max({PLAIN_MIN_STEPS}, "
        f"{PLAIN_EPOCHS} epochs) steps of {BATCH_SIZE} at {PLAIN_LEARN_RATE}; short fine-tuning "
        f"max({SHORT_MIN_STEPS}, {SHORT_EPOCHS} epochs) steps at {SHORT_LEARN_RATE}; description "
        f"temperature {TEMPERATURE}.",
    ]
    if dev_limit:
        notes.append(f"**Smoke-test figures**: scored on a {dev_limit}-row stratified subset of each dev set.")
    if versions:
        notes.append("SetFit environment: " + "; ".join(", ".join(f"{k} {v}" for k, v in json.loads(x).items())
                                                        for x in versions))
    header = [
        "# Few-shot: zero-shot, contrastive stage, plain fine-tuning and SetFit", "",
        f"Report: `{command_line()}`  ", f"Runs: {', '.join(f'`{c}`' for c in commands) or 'none'}  ",
        f"Machine: {info['cpu']}, {info['logical_cpus']} logical CPUs (shared; each run's load average "
        f"is in fewshot_runs/*.json); torch {info['torch']}, transformers {info['transformers']}, "
        f"spaCy {info['spacy']}", "", *[n + "\n" for n in notes],
    ]
    name = "fewshot" if not dev_limit else f"fewshot_smoke{dev_limit}"
    md = RESULTS / f"{name}.md"
    md.write_text("\n".join(header + [body]) + "\n", encoding="utf8")
    payload = {"command": command_line(), "machine": info, "dev_limit": dev_limit, **data,
               "runs": [r["key"] for r in records]}
    (RESULTS / f"{name}.json").write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n",
                                          encoding="utf8")
    return md


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", action="store_true", help="run the grid's runs that are not done yet")
    parser.add_argument("--report", action="store_true", help="rebuild the report from the runs done")
    parser.add_argument("--tasks", nargs="+", choices=list(TASKS), default=list(TASKS))
    parser.add_argument("--n", nargs="+", type=int, default=list(SIZES), help="examples per class")
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    parser.add_argument("--systems", nargs="+", choices=list(SYSTEMS), default=list(SYSTEMS))
    parser.add_argument("--dev-limit", type=int, default=0,
                        help="score on a stratified subset of this many dev rows (smoke tests; 0: all)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--list", action="store_true", help="list the grid's runs, done or not, and stop")
    args = parser.parse_args(argv)
    if not (args.run or args.report or args.list):
        parser.error("give --run, --report or both (or --list)")
    if any(n < 1 for n in args.n):
        parser.error("--n: examples per class are 1 or more (zero-shot systems run at N=0 on their own)")
    status = 0
    if args.list:
        runs = plan(args.tasks, args.n, args.seeds, args.systems, args.dev_limit)
        done = [run for run in runs if (RUNS / f"{run.key}.json").exists()]
        for run in runs:
            print(f"{'done' if run in done else 'todo'} {run.key}")
        print(f"{len(done)} of {len(runs)} runs done")
        return 0
    if args.run:
        runs = plan(args.tasks, args.n, args.seeds, args.systems, args.dev_limit)
        done, failed = run_grid(runs, args.dev_limit, args.threads)
        print(f"{done} runs done now, {len(runs) - done - len(failed)} already there, {len(failed)} failed"
              + (f": {', '.join(failed)} (see {LOG})" if failed else ""))
        status = 1 if failed else 0
    if args.report or args.run:
        print(f"Report: {report(args.dev_limit)}")
    return status


if __name__ == "__main__":
    sys.exit(main())
