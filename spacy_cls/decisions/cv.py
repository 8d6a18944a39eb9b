"""`cv`: how much a dev score moves. Train a config over K folds of its training corpus
and/or N seeds, with spaCy's own training loop, and report each score's mean and
standard deviation.

Each (fold, seed) run writes its scores to OUTPUT/runs/fold{k}-seed{s}.json; a run whose
file exists is skipped, so an interrupted `cv` resumes where it stopped.
"""
from __future__ import annotations

import contextlib
import json
import math
import random
import statistics
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Union

import numpy

# Scores reported (from the component's scorer), when the pipeline gives them.
SUMMARY_KEYS = ("cats_score", "cats_macro_f", "cats_micro_f", "cats_macro_auc")


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


def markdown(summary: Dict[str, Dict[str, float]], runs: Sequence[Dict]) -> str:
    lines = [f"{len(runs)} runs ({', '.join(r['name'] for r in runs)}); mean ± standard deviation (sample).", "",
             "| score | mean | sd | runs |", "|---|---|---|---|"]
    for key in sorted(summary, key=lambda k: (k.startswith("F "), k)):
        s = summary[key]
        lines.append(f"| {key} | {100 * s['mean']:.2f} | {100 * s['sd']:.2f} | {s['n']} |")
    return "\n".join(lines)


def _scores(found: Dict) -> Dict[str, Optional[float]]:
    out = {key: found.get(key) for key in SUMMARY_KEYS if key in found}
    for label, prf in (found.get("cats_f_per_type") or {}).items():
        out[f"F {label}"] = prf.get("f")
    return out


def _docbin(examples, path: Path) -> None:
    from spacy.tokens import DocBin

    DocBin(docs=[eg.reference for eg in examples], store_user_data=True).to_disk(path)


def read_training_examples(config, nlp) -> list:
    from spacy.util import registry

    train = dict(config.interpolate()["corpora"][config["training"]["train_corpus"].split(".", 1)[1]])
    corpus = registry.resolve({"corpus": train})["corpus"]
    return list(corpus(nlp))


def run_cross_validation(
    config_path: Union[str, Path],
    output: Union[str, Path],
    *,
    folds: int = 5,
    seeds: int = 1,
    overrides: Optional[Dict[str, object]] = None,
    use_gpu: int = -1,
    log: Callable[[str], None] = print,
) -> Dict:
    """Train over the folds x seeds, resuming from OUTPUT/runs; write OUTPUT/cv.json and
    OUTPUT/cv.md and return {"summary", "runs", "markdown"}. folds = 1: every seed trains
    on the config's training corpus and is scored on its dev corpus."""
    import spacy
    from spacy.util import load_config

    if seeds < 1:
        raise ValueError(f"seeds is {seeds}: 1 or more.")
    if folds < 1:
        raise ValueError(f"folds is {folds}: 1 (the config's own dev set) or more.")
    output = Path(output)
    (output / "runs").mkdir(parents=True, exist_ok=True)
    config = load_config(Path(config_path), overrides=dict(overrides or {}), interpolate=False)
    base_seed = int(config["system"]["seed"] if "system" in config else config["training"]["seed"])
    splits: List[Optional[Dict[str, Path]]] = [None]
    if folds > 1:
        examples = read_training_examples(config, spacy.blank(config["nlp"]["lang"]))
        labels = sorted({label for eg in examples for label in eg.reference.cats})
        gold = numpy.array([[eg.reference.cats.get(label, 0.0) for label in labels] for eg in examples])
        parts = fold_indices(gold, folds, base_seed)
        splits = []
        for k, dev_part in enumerate(parts):
            folder = output / "folds" / f"fold{k}"
            folder.mkdir(parents=True, exist_ok=True)
            if not (folder / "dev.spacy").exists():
                held = set(dev_part)
                _docbin([eg for i, eg in enumerate(examples) if i not in held], folder / "train.spacy")
                _docbin([examples[i] for i in dev_part], folder / "dev.spacy")
            splits.append({"train": folder / "train.spacy", "dev": folder / "dev.spacy"})
        log(f"{len(examples)} training docs in {folds} folds of {[len(p) for p in parts]}")
    runs = []
    for k, split in enumerate(splits):
        for s in range(seeds):
            name = f"fold{k}-seed{base_seed + s}" if split else f"seed{base_seed + s}"
            path = output / "runs" / f"{name}.json"
            if path.exists():
                log(f"[skip] {name}: {path} exists")
                runs.append(json.loads(path.read_text(encoding="utf8")))
                continue
            log(f"[run] {name}")
            found = _train_and_score(config, split, base_seed + s, use_gpu, output / "runs" / f"{name}.log")
            record = {"name": name, "fold": k if split else None, "seed": base_seed + s, "scores": found}
            tmp = path.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf8")
            tmp.replace(path)
            log(f"[done] {name}: cats_score {found.get('cats_score')}")
            runs.append(record)
    summary = summarise(runs)
    table = {"summary": summary, "runs": runs, "markdown": markdown(summary, runs),
             "config": str(config_path), "folds": folds, "seeds": seeds}
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
    dev_key = config["training"]["dev_corpus"].split(".", 1)[1]
    if split is not None:
        dev = Corpus(split["dev"])(nlp)
    else:
        from spacy.util import registry

        dev = registry.resolve({"c": dict(config.interpolate()["corpora"][dev_key])})["c"](nlp)
    return _scores(nlp.evaluate(list(dev)))
