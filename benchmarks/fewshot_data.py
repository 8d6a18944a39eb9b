"""The few-shot benchmark's tasks, label descriptions and sampled training sets.

Every system of `fewshot.py` (ours, plain fine-tuning, SetFit) reads the same files
written here: a task's dev set, and for each (N, seed) the N examples per class drawn
from the task's training pool. Sampling is deterministic: the same task, N and seed give
the same rows on any machine, and the N=8 sample of a seed is the first 8 per class of
its N=16 sample, and so on.

- SST-2: the pool is the rows of train.tsv with 10 words or more (whole sentences; the
  file also holds every sub-phrase of the parse trees); dev is dev.tsv (872).
- TREC-6: dev is the fixed 10% of train_5500.label that configs/en_trec.cfg holds out;
  the pool is the other 90%.
- ChnSentiCorp: pool train.tsv, dev dev.tsv (1,200).
- TNEWS: pool train.tsv; dev is the first 2,000 rows of dev.tsv (of 10,000).
A pool text that is also a dev text is dropped from the pool, and so is a second copy
of a text, so that no sample holds a dev row or one row twice.
"""
from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from _common import ROOT
from accuracy_tasks import TASKS as ACCURACY_TASKS
from accuracy_tasks import Budget, read_split

SAMPLES = ROOT / "benchmarks" / "runs" / "fewshot" / "data"
SIZES = (8, 16, 32, 64)
SEEDS = (0, 1, 2, 3, 4)
MIN_WORDS_SST2 = 10


@dataclass(frozen=True)
class FewShotTask:
    key: str
    title: str
    lang: str
    accuracy_key: str  # the task of benchmarks/accuracy_tasks.py: config, reader, checkpoint
    max_length: int
    # label -> one description; every zero-shot row and the warm start use these
    descriptions: Dict[str, str]
    # "{}" is the description; SetFit's template zero-shot uses the first
    templates: Tuple[str, ...]
    dev_limit: int = 0  # 0: the whole dev set
    macro_f1: bool = False  # reported beside accuracy
    min_words: int = 0  # pool rows need this many whitespace-separated words

    @property
    def labels(self) -> List[str]:
        return list(self.descriptions)

    @property
    def accuracy_task(self):
        return ACCURACY_TASKS[self.accuracy_key]

    @property
    def model_name(self) -> str:
        return self.accuracy_task.model_name

    @property
    def tokenizer_config(self) -> Dict:
        return dict(self.accuracy_task.tokenizer_config)

    @property
    def dev_note(self) -> str:
        return DEV_NOTES[self.key]


TASKS: Dict[str, FewShotTask] = {
    "sst2": FewShotTask(
        "sst2", "SST-2", "en", "sst2", 64,
        {"negative": "a negative, unhappy review", "positive": "a positive, happy review"},
        ("This movie review is {}.",), min_words=MIN_WORDS_SST2,
    ),
    "trec": FewShotTask(
        "trec", "TREC-6", "en", "trec", 64,
        {
            "ABBR": "an abbreviation or what it stands for",
            "DESC": "a description, definition or reason",
            "ENTY": "an entity: a thing, animal, colour, food, product or term",
            "HUM": "a person or a group of people",
            "LOC": "a location: a city, country, place or address",
            "NUM": "a number: a date, count, amount, distance or price",
        },
        ("This question asks for {}.",), macro_f1=True,
    ),
    "chnsenticorp": FewShotTask(
        "chnsenticorp", "ChnSentiCorp", "zh", "chnsenticorp", 128,
        {"negative": "差评，不满意", "positive": "好评，满意"},
        ("这条评论是{}。",),
    ),
    "tnews": FewShotTask(
        "tnews", "TNEWS", "zh", "tnews", 64,
        {
            "news_story": "故事", "news_culture": "文化", "news_entertainment": "娱乐",
            "news_sports": "体育", "news_finance": "财经", "news_house": "房产",
            "news_car": "汽车", "news_edu": "教育", "news_tech": "科技",
            "news_military": "军事", "news_travel": "旅游", "news_world": "国际",
            "news_stock": "股票", "news_agriculture": "农业", "news_game": "电子竞技游戏",
        },
        ("这是一条{}新闻。",), dev_limit=2000, macro_f1=True,
    ),
}

DEV_NOTES = {
    "sst2": "SST-2 dev.tsv (872 sentences); training samples from the train.tsv rows of 10+ words",
    "trec": "the fixed 10% of train_5500.label held out as configs/en_trec.cfg does (seed 0); "
            "training samples from the other 90%",
    "chnsenticorp": "ChnSentiCorp dev.tsv (1,200 reviews)",
    "tnews": "the first 2,000 rows of TNEWS dev.tsv (of 10,000)",
}


@dataclass
class Split:
    texts: List[str]
    labels: List[str]  # one label name per text

    def __len__(self) -> int:
        return len(self.texts)


def _read(task: FewShotTask, split: str, dev_limit: int = 0) -> Split:
    data = read_split(task.accuracy_task, Budget(steps=1, max_length=task.max_length, dev_limit=dev_limit), split)
    if sorted(data.labels) != sorted(task.labels):
        raise ValueError(f"{task.title}: the data's labels {data.labels} are not the described ones {task.labels}")
    names = [data.labels[i] for i in data.gold.argmax(axis=1)]
    return Split(list(data.texts), names)


