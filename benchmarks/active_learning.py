"""The annotation loop, simulated: does asking for the labels the classifier is least sure
of (`rank-uncertain`) beat asking for random ones?

    python benchmarks/active_learning.py --run [--tasks sst2 chnsenticorp] [--seeds 0 1 2 3 4]
                                               [--strategies uncertainty random] [--rounds 5]
                                               [--pool-size 2000] [--system ours-contrastive] [--dev-limit K]
    python benchmarks/active_learning.py --report

Each (task, seed) starts from the few-shot benchmark's sample of 8 examples per class
(fewshot_data.py, the same file) and a pool of `pool-size` other training rows drawn by
the seed, whose labels are held back: the pool file the classifier ranks holds texts and
ids only. Each round trains the system on the labels revealed so far (from the checkpoint,
as `fewshot.py` trains it), scores it on the dev set, then reveals 8 x C more:
- uncertainty: the most uncertain pool texts by `spacy_cls.decisions.rank_uncertain`, what
  `python -m spacy_cls rank-uncertain` runs (the component's `doc._.cls_uncertainty`);
- random: drawn from the pool by (seed, round).
Round 0 is the same for both strategies and trained once.

Resumable: a round's result is benchmarks/results/active_learning_runs/KEY.json (its
labelled ids, the ids it asks for next, scores, time), and a later round starts from the
one before; an existing result is skipped. The report (active_learning.md, .json and
.png) draws accuracy against the number of labels for both strategies.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("ANSI_COLORS_DISABLED", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from _common import RESULTS, ROOT, machine, markdown_table  # noqa: E402
import fewshot  # noqa: E402
from fewshot_data import TASKS, DataFiles, FewShotTask, Split, dev_file, file_hash, read_jsonl, read_pool, \
    train_file, write_jsonl  # noqa: E402

RUNS = RESULTS / "active_learning_runs"
WORK = ROOT / "benchmarks" / "runs" / "active_learning"
STRATEGIES = ("uncertainty", "random")
DEFAULT_TASKS = ("sst2", "chnsenticorp")
START_PER_CLASS = 8
PER_CLASS_PER_ROUND = 8
ROUNDS = 5
POOL_SIZE = 2000
SEEDS = (0, 1, 2, 3, 4)
TRAINABLE = tuple(k for k, s in fewshot.SYSTEMS.items() if s.runner == "ours" and not s.zero_shot)


@dataclass(frozen=True)
class Loop:
    task: FewShotTask
    seed: int
    system: str
    pool_size: int
    dev_limit: int

    def settings(self) -> Dict:
        return {"system": self.system, "start_per_class": START_PER_CLASS,
                "per_class_per_round": PER_CLASS_PER_ROUND, "pool_size": self.pool_size,
                "system_settings": fewshot.SYSTEMS[self.system].settings(self.task, self.dev_limit)}

    def key(self, strategy: str, round_no: int) -> str:
        who = "start" if round_no == 0 else strategy
        return f"{who}-{self.task.key}-seed{self.seed}-round{round_no}-{fewshot.settings_hash(self.settings())}"

    @property
    def per_round(self) -> int:
        return PER_CLASS_PER_ROUND * len(self.task.labels)


# ---------------------------------------------------------------------------
# The pool: texts whose labels are held back


@dataclass
class Pool:
    ids: List[str]
    texts: Dict[str, str]
    gold: Dict[str, str]  # held back; read only to reveal a chosen id
    unlabelled: Path  # what the classifier ranks: {"text", "id"} a line


def start_and_pool(loop: Loop, source: Optional[Split] = None, root: Path = WORK) -> Tuple[Dict[str, str], Pool]:
    """The start set (id -> label, the few-shot sample of N=8) and the pool (other rows of
    the few-shot pool, `pool_size` of them drawn by the seed), written once to files."""
    task = loop.task
    source = source if source is not None else read_pool(task)
    start_path = train_file(task, START_PER_CLASS, loop.seed, pool=source)
    start_rows = [json.loads(line) for line in start_path.read_text(encoding="utf8").splitlines()]
    start = {f"p{row['id']}": row["label"] for row in start_rows}
    for row in start_rows:
        if source.texts[row["id"]] != row["text"]:
            raise RuntimeError(f"{start_path} is not a sample of the current pool: delete it to draw it again")
    left = [i for i in range(len(source)) if f"p{i}" not in start]
    if len(left) < loop.pool_size:
        raise ValueError(f"{task.title}: {len(left)} rows left for the pool, fewer than --pool-size {loop.pool_size}")
    chosen = sorted(random.Random(f"pool:{loop.seed}").sample(left, loop.pool_size))
    ids = [f"p{i}" for i in chosen]
    unlabelled = root / f"{task.key}-seed{loop.seed}-pool{loop.pool_size}-unlabelled.jsonl"
    if not unlabelled.exists():
        unlabelled.parent.mkdir(parents=True, exist_ok=True)
        tmp = unlabelled.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps({"text": source.texts[i], "id": f"p{i}"}, ensure_ascii=False) + "\n"
                               for i in chosen), encoding="utf8")
        tmp.replace(unlabelled)
    texts = {f"p{i}": source.texts[i] for i in range(len(source)) if f"p{i}" in start or i in set(chosen)}
    gold = {f"p{i}": source.labels[i] for i in chosen}
    return start, Pool(ids, texts, gold, unlabelled)


def pick_random(candidates: Sequence[str], n: int, seed: int, round_no: int) -> List[str]:
    return random.Random(f"random:{seed}:{round_no}").sample(list(candidates), min(n, len(candidates)))


def pick_uncertain(nlp, pool: Pool, candidates: Sequence[str], n: int) -> Tuple[List[str], List[str]]:
    """The n most uncertain candidates by the project's rank-uncertain API, and the pool
    lines it could not read, with their reasons (none expected: the file is written here)."""
    from spacy_cls.decisions.rank import InputText, read_texts, rank_uncertain

    wanted = set(candidates)
    items, skipped = [], []
    for item in read_texts(pool.unlabelled):
        if not isinstance(item, InputText):
            skipped.append(f"line {item.line_no}: {item.reason}")
        elif item.meta.get("id") in wanted:
            items.append(item)
    if len(items) != len(wanted):
        raise RuntimeError(f"{pool.unlabelled} holds {len(items)} of the {len(wanted)} candidates; "
                           f"unreadable lines: {skipped}")
    rows, _ = rank_uncertain(nlp, None, items, min(n, len(items)))
    return [row["meta"]["id"] for row in rows], skipped


# ---------------------------------------------------------------------------
# Rounds


def write_labelled(loop: Loop, labelled: Dict[str, str], pool: Pool, path: Path) -> Path:
    ids = sorted(labelled, key=lambda i: int(i[1:]))
    return write_jsonl(path, [pool.texts[i] for i in ids], [labelled[i] for i in ids], ids=ids)


def labelled_at(loop: Loop, strategy: str, round_no: int, start: Dict[str, str], pool: Pool) -> Dict[str, str]:
    """The labels revealed before round `round_no`: the start set plus every earlier
    round's picks (read from their results)."""
    labelled = dict(start)
    for r in range(round_no):
        previous = RUNS / f"{loop.key(strategy, r)}.json"
        if not previous.exists():
            raise RuntimeError(f"Round {round_no} needs round {r}'s result {previous.name}")
        picks = json.loads(previous.read_text(encoding="utf8"))["picks"][strategy]
        if set(picks) & set(labelled):
            raise RuntimeError(f"{previous.name} asks again for labels already revealed")
        labelled.update({i: pool.gold[i] for i in picks})
    return labelled


