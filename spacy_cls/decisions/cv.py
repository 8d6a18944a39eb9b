"""`cv`: how much a dev score moves. Train a config over K folds of its training corpus
and/or N seeds, with spaCy's own training loop, and report each score's mean and
standard deviation.

Each (fold, seed) run writes its scores to OUTPUT/runs/fold{k}-seed{s}.json with the key
of what defines it (the config and its overrides, the data it reads, the folds, the seeds,
its fold and seed); a rerun reuses a run only under the same key, so an interrupted `cv`
resumes where it stopped and a changed experiment never reports earlier runs as its own.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import random
import shutil
import statistics
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Union

import numpy

# Scores reported (from the component's scorer), when the pipeline gives them.
SUMMARY_KEYS = ("cats_accuracy", "cats_score", "cats_macro_f", "cats_micro_f", "cats_macro_auc",
                "cats_coverage", "cats_covered_accuracy")
NAMES = {
    "cats_accuracy": "accuracy",
    "cats_macro_f": "macro-F1",
    "cats_micro_f": "micro-F1",
    "cats_macro_auc": "macro AUC",
    "cats_coverage": "coverage (share given a label)",
    "cats_covered_accuracy": "accuracy on the docs given a label",
}
# What a cv folder holds about the experiment that made its runs.
EXPERIMENT_FILE = "experiment.json"


def fold_indices(gold: numpy.ndarray, folds: int, seed: int) -> List[List[int]]:
    """K disjoint folds covering every doc. Exclusive gold (one label a doc): each
    label's docs are dealt round the folds (stratified); otherwise a shuffled split."""
    n = len(gold)
    if folds < 2:
        raise ValueError(f"folds is {folds}: cross-validation needs 2 folds or more (1: the config's own dev set).")
    if n < folds:
        raise ValueError(f"{n} training docs cannot make {folds} folds.")
    order = list(range(n))
    random.Random(seed).shuffle(order)
    exclusive = gold.size and bool(((gold > 0.5).sum(axis=1) == 1).all())
    if exclusive:
        top = gold.argmax(axis=1)
        order.sort(key=lambda i: top[i])  # stable: shuffled within each label
    out: List[List[int]] = [[] for _ in range(folds)]
    for rank, i in enumerate(order):
        out[rank % folds].append(i)
    return [sorted(f) for f in out]


def summarise(runs: Sequence[Dict]) -> Dict[str, Dict[str, float]]:
    """{score name: {mean, sd, n}}, over the runs' summary scores and per-label F."""
    values: Dict[str, List[float]] = {}
    for run in runs:
        for key, value in run["scores"].items():
            if value is not None and not (isinstance(value, float) and math.isnan(value)):
                values.setdefault(key, []).append(float(value))
    return {
        key: {"mean": statistics.fmean(v), "sd": statistics.stdev(v) if len(v) > 1 else 0.0, "n": len(v)}
        for key, v in values.items()
    }


def score_name(key: str, desc: Optional[str] = None) -> str:
    if key == "cats_score":
        what = (desc or "").split(";")[0].strip()
        return f"cats_score ({what})" if what else "cats_score"
    if key.startswith("F "):
        return f"F1 of {key[2:]}"
    return NAMES.get(key, key)


def _order(key: str):
    fixed = list(SUMMARY_KEYS)
    return (key.startswith("F "), fixed.index(key) if key in fixed else len(fixed), key)


def markdown(summary: Dict[str, Dict[str, float]], runs: Sequence[Dict]) -> str:
    """The table `cv` prints: every score in percent, mean and sample standard deviation."""
    desc = next((r.get("cats_score_desc") for r in runs if r.get("cats_score_desc")), None)
    lines = [f"{len(runs)} runs ({', '.join(r['name'] for r in runs)}); mean and sample standard deviation, in percent.",
             "", "| score | mean | sd | runs |", "|---|---|---|---|"]
    always_covered = summary.get("cats_coverage", {}).get("mean", 1.0) == 1.0
    for key in sorted(summary, key=_order):
        if always_covered and key in ("cats_coverage", "cats_covered_accuracy"):
            continue  # no run abstained: the same as accuracy
        s = summary[key]
        lines.append(f"| {score_name(key, desc)} | {100 * s['mean']:.2f}% | {100 * s['sd']:.2f} | {s['n']} |")
    return "\n".join(lines)


def run_line(record: Dict) -> str:
    """One run's scores for the log, in percent."""
    scores = record["scores"]
    parts = [f"{score_name(key, record.get('cats_score_desc'))} {100 * scores[key]:.2f}%"
             for key in ("cats_accuracy", "cats_score", "cats_coverage")
             if isinstance(scores.get(key), (int, float)) and not (key == "cats_coverage" and scores[key] == 1.0)]
    return ", ".join(parts) or "no scores"


def _scores(found: Dict) -> Dict[str, Optional[float]]:
    out = {key: found.get(key) for key in SUMMARY_KEYS if key in found}
    for label, prf in (found.get("cats_f_per_type") or {}).items():
        out[f"F {label}"] = prf.get("f")
    return out


