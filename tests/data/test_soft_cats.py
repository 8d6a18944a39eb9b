"""Soft labels in the converter and the corpus reader: a JSONL object of probabilities,
or one score column per label in a table. Every row is written or rejected with its
line and reason; the values are checked as strictly as the components check them."""
import json
from pathlib import Path

import pytest
import spacy
from spacy.tokens import DocBin
from typer.testing import CliRunner

from spacy_cls.cli import app
from spacy_cls.data.convert import convert
from spacy_cls.data.labels import SOFT_SUM_TOLERANCE
from spacy_cls.data.readers import ReaderSpec, create_labelled_text_corpus, read_rows
from spacy_cls.pipeline.validation import SOFT_SUM_TOLERANCE as COMPONENT_TOLERANCE

runner = CliRunner()


def write_jsonl(path: Path, records) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n", encoding="utf8")
    return path


def docs_of(path: Path):
    return list(DocBin().from_disk(path).get_docs(spacy.blank("en").vocab))


GOOD = [
    {"text": "good movie", "cats": {"POS": 0.8, "NEG": 0.2}},
    {"text": "bad food", "cats": {"POS": 0.1, "NEG": 0.9}},
    {"text": "fine", "label": "POS"},
    {"text": "so-so", "label": {"POS": 0.5, "NEG": 0.5}},
]


def test_jsonl_soft_cats_are_written(tmp_path):
    source = write_jsonl(tmp_path / "train.jsonl", GOOD)
    report = convert(source, tmp_path / "train.spacy", ReaderSpec(format="jsonl"))
    assert report.rows_read == 4 and report.rows_written == 4 and not report.rejected
    cats = [doc.cats for doc in docs_of(tmp_path / "train.spacy")]
    assert cats[0] == pytest.approx({"POS": 0.8, "NEG": 0.2})
    assert cats[2] == {"POS": 1.0, "NEG": 0.0}
    assert cats[3] == pytest.approx({"POS": 0.5, "NEG": 0.5})


@pytest.mark.parametrize(
    "line,reason",
    [
        ('{"text": "x y", "cats": {"POS": NaN, "NEG": 0.5}}', "score of 'POS' is nan"),
        ('{"text": "x y", "cats": {"POS": -0.2, "NEG": 1.2}}', "score of 'POS' is -0.2"),
        ('{"text": "x y", "cats": {"POS": 1.5, "NEG": 0.0}}', "score of 'POS' is 1.5"),
        ('{"text": "x y", "cats": {"POS": Infinity, "NEG": 0.0}}', "score of 'POS' is inf"),
        ('{"text": "x y", "cats": {"POS": "high", "NEG": 0.0}}', "not a number from 0 to 1"),
        ('{"text": "x y", "cats": {"POS": true, "NEG": 0.0}}', "not a number from 0 to 1"),
        ('{"text": "x y", "cats": {"POS": 0.6, "NEG": 0.6}}', "sum to 1.2"),
        ('{"text": "x y", "cats": {"POS": 0.3}}', "sum to 0.3"),
        ('{"text": "x y", "cats": {}}', "empty"),
    ],
)
def test_bad_soft_cats_are_rejected_with_their_line(tmp_path, line, reason):
    source = write_jsonl(tmp_path / "train.jsonl", [*GOOD[:2], line, GOOD[2]])
    report = convert(source, tmp_path / "train.spacy", ReaderSpec(format="jsonl"))
    assert report.rows_read == 4 and report.rows_written == 3
    (rejected,) = report.rejected
    assert rejected.line_no == 3 and reason in rejected.reason


def test_multilabel_soft_cats_need_not_sum_to_one(tmp_path):
    records = [{"text": "great food slow service", "cats": {"FOOD": 0.9, "SERVICE": 0.7, "PRICE": 0.0}},
               {"text": "ok", "cats": {"FOOD": 0.2}}]
    source = write_jsonl(tmp_path / "train.jsonl", records)
    report = convert(source, tmp_path / "train.spacy", ReaderSpec(format="jsonl"), exclusive=False)
    assert report.rows_written == 2
    cats = [doc.cats for doc in docs_of(tmp_path / "train.spacy")]
    assert cats[1] == pytest.approx({"FOOD": 0.2, "SERVICE": 0.0, "PRICE": 0.0})


