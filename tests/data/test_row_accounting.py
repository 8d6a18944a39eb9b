"""Every record read is written or rejected with its line number and reason, in the
converter and in the corpus reader that `spacy train` uses: hostile texts, lengths,
header guesses, line endings, JSON labels and encodings."""
import logging
import tempfile
from pathlib import Path
from typing import Union

import pytest
import spacy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spacy.tokens import DocBin

from spacy_cls.data.convert import convert
from spacy_cls.data.readers import (
    ReaderSpec,
    Rejected,
    Row,
    create_labelled_text_corpus,
    detect_header,
    read_rows,
    split_records,
)


@pytest.fixture(scope="module")
def nlp_en():
    return spacy.blank("en")


def write(path: Path, content: Union[str, bytes]) -> Path:
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def texts_in(path: Path) -> list:
    return [doc.text for doc in DocBin().from_disk(path).get_docs(spacy.blank("en").vocab)]


def corpus_texts(path: Path, nlp=None, **options) -> list:
    nlp = nlp or spacy.blank("en")
    return [eg.reference.text for eg in create_labelled_text_corpus(path, **options)(nlp)]


# --- texts the writer cannot store ------------------------------------------------


def test_lone_surrogate_rejects_its_row_only(tmp_path, nlp_en):
    src = write(tmp_path / "a.jsonl", '{"text": "good", "label": "A"}\n{"text": "bad \\ud800", "label": "B"}\n'
                                      '{"text": "fine", "label": "B"}\n')
    report = convert(src, tmp_path / "a.spacy", ReaderSpec(format="jsonl"), nlp=nlp_en)
    assert texts_in(tmp_path / "a.spacy") == ["good", "fine"]
    [bad] = report.rejected
    assert bad.line_no == 2 and "lone surrogate" in bad.reason and "character 5" in bad.reason
    assert bad.raw == '{"text": "bad \\ud800", "label": "B"}'


def test_lone_surrogate_in_a_label_is_rejected(tmp_path, nlp_en):
    src = write(tmp_path / "a.jsonl", '{"text": "a", "label": "A\\udfff"}\n{"text": "b", "label": "B"}\n')
    report = convert(src, tmp_path / "a.spacy", ReaderSpec(format="jsonl"), nlp=nlp_en)
    assert report.rows_written == 1 and report.rejected[0].line_no == 1
    assert "surrogate" in report.rejected[0].reason


def test_surrogates_decoded_from_the_file_are_rejected(tmp_path, nlp_en):
    src = write(tmp_path / "a.tsv", b"ok\tA\nbad \\ud800 here\tA\n")
    report = convert(src, tmp_path / "a.spacy", ReaderSpec(encoding="raw_unicode_escape", header=False), nlp=nlp_en)
    assert report.rows_written == 1 and [r.line_no for r in report.rejected] == [2]


def test_text_over_max_length_is_rejected_with_its_line(tmp_path, nlp_en):
    long_text = "a " * 500_001  # 1,000,002 characters: over spaCy's default nlp.max_length
    src = write(tmp_path / "a.tsv", f"short\tA\n{long_text}\tB\nend\tA\n")
    report = convert(src, tmp_path / "a.spacy", ReaderSpec(header=False), nlp=nlp_en)
    assert texts_in(tmp_path / "a.spacy") == ["short", "end"]
    [bad] = report.rejected
    assert bad.line_no == 2 and "nlp.max_length (1,000,000)" in bad.reason
    assert report.rows_read == 3


def test_max_length_follows_the_pipeline(tmp_path):
    nlp = spacy.blank("en")
    nlp.max_length = 10
    src = write(tmp_path / "a.tsv", "short\tA\nthis one is too long\tB\n")
    report = convert(src, tmp_path / "a.spacy", ReaderSpec(header=False), nlp=nlp)
    assert report.rows_written == 1 and "longer than nlp.max_length (10)" in report.rejected[0].reason


def test_corpus_reader_rejects_long_texts_instead_of_failing(tmp_path, caplog):
    nlp = spacy.blank("en")
    nlp.max_length = 10
    src = write(tmp_path / "a.tsv", "short\tA\nthis one is too long\tB\nok\tB\n")
    with caplog.at_level(logging.WARNING, logger="spacy_cls"):
        assert corpus_texts(src, nlp, header=False) == ["short", "ok"]
    assert "skipped 1 rejected rows of 3" in caplog.text and "line 2: text of 20 characters" in caplog.text