def run_round(loop: Loop, strategy: str, round_no: int, rounds: int, threads: int, start, pool: Pool) -> Optional[Path]:
    out = RUNS / f"{loop.key(strategy, round_no)}.json"
    if out.exists():
        found = json.loads(out.read_text(encoding="utf8"))
        if strategy in found["picks"] or round_no == rounds:
            return None
    else:
        found = None
    labelled = labelled_at(loop, strategy, round_no, start, pool)
    candidates = [i for i in pool.ids if i not in labelled]
    system = fewshot.SYSTEMS[loop.system]
    work = WORK / loop.key(strategy, round_no)
    train = write_labelled(loop, labelled, pool, work / "train.jsonl")
    files = DataFiles(loop.task, train, dev_file(loop.task, loop.dev_limit))
    run = fewshot.Planned(system, loop.task, len(labelled) // len(loop.task.labels), loop.seed,
                          system.settings(loop.task, loop.dev_limit))
    fewshot.log(f"active learning {out.stem} ({strategy}): {len(labelled)} labels")
    nlp = None
    if found is None:
        nlp, seconds, _, _ = fewshot.train_ours(run, files, threads)
        found = {"key": out.stem, "task": loop.task.key, "seed": loop.seed, "round": round_no,
                 "settings": loop.settings(), "labels": len(labelled),
                 "label_counts": {label: sum(v == label for v in labelled.values()) for label in loop.task.labels},
                 "labelled": sorted(labelled), "scores": fewshot.score_pipeline(nlp, loop.task, files.dev),
                 "train_seconds": seconds, "files": {"train": file_hash(train), "dev": file_hash(files.dev),
                                                     "pool": file_hash(pool.unlabelled)},
                 "picks": {}, "pick_seconds": {}}
    if round_no < rounds:
        wall0 = time.perf_counter()
        if strategy == "uncertainty":
            if nlp is None:
                nlp, _, _, _ = fewshot.train_ours(run, files, threads)
            found["picks"][strategy], found["skipped_pool_lines"] = pick_uncertain(nlp, pool, candidates,
                                                                                  loop.per_round)
        else:
            found["picks"][strategy] = pick_random(candidates, loop.per_round, loop.seed, round_no)
        found["pick_seconds"][strategy] = time.perf_counter() - wall0
    found.update(date=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), command=command_line(),
                 machine=machine(), load_average=list(os.getloadavg()), threads=threads)
    fewshot.write_result(out, found)
    fewshot.log(f"done {out.stem}: accuracy {found['scores']['accuracy']:.1f} with {len(labelled)} labels")
    return out


