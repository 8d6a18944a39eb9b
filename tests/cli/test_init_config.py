"""`python -m spacy_cls init-config`: a config from the user's own TSV/CSV/JSONL that
`spacy train` runs as written, with the reader, labels, checkpoint and budget it found."""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import spacy
from spacy.util import load_config, registry
from typer.testing import CliRunner

from spacy_cls.cli import app
from spacy_cls.data.init_config import MAX_STEPS, MIN_STEPS, budget_for

from conftest import chinese_model_path

runner = CliRunner()
GOOD = ["good movie", "great food", "love this hotel", "nice clean room", "friendly staff"]
BAD = ["bad movie", "terrible food", "hate this hotel", "dirty room", "rude staff"]


def rows(n_each: int = 6):
    out = []
    for i in range(n_each):
        out += [(f"{GOOD[i % 5]} {i}", "pos"), (f"{BAD[i % 5]} {i}", "neg")]
    return out


def init(*args: str):
    result = runner.invoke(app, ["init-config", *map(str, args)])
    return result


def corpus_rows(config_path: Path, corpus: str, lang: str = "en"):
    """What the config's corpus block reads, through the registered reader."""
    config = load_config(config_path, interpolate=True)
    reader = registry.resolve({"x": config["corpora"][corpus]})["x"]
    nlp = spacy.blank(lang)
    return [(eg.reference.text, eg.reference.cats) for eg in reader(nlp)]


def spacy_train(config: Path, out: Path, tiny_bert: str, factory: str = "cls_classifier"):
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, "-m", "spacy", "train", str(config), "--output", str(out),
         f"--components.{factory}.model.name", tiny_bert, "--training.max_steps", "2",
         "--training.eval_frequency", "1"],
        env=env, capture_output=True, text=True, timeout=600,
    )


def test_a_csv_with_named_columns_trains_as_written(tmp_path, tiny_bert):
    src = tmp_path / "reviews.csv"
    with src.open("w", newline="", encoding="utf8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "review", "sentiment"])
        for i, (text, label) in enumerate(rows()):
            writer.writerow([i, f'{text}, "quoted", too', label])
    result = init(tmp_path / "c.cfg", "--train", src, "--lang", "en", "--model", tiny_bert,
                  "--text-col", "review", "--label-col", "sentiment")
    assert result.exit_code == 0, result.output
    text = (tmp_path / "c.cfg").read_text(encoding="utf8")
    assert 'format = "csv"' in text and 'text_col = "review"' in text and 'labels = ["neg", "pos"]' in text
    train, dev = corpus_rows(tmp_path / "c.cfg", "train"), corpus_rows(tmp_path / "c.cfg", "dev")
    assert len(train) + len(dev) == 12 and len(dev) >= 1
    assert not {t for t, _ in train} & {t for t, _ in dev}
    assert all(t.endswith('"quoted", too') for t, _ in train)  # the CSV is parsed, never read as lines
    trained = spacy_train(tmp_path / "c.cfg", tmp_path / "out", tiny_bert)
    assert trained.returncode == 0, trained.stderr[-3000:]
    nlp = spacy.load(tmp_path / "out" / "model-last")
    assert set(nlp("good movie").cats) == {"neg", "pos"}


def test_a_dev_file_is_used_as_given(tmp_path, tiny_bert):
    train, dev = tmp_path / "train.tsv", tmp_path / "dev.tsv"
    train.write_text("".join(f"{t}\t{label}\n" for t, label in rows()), encoding="utf8")
    dev.write_text("".join(f"{t}\t{label}\n" for t, label in rows(2)), encoding="utf8")
    result = init(tmp_path / "c.cfg", "--train", train, "--dev", dev, "--lang", "en", "--model", tiny_bert)
    assert result.exit_code == 0, result.output
    config = load_config(tmp_path / "c.cfg")
    assert config["paths"]["dev"] == str(dev) and "split" not in config["corpora"]["dev"]
    assert len(corpus_rows(tmp_path / "c.cfg", "dev")) == 4


def test_list_labels_in_jsonl_give_the_multilabel_component(tmp_path, tiny_bert):
    src = tmp_path / "t.jsonl"
    lines = [{"text": f"{GOOD[i % 5]} {i}", "label": ["pos", "food"] if i % 2 else ["pos"]} for i in range(12)]
    src.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf8")
    result = init(tmp_path / "m.cfg", "--train", src, "--lang", "en", "--model", tiny_bert)
    assert result.exit_code == 0, result.output
    config = load_config(tmp_path / "m.cfg")
    assert config["nlp"]["pipeline"] == ["cls_classifier_multilabel"]
    assert config["components"]["cls_classifier_multilabel"]["model"]["exclusive_classes"] is False
    assert config["initialize"]["components"]["cls_classifier_multilabel"]["labels"] == ["food", "pos"]
    trained = spacy_train(tmp_path / "m.cfg", tmp_path / "out", tiny_bert, "cls_classifier_multilabel")
    assert trained.returncode == 0, trained.stderr[-3000:]


def test_chinese_with_the_default_checkpoint_counts_its_word_pieces(tmp_path):
    chinese_model_path()
    src = tmp_path / "t.tsv"
    src.write_text("".join(f"{'这家酒店的服务非常好' * (1 + i % 3)}\t{'pos' if i % 2 else 'neg'}\n" for i in range(20)),
                   encoding="utf8")
    result = init(tmp_path / "z.cfg", "--train", src, "--lang", "zh")
    assert result.exit_code == 0, result.output
    config = load_config(tmp_path / "z.cfg")
    assert config["nlp"]["lang"] == "zh"
    assert config["components"]["cls_classifier"]["model"]["name"] == "package:embedding/m3e-small"
    # 30 characters, one piece each, plus [CLS] and [SEP]: 32
    assert config["components"]["cls_classifier"]["model"]["max_length"] == 32


def test_few_shot_freezes_the_encoder_with_mean_pooling(tmp_path, tiny_bert):
    src = tmp_path / "t.tsv"
    src.write_text("".join(f"{t}\t{label}\n" for t, label in rows(4)), encoding="utf8")
    assert init(tmp_path / "f.cfg", "--train", src, "--lang", "en", "--model", tiny_bert, "--few-shot").exit_code == 0
    model = load_config(tmp_path / "f.cfg")["components"]["cls_classifier"]["model"]
    assert model["freeze"] is True and model["pooling"] == "mean"


@pytest.mark.parametrize("label", ['pos "q"', "neg $x", "${paths.train}", "$$", "a$", "back\\slash", "中文 标签", "a=b", "[x]", "#tag", "it's"])
def test_awkward_labels_survive_the_config(tmp_path, tiny_bert, label):
    folder = tmp_path / "data $HOME {x}"
    folder.mkdir()
    src = folder / "t.jsonl"
    lines = [{"text": f"good {i}", "label": label if i % 2 else "plain"} for i in range(8)]
    src.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines), encoding="utf8")
    result = init(tmp_path / "a.cfg", "--train", src, "--lang", "en", "--model", tiny_bert)
    assert result.exit_code == 0, result.output
    config = load_config(tmp_path / "a.cfg", interpolate=True)
    assert config["initialize"]["components"]["cls_classifier"]["labels"] == sorted([label, "plain"])
    assert config["paths"]["train"] == str(src)
    assert {cats_label for _, cats in corpus_rows(tmp_path / "a.cfg", "train") for cats_label in cats} == {label, "plain"}


