"""What the conversion report says about suspicious rows: labels used once, why a row
has too many columns, and the raw record of every rejected row."""
import json

import pytest
import spacy

from spacy_cls.data.convert import convert, report_path_for
from spacy_cls.data.readers import ReaderSpec, read_rows


@pytest.fixture(scope="module")
def nlp_en():
    return spacy.blank("en")


def test_a_label_on_a_single_row_is_flagged(tmp_path, nlp_en):
    rows = ["good\tpositive", "bad\tnegative", "fine\tpositive", "awful\tnegative", "nice\tpostive"]
    src = tmp_path / "a.tsv"
    src.write_text("\n".join(rows) + "\n", encoding="utf-8")
    report = convert(src, tmp_path / "a.spacy", ReaderSpec(header=False), nlp=nlp_en)
    assert report.single_row_labels == {"postive": 5}
    assert any("'postive' is on one row only (line 5): a typo?" in w for w in report.warnings)
    assert "'postive' is on one row only" in report.summary()
    saved = json.loads(report_path_for(tmp_path / "a.spacy").read_text(encoding="utf-8"))
    assert saved["single_row_labels"] == {"postive": 5}


def test_no_flag_when_no_label_repeats(tmp_path, nlp_en):
    src = tmp_path / "a.tsv"
    src.write_text("a\tX\nb\tY\n", encoding="utf-8")
    report = convert(src, tmp_path / "a.spacy", ReaderSpec(header=False), nlp=nlp_en)
    assert report.single_row_labels == {} and not any("one row only" in w for w in report.warnings)


def test_multilabel_single_row_labels(tmp_path, nlp_en):
    src = tmp_path / "a.tsv"
    src.write_text("a\tX,Y\nb\tX\nc\tX,Z\n", encoding="utf-8")
    report = convert(src, tmp_path / "a.spacy", ReaderSpec(header=False, label_sep=","), nlp=nlp_en,
                     exclusive=False)
    assert report.single_row_labels == {"Y": 1, "Z": 3}


def test_too_many_columns_with_quoting_on_blames_the_unquoted_delimiter(tmp_path):
    src = tmp_path / "a.csv"
    src.write_text('text,label\n"fine, quoted",pos\nnot quoted, oops,neg\nok,pos\n', encoding="utf-8")
    records = list(read_rows(src, ReaderSpec(format="csv")))
    bad = records[1]
    assert bad.line_no == 3 and bad.reason.startswith("wrong column count: 3 columns instead of 2")
    assert "',' inside the text" in bad.reason and "double quotes" in bad.reason
    assert "merged" not in bad.reason and "bare quote" not in bad.reason
    assert bad.raw == "not quoted, oops,neg"


def test_too_many_columns_with_quoting_off(tmp_path):
    src = tmp_path / "a.tsv"
    src.write_text("text\tlabel\na\ttab\tpos\nok\tneg\n", encoding="utf-8")
    [bad, _] = list(read_rows(src, ReaderSpec()))
    assert "quoting is off, so a tab inside the text splits it" in bad.reason and "--quoting" in bad.reason


def test_merged_lines_get_the_quote_hint(tmp_path):
    src = tmp_path / "a.csv"
    src.write_text('text,label\n"opened here,pos\nclosed",neg,x\nok,pos\n', encoding="utf-8")
    records = list(read_rows(src, ReaderSpec(format="csv")))
    bad = records[0]
    assert bad.line_no == 2 and "read as one record" in bad.reason and "--no-quoting" in bad.reason
    assert bad.raw == '"opened here,pos\nclosed",neg,x'


def test_rejected_raw_is_the_raw_line(tmp_path, nlp_en):
    src = tmp_path / "a.csv"
    src.write_text('text,label\n"a ""quoted"" text",X\n"two, labels",X;Y\nplain,X\n"b",Z\n', encoding="utf-8")
    report = convert(src, tmp_path / "a.spacy", ReaderSpec(format="csv", label_sep=";"), nlp=nlp_en,
                     labels=["X", "Y"])
    raws = {r.line_no: r.raw for r in report.rejected}
    assert raws == {3: '"two, labels",X;Y', 5: '"b",Z'}
    saved = json.loads(report_path_for(tmp_path / "a.spacy").read_text(encoding="utf-8"))
    assert {r["line_no"]: r["raw"] for r in saved["rejected"]} == raws


def test_rejected_raw_of_a_csv_error_is_the_line(tmp_path):
    src = tmp_path / "a.csv"
    src.write_text('a\rb,X\nok,X\n', encoding="utf-8")  # a CR in an unquoted CSV field
    records = list(read_rows(src, ReaderSpec(format="csv", header=False)))
    assert records[0].line_no == 1 and records[0].raw == "a\rb,X"
