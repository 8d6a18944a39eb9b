"""`spacy train` distils with a config: configs/en_distill.cfg and zh_distill.cfg run
with a toy teacher and a one-layer student of a tiny BERT, and the student saves and
loads on its own."""
import json
from pathlib import Path

import pytest
import spacy
from spacy.cli.train import train
from thinc.api import Config

import spacy_cls.distill.corpus  # noqa: F401  (the entry point does this for an installed package)

from toy_pipelines import EXCLUSIVE

ROOT = Path(__file__).resolve().parents[2]


def write_gold(path: Path, lang: str, text_col: str, label_first: bool) -> Path:
    rows = [(text, "1" if label == "POS" else "0") for text, label in EXCLUSIVE[lang]]
    header = f"label\t{text_col}" if label_first else f"{text_col}\tlabel"
    lines = [header] + [f"{label}\t{text}" if label_first else f"{text}\t{label}" for text, label in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf8")
    return path


@pytest.mark.parametrize("lang,text_col,label_first", [("en", "sentence", False), ("zh", "text_a", True)])
def test_spacy_train_distils_with_the_shipped_config(tiny_bert, en_pipeline, zh_pipeline, tmp_path, lang, text_col,
                                                      label_first):
    teacher = en_pipeline if lang == "en" else zh_pipeline
    gold = write_gold(tmp_path / "gold.tsv", lang, text_col, label_first)
    texts = tmp_path / "texts.txt"
    unlabelled = ["the movie was fun", "really bad food", "slow and boring"] if lang == "en" else ["服务很好", "太慢了"]
    texts.write_text("\n".join(unlabelled) + "\n", encoding="utf8")
    report = tmp_path / "report.json"
    overrides = {
        "paths.teacher": str(teacher), "paths.texts": str(texts), "paths.train": str(gold), "paths.dev": str(gold),
        "components.cls_classifier.model.name": tiny_bert, "components.cls_classifier.model.layers": 1,
        "components.cls_classifier.model.max_length": 32,
        # the toy teachers' labels
        "corpora.train.gold.label_map": {"0": "NEG", "1": "POS"}, "corpora.dev.label_map": {"0": "NEG", "1": "POS"},
        "corpora.train.cache_dir": str(tmp_path / "cache"), "corpora.train.report": str(report),
        "training.max_steps": 4, "training.eval_frequency": 2, "training.logger.progress_bar": None,
    }
    train(ROOT / "configs" / f"{lang}_distill.cfg", tmp_path / "out", overrides=overrides)
    saved = json.loads(report.read_text())
    assert saved["examples"] == len(EXCLUSIVE[lang]) + len(unlabelled) and not saved["rejected"]
    # spacy train resolves the corpus at initialize and again for training: the second
    # reads every score from the cache.
    assert saved["from_cache"] == saved["examples"] and saved["scored_by_teacher"] == 0
    student = spacy.load(tmp_path / "out" / "model-last")
    encoder = student.get_pipe("cls_classifier").encoder
    assert len(encoder.shims[0]._model.encoder.layer) == 1 and encoder.attrs["kept_layers"] == [0]
    cats = student(EXCLUSIVE[lang][0][0]).cats
    assert set(cats) == {"NEG", "POS"} and sum(cats.values()) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("name", ["en_distill", "zh_distill"])
def test_distill_configs_name_the_teacher_and_the_student_depth(name):
    config = Config().from_disk(ROOT / "configs" / f"{name}.cfg")
    train_corpus = config["corpora"]["train"]
    assert train_corpus["@readers"] == "spacy_cls.TeacherCorpus.v1"
    assert train_corpus["gold"]["@readers"] == "spacy_cls.LabelledTextCorpus.v1"
    assert config["components"]["cls_classifier"]["model"]["layers"] == (3 if name.startswith("en") else 2)


def test_the_reader_is_an_entry_point_of_the_package():
    """`spacy train` finds the reader without --code once the package is installed."""
    import importlib
    import tomllib

    from spacy.util import registry

    readers = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf8"))["project"]["entry-points"]["spacy_readers"]
    module, _, function = readers["spacy_cls.TeacherCorpus.v1"].partition(":")
    assert getattr(importlib.import_module(module), function) is registry.get("readers", "spacy_cls.TeacherCorpus.v1")