def test_a_tokenizer_that_refuses_a_text_rejects_that_row(tmp_path):
    nlp = spacy.blank("en")
    make_doc = nlp.make_doc

    def picky(text):
        if "boom" in text:
            raise ValueError("cannot tokenize boom")
        return make_doc(text)

    nlp.make_doc = picky
    src = write(tmp_path / "a.tsv", "fine\tA\nboom\tB\nok\tB\n")
    report = convert(src, tmp_path / "a.spacy", ReaderSpec(header=False), nlp=nlp)
    assert report.rows_read == 3 and report.rows_written == 2
    assert report.rejected[0].line_no == 2 and "cannot tokenize boom" in report.rejected[0].reason
    assert report.label_counts == {"A": 1, "B": 1}


# --- the header guess --------------------------------------------------------------


def test_headerless_file_keeps_row_one_when_its_label_is_rare(tmp_path, nlp_en):
    lines = ["a fine film\tSURPRISE"] + [f"movie {i}\t{'POS' if i % 2 else 'NEG'}" for i in range(20)]
    src = write(tmp_path / "a.tsv", "\n".join(lines) + "\n")
    assert not detect_header(src, ReaderSpec())
    report = convert(src, tmp_path / "a.spacy", ReaderSpec(), nlp=nlp_en)
    assert report.rows_read == 21 and report.rows_written == 21 and not report.header
    assert texts_in(tmp_path / "a.spacy")[0] == "a fine film"
    assert corpus_texts(src)[0] == "a fine film"
    assert report.single_row_labels == {"SURPRISE": 1}
    assert any("'SURPRISE' is on one row only (line 1)" in w and "--header" in w for w in report.warnings)


@pytest.mark.parametrize(
    "content",
    [
        "review\tstars\ngood\t1\nbad\t0\n",  # a text column name
        "sentence\tpolarity\ngood\tpos\nbad\tneg\n",  # a label column name
        "t\tkind\ngood\t1\nbad\t0\nmeh\t1\n",  # a word above a column of numbers
    ],
)
def test_header_is_still_found(tmp_path, content):
    src = write(tmp_path / "a.tsv", content)
    assert detect_header(src, ReaderSpec())
    rows, rejected = split_records(read_rows(src, ReaderSpec()))
    assert len(rows) + len(rejected) == content.count("\n") - 1


def test_the_report_shows_the_header_line(tmp_path, nlp_en):
    src = write(tmp_path / "a.tsv", "sentence\tlabel\ngood\tpos\n")
    report = convert(src, tmp_path / "a.spacy", ReaderSpec(), nlp=nlp_en)
    assert report.header_line == "sentence\tlabel"
    assert "header: line 1: 'sentence\\tlabel'" in report.summary()


ROW_CELL = st.one_of(st.text(alphabet=st.sampled_from(list("abc 01,|\"'é漢\r")), max_size=6),
                     st.sampled_from(["label", "text", "sentence", "0", "1"]))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(ROW_CELL, min_size=1, max_size=4), max_size=8),
       st.sampled_from(["tsv", "csv"]), st.sampled_from([None, "|"]),
       st.sampled_from(["auto", True, False]), st.booleans())
def test_read_is_written_plus_rejected_for_converter_and_corpus(nlp_en, table, fmt, delimiter, header, exclusive):
    """For any table, header mode and delimiter: the converter's counts add up, the
    corpus reader yields what the converter writes, and without quoting every line but
    the header is a record."""
    sep = delimiter or ("\t" if fmt == "tsv" else ",")
    content = "".join(sep.join(cells) + "\n" for cells in table)
    spec = ReaderSpec(format=fmt, header=header, delimiter=delimiter, quoting=False,
                      label_sep=None if exclusive else ",")
    with tempfile.TemporaryDirectory() as tmp:
        src = write(Path(tmp) / "a.txt", content)
        report = convert(src, Path(tmp) / "a.spacy", spec, nlp=nlp_en, exclusive=exclusive)
        written = texts_in(Path(tmp) / "a.spacy")
        yielded = corpus_texts(src, nlp_en, format=fmt, header=header, delimiter=delimiter, quoting=False,
                               label_sep=None if exclusive else ",", exclusive=exclusive)
    assert report.rows_written + report.rows_rejected == report.rows_read
    assert report.rows_read + report.header == report.physical_lines
    assert report.header == (report.header_line is not None)
    assert yielded == written and len(written) == report.rows_written