def _docbin(examples, path: Path) -> None:
    from spacy.tokens import DocBin

    DocBin(docs=[eg.reference for eg in examples], store_user_data=True).to_disk(path)


def _corpus_examples(config, which: str, nlp) -> list:
    from spacy.util import registry

    key = config["training"][f"{which}_corpus"].split(".", 1)[1]
    corpus = registry.resolve({"corpus": dict(config.interpolate()["corpora"][key])})["corpus"]
    return list(corpus(nlp))


def read_training_examples(config, nlp) -> list:
    return _corpus_examples(config, "train", nlp)


def data_digest(examples) -> str:
    """sha256 of what a corpus gives: each example's text and gold cats, in order."""
    digest = hashlib.sha256()
    for eg in examples:
        cats = sorted((str(k), float(v)) for k, v in eg.reference.cats.items())
        digest.update(json.dumps([eg.reference.text, cats], ensure_ascii=False).encode("utf8", "surrogatepass"))
        digest.update(b"\n")
    return digest.hexdigest()


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, ensure_ascii=False).encode("utf8", "surrogatepass")).hexdigest()


def experiment_key(config, *, folds: int, seeds: int, train: str, dev: Optional[str],
                   parts: Optional[List[List[int]]]) -> Dict[str, object]:
    """Everything that defines a cv experiment: the config with its overrides, the
    training (and, for --folds 1, dev) data it reads, the folds and their split, the
    seeds."""
    base_seed = int(config["system"]["seed"] if "system" in config else config["training"]["seed"])
    key: Dict[str, object] = {
        "config_sha256": hashlib.sha256(config.to_str().encode("utf8", "surrogatepass")).hexdigest(),
        "train_data_sha256": train,
        "folds": folds,
        "seeds": [base_seed + s for s in range(seeds)],
    }
    if dev is not None:
        key["dev_data_sha256"] = dev
    if parts is not None:
        key["split_sha256"] = _digest(parts)
    return key


def run_key(experiment: Dict[str, object], fold: Optional[int], seed: int,
            dev_part: Optional[List[int]]) -> str:
    """One run: its experiment, fold index, seed and the docs of its dev fold."""
    return _digest({"experiment": experiment, "fold": fold, "seed": seed, "dev_part": dev_part})


def _differences(old: Dict, new: Dict) -> List[str]:
    names = {"config_sha256": "config (or its overrides)", "train_data_sha256": "training data",
             "dev_data_sha256": "dev data", "folds": "folds", "seeds": "seeds", "split_sha256": "fold split"}
    out = []
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            if key in ("folds", "seeds"):
                out.append(f"{names[key]} {old.get(key)} -> {new.get(key)}")
            else:
                out.append(names.get(key, key))
    return out


def _clear(output: Path) -> None:
    """Remove what `cv` wrote into `output` (and nothing else)."""
    for folder in (output / "runs", output / "folds"):
        if folder.exists():
            shutil.rmtree(folder)
    for name in ("cv.json", "cv.md", EXPERIMENT_FILE):
        (output / name).unlink(missing_ok=True)


def _prepare(output: Path, key: Dict[str, object], overwrite: bool, log: Callable[[str], None]) -> None:
    """Refuse (or, with overwrite, clear) a folder that holds another experiment's runs."""
    manifest = output / EXPERIMENT_FILE
    earlier = (output / "runs").exists() and any((output / "runs").iterdir())
    if manifest.exists():
        try:
            old = json.loads(manifest.read_text(encoding="utf8")).get("key", {})
        except (ValueError, AttributeError):
            old = {"unreadable": True}
        if old != key or overwrite:
            if not overwrite:
                raise ValueError(
                    f"{output} holds the runs of another experiment (it differs in: "
                    f"{', '.join(_differences(old, key))}). Give a new --output folder, or --overwrite to "
                    f"delete those runs and start over."
                )
            log(f"[overwrite] deleting the earlier runs in {output}")
            _clear(output)
    elif earlier or (output / "cv.json").exists():
        if not overwrite:
            raise ValueError(
                f"{output} holds runs with no record of the experiment that made them ({EXPERIMENT_FILE} is "
                f"missing), so they cannot be reused. Give a new --output folder, or --overwrite to delete them "
                f"and start over."
            )
        log(f"[overwrite] deleting the earlier runs in {output}")
        _clear(output)
    (output / "runs").mkdir(parents=True, exist_ok=True)
    tmp = manifest.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"key": key}, indent=2) + "\n", encoding="utf8")
    tmp.replace(manifest)


