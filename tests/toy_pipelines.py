"""Toy labelled data and small trained tiny_bert pipelines that several test modules share
(the fixtures that train them once a session are in conftest.py)."""
import json
from pathlib import Path

import spacy
import torch
from spacy.tokens import DocBin
from spacy.training import Example
from thinc.api import Adam, fix_random_seed

import spacy_cls  # noqa: F401

EXCLUSIVE = {
    "en": [
        ("i love this movie, it was great", "POS"),
        ("the food was awful and the staff rude", "NEG"),
        ("really good service, very friendly", "POS"),
        ("terrible room, dirty and slow", "NEG"),
        ("the hotel was nice and clean", "POS"),
        ("boring film, i hate it", "NEG"),
    ],
    "zh": [
        ("这家酒店的服务非常好", "POS"),
        ("快递很慢，服务很差", "NEG"),
        ("电影不错，推荐", "POS"),
        ("手机糟糕，失望", "NEG"),
        ("房间干净，满意", "POS"),
        ("太贵了，不推荐", "NEG"),
    ],
}
MULTILABEL = [
    ("the food was great but the service was slow", ["FOOD", "SERVICE"]),
    ("cheap price and good food", ["FOOD", "PRICE"]),
    ("rude staff", ["SERVICE"]),
    ("this movie is fun", []),
    ("the price is too high", ["PRICE"]),
    ("friendly staff and fast service", ["SERVICE"]),
]
MULTILABEL_LABELS = ["FOOD", "SERVICE", "PRICE"]


def gold_cats(label, labels):
    chosen = label if isinstance(label, list) else [label]
    return {name: float(name in chosen) for name in labels}


def save_trained_pipeline(folder: Path, model_path: str, lang: str = "en", multilabel: bool = False, steps: int = 40) -> Path:
    """Train a tiny_bert classifier to fit its toy data and save it to `folder`."""
    factory = "cls_classifier_multilabel" if multilabel else "cls_classifier"
    data = MULTILABEL if multilabel else EXCLUSIVE[lang]
    labels = MULTILABEL_LABELS if multilabel else ["POS", "NEG"]
    nlp = spacy.blank(lang)
    nlp.add_pipe(factory, config={"model": {"name": model_path}})
    examples = [Example.from_dict(nlp.make_doc(text), {"cats": gold_cats(label, labels)}) for text, label in data]
    # One thread: for a model this small, torch's thread pool costs more than it gives,
    # and far more on a busy machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fix_random_seed(0)
        nlp.initialize(lambda: examples)
        optimizer = Adam(3e-3)
        for _ in range(steps):
            nlp.update(examples, sgd=optimizer, drop=0.0)
    finally:
        torch.set_num_threads(threads)
    nlp.to_disk(folder)
    return folder


def write_docbin(path: Path, lang: str = "en", multilabel: bool = False) -> Path:
    nlp = spacy.blank(lang)
    data = MULTILABEL if multilabel else EXCLUSIVE[lang]
    labels = MULTILABEL_LABELS if multilabel else ["POS", "NEG"]
    db = DocBin()
    for text, label in data:
        doc = nlp.make_doc(text)
        doc.cats = gold_cats(label, labels)
        db.add(doc)
    db.to_disk(path)
    return path


def write_jsonl(path: Path, lang: str = "en") -> Path:
    lines = [json.dumps({"text": text, "label": label}, ensure_ascii=False) for text, label in EXCLUSIVE[lang]]
    path.write_text("\n".join(lines) + "\n", encoding="utf8")
    return path