# --- line endings, JSON labels, encodings -------------------------------------------------


def test_cr_only_line_endings_are_lines(tmp_path, nlp_en):
    src = write(tmp_path / "a.tsv", b"good\tPOS\rbad\tNEG\rfine\tPOS\r")
    assert read_rows(src, ReaderSpec(header=False)) and list(read_rows(src, ReaderSpec(header=False))) == [
        Row(1, "good", ("POS",)), Row(2, "bad", ("NEG",)), Row(3, "fine", ("POS",))
    ]
    report = convert(src, tmp_path / "a.spacy", ReaderSpec(header=False), nlp=nlp_en)
    assert report.physical_lines == 3 and report.rows_written == 3
    assert any("CR (classic Mac) line endings" in w for w in report.warnings)


def test_a_carriage_return_in_a_label_is_rejected_with_the_reason(tmp_path):
    src = write(tmp_path / "a.tsv", b"good\tPOS\rbad\nfine\tPOS\n")  # mixed line ends
    records = list(read_rows(src, ReaderSpec(header=False)))
    assert [type(r) for r in records] == [Rejected, Row]
    assert "'\\r'" in records[0].reason and "line endings" in records[0].reason
    assert records[0].raw == "good\tPOS\rbad"


def test_a_carriage_return_inside_a_text_stays_text(tmp_path):
    src = write(tmp_path / "a.tsv", b"two\rparts\tPOS\r\nnext\tNEG\r\n")
    assert [r.text for r in read_rows(src, ReaderSpec(header=False))] == ["two\rparts", "next"]


@pytest.mark.parametrize(
    "label, reason",
    [("NaN", "not a finite number"), ("Infinity", "not a finite number"), ("1e999", "not a finite number"),
     ("-Infinity", "not a finite number"), ("true", "JSON boolean"), ("false", "JSON boolean"),
     ("[true, \"A\"]", "JSON boolean"), ("{\"a\": [1]}", "not a number from 0 to 1"), ("[{\"a\": 1}]", "not a string or number"), ("null", "missing label")],
)
def test_json_labels_that_are_not_names_are_rejected(tmp_path, label, reason):
    src = write(tmp_path / "a.jsonl", f'{{"text": "t", "label": {label}}}\n')
    [record] = read_rows(src, ReaderSpec(format="jsonl"))
    assert isinstance(record, Rejected) and reason in record.reason, record


@pytest.mark.parametrize("label, name", [("1", "1"), ("1.0", "1"), ("\"NaN\"", "NaN"), ("\"true\"", "true"),
                                         ("-2", "-2"), ("1e3", "1000")])
def test_json_labels_that_are_names(tmp_path, label, name):
    src = write(tmp_path / "a.jsonl", f'{{"text": "t", "label": {label}}}\n')
    assert list(read_rows(src, ReaderSpec(format="jsonl"))) == [Row(1, "t", (name,))]


@pytest.mark.parametrize("encoding, message", [
    ("rot13", "not a text encoding"), ("base64", "not a text encoding"), ("zlib", "not a text encoding"),
    ("no-such-codec", "Unknown encoding"), ("utf-16", "re-encode"), ("utf-32-le", "re-encode"),
    ("cp037", "re-encode"), ("punycode", "re-encode"),
])
def test_encodings_that_cannot_be_read_line_by_line_are_refused(encoding, message):
    with pytest.raises(ValueError, match=message):
        ReaderSpec(encoding=encoding)


def test_utf8_sig_is_accepted(tmp_path):
    src = write(tmp_path / "a.tsv", "\ufeffok\tA\n")
    assert list(read_rows(src, ReaderSpec(header=False, encoding="utf-8-sig"))) == [Row(1, "ok", ("A",))]