def run_cross_validation(
    config_path: Union[str, Path],
    output: Union[str, Path],
    *,
    folds: int = 5,
    seeds: int = 1,
    overrides: Optional[Dict[str, object]] = None,
    use_gpu: int = -1,
    overwrite: bool = False,
    log: Callable[[str], None] = print,
) -> Dict:
    """Train over the folds x seeds, resuming from OUTPUT/runs; write OUTPUT/cv.json and
    OUTPUT/cv.md and return {"summary", "runs", "markdown"}. folds = 1: every seed trains
    on the config's training corpus and is scored on its dev corpus.

    A run is reused only when its key (experiment_key: config and overrides, data,
    folds, seeds; and its fold index, seed and dev fold) is the one recorded with it. A
    folder holding another experiment is refused, or with `overwrite` cleared first."""
    import spacy
    from spacy.util import load_config

    if seeds < 1:
        raise ValueError(f"seeds is {seeds}: 1 or more.")
    if folds < 1:
        raise ValueError(f"folds is {folds}: 1 (the config's own dev set) or more.")
    output = Path(output)
    config = load_config(Path(config_path), overrides=dict(overrides or {}), interpolate=False)
    base_seed = int(config["system"]["seed"] if "system" in config else config["training"]["seed"])
    nlp = spacy.blank(config["nlp"]["lang"])
    examples = read_training_examples(config, nlp)
    parts: Optional[List[List[int]]] = None
    dev_digest = None
    if folds > 1:
        labels = sorted({label for eg in examples for label in eg.reference.cats})
        gold = numpy.array([[eg.reference.cats.get(label, 0.0) for label in labels] for eg in examples])
        parts = fold_indices(gold, folds, base_seed)
    else:
        dev_digest = data_digest(_corpus_examples(config, "dev", nlp))
    key = experiment_key(config, folds=folds, seeds=seeds, train=data_digest(examples), dev=dev_digest, parts=parts)
    _prepare(output, key, overwrite, log)
    splits: List[Optional[Dict[str, Path]]] = [None]
    if parts is not None:
        splits = []
        for k, dev_part in enumerate(parts):
            folder = output / "folds" / f"fold{k}"
            folder.mkdir(parents=True, exist_ok=True)
            held = set(dev_part)
            _docbin([eg for i, eg in enumerate(examples) if i not in held], folder / "train.spacy")
            _docbin([examples[i] for i in dev_part], folder / "dev.spacy")
            splits.append({"train": folder / "train.spacy", "dev": folder / "dev.spacy"})
        log(f"{len(examples)} training docs in {folds} folds of {[len(p) for p in parts]}")
    runs = []
    for k, split in enumerate(splits):
        for s in range(seeds):
            seed = base_seed + s
            name = f"fold{k}-seed{seed}" if split else f"seed{seed}"
            expected = run_key(key, k if split else None, seed, parts[k] if parts is not None else None)
            path = output / "runs" / f"{name}.json"
            if path.exists():
                try:
                    record = json.loads(path.read_text(encoding="utf8"))
                except ValueError:
                    record = {}
                if record.get("run_key") == expected:
                    log(f"[skip] {name}: done earlier with the same config, data, folds and seed "
                        f"({run_line(record)})")
                    runs.append(record)
                    continue
                log(f"[redo] {name}: {path} was not made by this experiment")
            log(f"[run] {name}")
            found = _train_and_score(config, split, seed, use_gpu, output / "runs" / f"{name}.log")
            record = {"name": name, "fold": k if split else None, "seed": seed, "run_key": expected,
                      "cats_score_desc": found.get("cats_score_desc"), "scores": _scores(found)}
            tmp = path.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf8")
            tmp.replace(path)
            log(f"[done] {name}: {run_line(record)}")
            runs.append(record)
    summary = summarise(runs)
    table = {"summary": summary, "runs": runs, "markdown": markdown(summary, runs),
             "config": str(config_path), "folds": folds, "seeds": seeds, "key": key}
    (output / "cv.json").write_text(json.dumps(table, indent=2, ensure_ascii=False) + "\n", encoding="utf8")
    (output / "cv.md").write_text(table["markdown"] + "\n", encoding="utf8")
    return table


def _train_and_score(config, split, seed: int, use_gpu: int, log_path: Path) -> Dict:
    from spacy.training import Corpus
    from spacy.training.initialize import init_nlp
    from spacy.training.loop import train as train_loop

    config = config.copy()
    config["system"]["seed"] = seed
    config["training"]["seed"] = seed
    if split is not None:
        for name in ("train", "dev"):
            key = config["training"][f"{name}_corpus"].split(".", 1)[1]
            config["corpora"][key] = {"@readers": "spacy.Corpus.v1", "path": str(split[name]), "max_length": 0,
                                      "gold_preproc": False, "limit": 0, "augmenter": None}
    with log_path.open("a", encoding="utf8") as stream, contextlib.redirect_stdout(stream):
        nlp = init_nlp(config, use_gpu=use_gpu)
        nlp, _ = train_loop(nlp, None, use_gpu=use_gpu, stdout=stream, stderr=stream)
    if split is not None:
        dev = Corpus(split["dev"])(nlp)
    else:
        dev = _corpus_examples(config, "dev", nlp)
    return nlp.evaluate(list(dev))