def read_dev(task: FewShotTask, dev_limit: int = 0) -> Split:
    """The task's dev set; `dev_limit` (smoke tests) keeps a label-stratified subset of it."""
    dev = _read(task, "dev", task.dev_limit)
    if dev_limit and dev_limit < len(dev):
        keep = sorted(stratified_subset(dev.labels, dev_limit))
        dev = Split([dev.texts[i] for i in keep], [dev.labels[i] for i in keep])
    return dev


def stratified_subset(labels: Sequence[str], n: int) -> List[int]:
    """n row indexes, each label's share as in the whole (rounded, at least one)."""
    by_label: Dict[str, List[int]] = {}
    for i, label in enumerate(labels):
        by_label.setdefault(label, []).append(i)
    chosen: List[int] = []
    for label in sorted(by_label):
        rows = by_label[label]
        take = max(1, round(n * len(rows) / len(labels)))
        chosen += random.Random(f"dev:{label}").sample(rows, min(take, len(rows)))
    return chosen


def read_pool(task: FewShotTask) -> Split:
    """The rows samples are drawn from (see the module's docstring); `pool_accounting`
    says how many training rows each rule dropped."""
    return pool_and_accounting(task)[0]


def pool_accounting(task: FewShotTask) -> Dict[str, int]:
    return pool_and_accounting(task)[1]


def pool_and_accounting(task: FewShotTask) -> Tuple[Split, Dict[str, int]]:
    pool = _read(task, "train")
    dev_texts = {text.strip() for text in _read(task, "dev").texts}
    kept, counts = filter_pool(pool, dev_texts, task.min_words)
    return kept, counts


def filter_pool(pool: Split, dev_texts: set, min_words: int) -> Tuple[Split, Dict[str, int]]:
    """Drop rows under `min_words` words, rows whose text is a dev text, and second copies
    of a text; every row read is kept or counted under the reason it was dropped."""
    counts = {"read": len(pool), "short": 0, "in_dev": 0, "duplicate": 0, "kept": 0}
    seen = set()
    texts, labels = [], []
    for text, label in zip(pool.texts, pool.labels):
        key = text.strip()
        if len(text.split()) < min_words:
            counts["short"] += 1
        elif key in dev_texts:
            counts["in_dev"] += 1
        elif key in seen:
            counts["duplicate"] += 1
        else:
            seen.add(key)
            texts.append(text)
            labels.append(label)
            counts["kept"] += 1
    return Split(texts, labels), counts


def sample_indexes(pool_labels: Sequence[str], labels: Sequence[str], n: int, seed: int) -> List[int]:
    """n pool rows per label: each label's rows in an order fixed by (label, seed), the
    first n of them; labels in the order given. An error if a label has fewer rows."""
    chosen: List[int] = []
    for label in labels:
        rows = [i for i, gold in enumerate(pool_labels) if gold == label]
        if len(rows) < n:
            raise ValueError(f"Label {label!r} has {len(rows)} rows in the pool: fewer than the {n} asked for; "
                             f"use a smaller N.")
        random.Random(f"{label}:{seed}").shuffle(rows)
        chosen += rows[:n]
    return chosen


def write_jsonl(path: Path, texts: Sequence[str], labels: Sequence[str], ids: Optional[Sequence[object]] = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf8") as file:
        for i, (text, label) in enumerate(zip(texts, labels)):
            row = {"text": text, "label": label, "id": ids[i] if ids is not None else i}
            file.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(path)
    return path


def read_jsonl(path: Path) -> Split:
    texts, labels = [], []
    for line_no, line in enumerate(path.read_text(encoding="utf8").splitlines(), 1):
        row = json.loads(line)
        if not isinstance(row.get("text"), str) or not isinstance(row.get("label"), str):
            raise ValueError(f"{path}:{line_no}: needs a string 'text' and a string 'label'")
        texts.append(row["text"])
        labels.append(row["label"])
    return Split(texts, labels)


def file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


@dataclass
class DataFiles:
    """The files of one (task, N, seed): what every system reads."""

    task: FewShotTask
    train: Optional[Path]  # None for zero-shot
    dev: Path

    def hashes(self) -> Dict[str, Optional[str]]:
        return {"train": file_hash(self.train) if self.train else None, "dev": file_hash(self.dev)}


def dev_file(task: FewShotTask, dev_limit: int = 0, root: Path = SAMPLES) -> Path:
    path = root / f"{task.key}-dev{f'-{dev_limit}' if dev_limit else ''}.jsonl"
    if not path.exists():
        dev = read_dev(task, dev_limit)
        write_jsonl(path, dev.texts, dev.labels)
    return path


def train_file(task: FewShotTask, n: int, seed: int, root: Path = SAMPLES, pool: Optional[Split] = None) -> Path:
    path = root / f"{task.key}-n{n}-seed{seed}.jsonl"
    if not path.exists():
        pool = pool or read_pool(task)
        chosen = sample_indexes(pool.labels, task.labels, n, seed)
        write_jsonl(path, [pool.texts[i] for i in chosen], [pool.labels[i] for i in chosen], ids=chosen)
    return path


def data_files(task: FewShotTask, n: int, seed: int, dev_limit: int = 0, root: Path = SAMPLES,
               pool: Optional[Split] = None) -> DataFiles:
    train = train_file(task, n, seed, root, pool) if n else None
    return DataFiles(task, train, dev_file(task, dev_limit, root))