def command_line() -> str:
    return " ".join(["python", "benchmarks/active_learning.py", *sys.argv[1:]])


def run_all(tasks, seeds, strategies, rounds, pool_size, system, dev_limit, threads) -> List[str]:
    failed = []
    RUNS.mkdir(parents=True, exist_ok=True)
    fewshot.LOG = RUNS / "active_learning.log"
    with fewshot.driver_lock(RUNS / "driver.lock"):
        for task_key in tasks:
            task = TASKS[task_key]
            source = read_pool(task)
            for seed in seeds:
                loop = Loop(task, seed, system, pool_size, dev_limit)
                start, pool = start_and_pool(loop, source)
                for strategy in strategies:
                    for round_no in range(rounds + 1):
                        try:
                            run_round(loop, strategy, round_no, rounds, threads, start, pool)
                        except Exception as error:  # noqa: BLE001 - the other loops go on
                            failed.append(loop.key(strategy, round_no))
                            fewshot.log(f"FAILED {failed[-1]}: {type(error).__name__}: {error}")
                            break  # the later rounds of this loop need this one
    return failed


# ---------------------------------------------------------------------------
# Report


def curves(records: Sequence[Dict], system: str, pool_size: int, dev_limit: int) -> Dict[Tuple[str, str], Dict[int, List[float]]]:
    """(task, strategy) -> labels -> dev accuracies over seeds. Round 0 counts for both."""
    out: Dict[Tuple[str, str], Dict[int, List[float]]] = {}
    for r in records:
        task = TASKS.get(r["task"])
        if task is None:
            continue
        expected = Loop(task, r["seed"], system, pool_size, dev_limit).settings()
        if fewshot.settings_hash(r["settings"]) != fewshot.settings_hash(expected):
            continue
        strategies = STRATEGIES if r["round"] == 0 else [r["key"].split("-", 1)[0]]
        for strategy in strategies:
            out.setdefault((r["task"], strategy), {}).setdefault(r["labels"], []).append(r["scores"]["accuracy"])
    return out


def _shown(values: Sequence[float]) -> str:
    if not values:
        return "-"
    text = f"{statistics.fmean(values):.1f}"
    if len(values) > 1:
        text += f" ± {statistics.stdev(values):.1f}"
    return text + f" ({len(values)})"


def verdict(unc: Dict[int, List[float]], rnd: Dict[int, List[float]]) -> str:
    """Whether uncertainty sampling beat random, said plainly, after round 0."""
    points = sorted(set(unc) & set(rnd))[1:]
    if not points:
        return "not measured yet (no round after the start for both strategies)"
    if any(len(unc[n]) < 2 or len(rnd[n]) < 2 for n in points):
        return "too few seeds to say (a label count has fewer than 2 seeds, so no sd to judge a tie)"
    found = {"better": [], "tie": [], "worse": []}
    for n in points:
        a = fewshot.Cell(unc[n], [0.0]); b = fewshot.Cell(rnd[n], [0.0])
        found[fewshot.compare(a, b)].append(str(n))
    if found["better"] and not found["worse"]:
        head = "uncertainty sampling beats random"
    elif found["worse"] and not found["better"]:
        head = "uncertainty sampling does not beat random: it is worse"
    elif not found["better"] and not found["worse"]:
        head = "uncertainty sampling does not beat random: they tie (differences inside one sd)"
    else:
        head = "mixed: uncertainty sampling is better at some label counts and worse at others"
    def at(kind: str) -> str:
        return f"{', '.join(found[kind])} labels" if found[kind] else "none"

    return f"{head} (better at {at('better')}; tie at {at('tie')}; worse at {at('worse')})"