def test_label_map_and_names_apply_to_soft_labels(tmp_path):
    names = tmp_path / "labels.txt"
    names.write_text("negative\npositive\n", encoding="utf8")
    source = write_jsonl(tmp_path / "train.jsonl", [{"text": "a b", "cats": {"0": 0.25, "1": 0.75}},
                                                   {"text": "c d", "cats": {"0": 0.5, "7": 0.5}}])
    spec = ReaderSpec(format="jsonl", label_names=names, label_map={"positive": "POS"})
    records = list(read_rows(source, spec))
    assert records[0].scores == (("negative", 0.25), ("POS", 0.75))
    assert "unknown label id 7" in records[1].reason


@pytest.mark.parametrize("header,columns", [
    (True, {"POS": "p_pos", "NEG": "p_neg"}),
    (False, {"POS": 1, "NEG": 2}),
    (True, {"POS": 1, "NEG": 2}),
])
def test_table_score_columns(tmp_path, header, columns):
    lines = ["text\tp_pos\tp_neg"] if header else []
    lines += ["good movie\t0.7\t0.3", "bad food\t0.05\t0.95", "broken\tn/a\t0.5", "sum\t0.7\t0.7", "x\t0.5"]
    source = tmp_path / "train.tsv"
    source.write_text("\n".join(lines) + "\n", encoding="utf8")
    report = convert(source, tmp_path / "train.spacy", ReaderSpec(format="tsv", score_cols=columns, header=header))
    offset = 1 if header else 0
    assert report.rows_read == 5 and report.rows_written == 2
    reasons = {r.line_no - offset: r.reason for r in report.rejected}
    assert "'n/a', not a number" in reasons[3] and "sum to 1.4" in reasons[4] and "column" in reasons[5]
    cats = [doc.cats for doc in docs_of(tmp_path / "train.spacy")]
    assert cats == [pytest.approx({"POS": 0.7, "NEG": 0.3}), pytest.approx({"POS": 0.05, "NEG": 0.95})]


def test_score_columns_are_for_tables():
    with pytest.raises(ValueError, match="tsv/csv"):
        ReaderSpec(format="jsonl", score_cols={"POS": 1})


def test_corpus_reader_yields_soft_cats(tmp_path):
    source = write_jsonl(tmp_path / "train.jsonl", [*GOOD, '{"text": "bad", "cats": {"POS": 0.9, "NEG": 0.9}}'])
    corpus = create_labelled_text_corpus(source, format="jsonl")
    examples = list(corpus(spacy.blank("en")))
    assert len(examples) == 4
    assert examples[1].reference.cats == pytest.approx({"POS": 0.1, "NEG": 0.9})


def test_corpus_reader_score_columns(tmp_path):
    source = tmp_path / "train.csv"
    source.write_text("text,a,b\nhello world,0.4,0.6\n", encoding="utf8")
    corpus = create_labelled_text_corpus(source, format="csv", score_cols={"A": "a", "B": "b"})
    (example,) = corpus(spacy.blank("en"))
    assert example.reference.cats == pytest.approx({"A": 0.4, "B": 0.6})


def test_convert_command_score_columns(tmp_path):
    source = tmp_path / "train.tsv"
    source.write_text("text\tpos\tneg\ngood movie\t0.9\t0.1\nbad food\t0.2\t0.8\n", encoding="utf8")
    out = tmp_path / "train.spacy"
    result = runner.invoke(app, ["convert", str(source), str(out), "--score-col", "POS=pos", "--score-col", "NEG=neg"])
    assert result.exit_code == 0, result.output
    assert docs_of(out)[0].cats == pytest.approx({"POS": 0.9, "NEG": 0.1})
    bad = runner.invoke(app, ["convert", str(source), str(out), "--score-col", "POS"])
    assert bad.exit_code != 0 and "LABEL=COLUMN" in bad.output


def test_reader_and_components_share_the_sum_tolerance():
    assert SOFT_SUM_TOLERANCE == COMPONENT_TOLERANCE


@pytest.mark.parametrize("records,multi", [
    ([{"text": "a b", "cats": {"POS": 0.7, "NEG": 0.3}}, {"text": "c d", "label": "POS"}], False),
    ([{"text": "a b", "cats": {"POS": 0.7, "NEG": 0.7}}, {"text": "c d", "label": "POS"}], True),
])
def test_init_config_survey_tells_exclusive_soft_labels_from_multilabel(tmp_path, records, multi):
    from spacy_cls.data.init_config import survey

    source = write_jsonl(tmp_path / "train.jsonl", records)
    assert survey(source, ReaderSpec(format="jsonl")).multi_label is multi
