"""`python -m spacy_cls classify` (and the helpers the other command tests share:
small trained tiny_bert pipelines saved to disk)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import spacy
import torch
from spacy.tokens import DocBin
from spacy.training import Example
from thinc.api import Adam, fix_random_seed
from typer.testing import CliRunner

import spacy_cls  # noqa: F401
from spacy_cls.__main__ import app

ROOT = Path(__file__).resolve().parents[1]

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


# The fixtures below are imported by other test modules, which makes pytest set them up
# once per module; this cache keeps it to one training run per pipeline and session.
_TRAINED: dict = {}


def _trained(kind: str, model_path: str, tmp_path_factory, **options) -> Path:
    if kind not in _TRAINED:
        _TRAINED[kind] = save_trained_pipeline(tmp_path_factory.mktemp("pipelines") / kind, model_path, **options)
    return _TRAINED[kind]


@pytest.fixture(scope="session")
def en_pipeline(tiny_bert, tmp_path_factory) -> Path:
    return _trained("en", tiny_bert, tmp_path_factory)


@pytest.fixture(scope="session")
def zh_pipeline(tiny_bert, tmp_path_factory) -> Path:
    return _trained("zh", tiny_bert, tmp_path_factory, lang="zh")


@pytest.fixture(scope="session")
def multilabel_pipeline(tiny_bert, tmp_path_factory) -> Path:
    return _trained("multi", tiny_bert, tmp_path_factory, multilabel=True, steps=60)


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def parse_classify(output: str):
    """[(text, {label: score}, shape)] from the classify command's output."""
    results = []
    for line in output.splitlines():
        if line.startswith("["):
            results.append([line.split("] ", 1)[1], {}, None])
        elif line.startswith("    cls_vector: "):
            results[-1][2] = line.split(": ", 1)[1]
        elif line.startswith("    "):
            label, score = line.strip().rsplit(None, 1)
            results[-1][1][label] = score
    return results


def test_classify_texts(en_pipeline):
    result = invoke("classify", en_pipeline, "i love this movie, it was great", "boring film, i hate it")
    assert result.exit_code == 0, result.output
    parsed = parse_classify(result.output)
    assert [p[0] for p in parsed] == ["i love this movie, it was great", "boring film, i hate it"]
    nlp = spacy.load(en_pipeline)
    for text, cats, shape in parsed:
        doc = nlp(text)
        expected = sorted(doc.cats.items(), key=lambda kv: -kv[1])
        assert list(cats) == [label for label, _ in expected]  # highest first
        assert cats == {label: f"{score:.3f}" for label, score in expected}
        assert shape == "(32,)"
    assert list(parsed[0][1])[0] == "POS" and list(parsed[1][1])[0] == "NEG"


def test_classify_file_chinese(zh_pipeline, tmp_path):
    texts = ["这家酒店的服务非常好", "", "手机糟糕，失望"]
    file = tmp_path / "texts.txt"
    file.write_text("\n".join(texts) + "\n", encoding="utf8")
    result = invoke("classify", zh_pipeline, "--file", file)
    assert result.exit_code == 0, result.output
    parsed = parse_classify(result.output)
    assert [p[0] for p in parsed] == ["这家酒店的服务非常好", "手机糟糕，失望"]
    assert list(parsed[0][1])[0] == "POS" and list(parsed[1][1])[0] == "NEG"


def test_classify_errors(en_pipeline, tmp_path):
    result = CliRunner().invoke(app, ["classify", str(en_pipeline)])
    assert result.exit_code == 2 and "No texts" in result.output
    result = CliRunner().invoke(app, ["classify", str(tmp_path / "missing"), "text"])
    assert result.exit_code == 2 and "Could not load the pipeline" in result.output
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n", encoding="utf8")
    result = CliRunner().invoke(app, ["classify", str(en_pipeline), "--file", str(empty)])
    assert result.exit_code == 2 and "no texts" in result.output


def test_module_entry_point(en_pipeline):
    """What the README's demo command runs: a real `python -m spacy_cls` process."""
    proc = subprocess.run(
        [sys.executable, "-m", "spacy_cls", "classify", str(en_pipeline), "really good service"],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    parsed = parse_classify(proc.stdout)
    assert len(parsed) == 1 and set(parsed[0][1]) == {"POS", "NEG"} and parsed[0][2] == "(32,)"