def test_a_path_that_reads_as_a_reference_is_refused(tmp_path, tiny_bert):
    folder = tmp_path / "${paths.x}"
    folder.mkdir()
    (folder / "t.tsv").write_text("good\tpos\nbad\tneg\n", encoding="utf8")
    result = init(tmp_path / "a.cfg", "--train", folder / "t.tsv", "--lang", "en", "--model", tiny_bert)
    assert result.exit_code == 2 and "--paths.train" in result.output and not (tmp_path / "a.cfg").exists()


def test_rejected_rows_are_reported_and_an_existing_config_is_kept(tmp_path, tiny_bert):
    src = tmp_path / "t.jsonl"
    src.write_text('{"text": "good", "label": "pos"}\nnot json\n{"text": "bad", "label": "neg"}\n', encoding="utf8")
    result = init(tmp_path / "a.cfg", "--train", src, "--lang", "en", "--model", tiny_bert)
    assert result.exit_code == 0 and "rejected line 2" in result.output and "2 rows read, 1 rejected" in result.output
    again = init(tmp_path / "a.cfg", "--train", src, "--lang", "en", "--model", tiny_bert)
    assert again.exit_code == 2 and "--force" in again.output


@pytest.mark.parametrize("args, message", [
    (["--lang", "fr"], "--lang fr"),
    (["--lang", "en", "--format", "xml"], "Unknown format"),
])
def test_bad_options_say_what_to_do(tmp_path, tiny_bert, args, message):
    src = tmp_path / "t.tsv"
    src.write_text("good\tpos\n", encoding="utf8")
    result = init(tmp_path / "a.cfg", "--train", src, "--model", tiny_bert, *args)
    assert result.exit_code == 2 and message in result.output


def test_the_budget_follows_the_rows():
    small, mid, large = (budget_for(n, few_shot=False) for n in (40, 3000, 500_000))
    assert small.max_steps == MIN_STEPS and large.max_steps == MAX_STEPS
    assert small.max_steps <= mid.max_steps <= large.max_steps
    assert 4.5 <= mid.epochs <= 5.5 and mid.batch_size == 32
    assert budget_for(100, few_shot=True).learn_rate > mid.learn_rate