def plot(found, path: Path) -> Optional[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = [t for t in TASKS if any(k[0] == t for k in found)]
    if not tasks:
        return None
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 4), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for strategy, colour in zip(STRATEGIES, ("tab:red", "tab:blue")):
            points = found.get((task, strategy), {})
            xs = sorted(points)
            if not xs:
                continue
            means = [statistics.fmean(points[x]) for x in xs]
            sds = [statistics.stdev(points[x]) if len(points[x]) > 1 else 0.0 for x in xs]
            ax.plot(xs, means, marker="o", color=colour, label=strategy)
            ax.fill_between(xs, [m - s for m, s in zip(means, sds)], [m + s for m, s in zip(means, sds)],
                            color=colour, alpha=0.15)
        ax.set_title(f"{TASKS[task].title}: dev accuracy")
        ax.set_xlabel("labels annotated")
        ax.set_ylabel("accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def report(system: str, pool_size: int, dev_limit: int) -> Path:
    records = [json.loads(p.read_text(encoding="utf8")) for p in sorted(RUNS.glob("*.json"))]
    found = curves(records, system, pool_size, dev_limit)
    name = "active_learning" if not dev_limit else f"active_learning_smoke{dev_limit}"
    parts: List[str] = []
    verdicts = {}
    for task_key, task in TASKS.items():
        unc, rnd = found.get((task_key, "uncertainty"), {}), found.get((task_key, "random"), {})
        if not unc and not rnd:
            continue
        counts = sorted(set(unc) | set(rnd))
        rows = [[n, _shown(unc.get(n, [])), _shown(rnd.get(n, []))] for n in counts]
        verdicts[task_key] = verdict(unc, rnd)
        parts += [f"## {task.title}", "", f"Dev: {task.dev_note}.", "",
                  markdown_table(["labels", "uncertainty: accuracy (seeds)", "random: accuracy (seeds)"], rows), "",
                  f"Result: {verdicts[task_key]}.", ""]
    png = plot(found, RESULTS / f"{name}.png")
    info = machine()
    commands = sorted({r["command"] for r in records})
    header = [
        "# Active learning: uncertainty sampling against random", "",
        f"Report: `{command_line()}`  ", f"Runs: {', '.join(f'`{c}`' for c in commands) or 'none'}  ",
        f"Machine: {info['cpu']}, {info['logical_cpus']} logical CPUs (shared)", "",
        f"Start: {START_PER_CLASS} labelled examples per class (the few-shot benchmark's sample of each seed); "
        f"each round reveals {PER_CLASS_PER_ROUND} x C labels from a pool of {pool_size} rows whose labels are "
        f"held back, chosen by rank-uncertain or at random, and retrains `{system}` from the checkpoint. "
        "Mean ± sd over seeds; the number of seeds in brackets.", "",
    ]
    if dev_limit:
        header += [f"**Smoke-test figures**: scored on a {dev_limit}-row stratified subset of each dev set.", ""]
    if png:
        header += [f"![accuracy against labels]({png.name})", ""]
    md = RESULTS / f"{name}.md"
    md.write_text("\n".join(header + parts) + "\n", encoding="utf8")
    payload = {"command": command_line(), "machine": info, "system": system, "pool_size": pool_size,
               "dev_limit": dev_limit, "verdicts": verdicts,
               "curves": [{"task": t, "strategy": s, "labels": n, "accuracies": v}
                          for (t, s), points in sorted(found.items()) for n, v in sorted(points.items())]}
    (RESULTS / f"{name}.json").write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf8")
    return md


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", action="store_true")
    parser.add_argument("--report", action="store_true")
    parser.add_argument("--tasks", nargs="+", choices=list(TASKS), default=list(DEFAULT_TASKS))
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    parser.add_argument("--strategies", nargs="+", choices=STRATEGIES, default=list(STRATEGIES))
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="rounds after the start")
    parser.add_argument("--pool-size", type=int, default=POOL_SIZE)
    parser.add_argument("--system", choices=TRAINABLE, default="ours-contrastive",
                        help="what each round trains (fewshot.py's systems; default: descriptions + contrastive stage)")
    parser.add_argument("--dev-limit", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    if not (args.run or args.report):
        parser.error("give --run, --report or both")
    if args.rounds < 1 or args.pool_size < 1:
        parser.error("--rounds and --pool-size are 1 or more")
    failed = []
    if args.run:
        failed = run_all(args.tasks, args.seeds, args.strategies, args.rounds, args.pool_size, args.system,
                         args.dev_limit, args.threads)
        if failed:
            print(f"{len(failed)} rounds failed: {', '.join(failed)} (see {fewshot.LOG})")
    print(f"Report: {report(args.system, args.pool_size, args.dev_limit)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
