"""Tests for spacy_cls.data.readers: parsing, rejection reasons, the config corpus reader,
and the row counts of the real data sets (skipped when the data folder is missing)."""
import logging
from collections import Counter
from pathlib import Path
from typing import List, Union

import pytest
import spacy
from thinc.api import Config

from spacy_cls.data.readers import (
    ReaderSpec,
    Rejected,
    Row,
    cats_for,
    check_labels,
    detect_header,
    infer_format,
    read_rows,
    resolve_label_set,
    split_records,
)

from conftest import SHARED_DATA as DATA, needs_datasets, require_datasets


def write(tmp_path: Path, name: str, content: Union[str, bytes]) -> Path:
    path = tmp_path / name
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


def read(path: Path, **spec) -> List[Union[Row, Rejected]]:
    return list(read_rows(path, ReaderSpec(**spec)))


def rows_of(records) -> List[Row]:
    return [r for r in records if isinstance(r, Row)]


def rejected_of(records) -> List[Rejected]:
    return [r for r in records if isinstance(r, Rejected)]


# --- table formats -----------------------------------------------------------


def test_tsv_header_columns_by_name(tmp_path):
    path = write(tmp_path, "a.tsv", "sentence\tlabel\ngood film \t1\nbad film \t0\n")
    records = read(path, text_col="sentence", label_col="label")
    assert records == [Row(2, "good film", ("1",)), Row(3, "bad film", ("0",))]


def test_tsv_columns_by_index_label_first(tmp_path):
    path = write(tmp_path, "a.tsv", "1\tgood\n0\tbad\n")
    records = read(path, text_col=1, label_col=0, header=False)
    assert [(r.line_no, r.text, r.labels) for r in records] == [(1, "good", ("1",)), (2, "bad", ("0",))]


def test_column_index_given_as_digit_string(tmp_path):
    path = write(tmp_path, "a.tsv", "1\tgood\n")
    assert read(path, text_col="1", label_col="0", header=False) == [Row(1, "good", ("1",))]


@pytest.mark.parametrize(
    "content,expected",
    [
        ("sentence\tlabel\na\t0\nb\t1\n", True),  # header word in the label column
        ("a\t0\nb\t1\nc\t0\n", False),  # numeric labels
        ("t\ttopic\na\tnews_car\nb\tnews_edu\n", True),  # first label never seen again
        ("a\tnews_car\nb\tnews_edu\nc\tnews_car\n", False),
    ],
)
def test_header_auto_detection(tmp_path, content, expected):
    path = write(tmp_path, "a.tsv", content)
    assert detect_header(path, ReaderSpec()) is expected
    n_data_lines = content.count("\n") - (1 if expected else 0)
    assert len(rows_of(read(path))) == n_data_lines


def test_header_auto_with_blank_first_line(tmp_path):
    path = write(tmp_path, "a.tsv", "\ngood\t1\n")
    records = read(path)
    assert records == [Rejected(1, "blank line", ""), Row(2, "good", ("1",))]


def test_header_auto_uses_label_names(tmp_path):
    names = write(tmp_path, "names.txt", "neg\npos\n")
    path = write(tmp_path, "a.tsv", "text\tlabel_ids\nok\t1\n")
    assert detect_header(path, ReaderSpec(label_names=names))
    no_header = write(tmp_path, "b.tsv", "ok\t1\nbad\t0\n")
    assert not detect_header(no_header, ReaderSpec(label_names=names))


def test_explicit_header_false_keeps_first_line(tmp_path):
    path = write(tmp_path, "a.tsv", "sentence\tlabel\na\t0\n")
    assert rows_of(read(path, header=False))[0] == Row(1, "sentence", ("label",))


def test_unknown_column_name_raises_with_header_names(tmp_path):
    path = write(tmp_path, "a.tsv", "sentence\tlabel\na\t0\n")
    with pytest.raises(ValueError, match=r"'text' is not in the header \['sentence', 'label'\]"):
        read_rows(path, ReaderSpec(text_col="text"))


def test_column_name_without_header_raises(tmp_path):
    path = write(tmp_path, "a.tsv", "a\t0\n")
    with pytest.raises(ValueError, match="give a 0-based index"):
        read_rows(path, ReaderSpec(text_col="sentence", header=False))


def test_tsv_bare_quotes_are_text_by_default(tmp_path):
    content = 'label\ttext_a\n1\t"great hotel\n0\tbad "room" here"\n1\tfine\n'
    path = write(tmp_path, "a.tsv", content)
    records = read(path, text_col="text_a", label_col="label")
    assert [r.text for r in records] == ['"great hotel', 'bad "room" here"', "fine"]
    merged = read(path, text_col="text_a", label_col="label", quoting=True)
    assert len(merged) < 3  # what default CSV quoting does to such files


def test_csv_quoted_fields_span_lines(tmp_path):
    content = 'text,label\n"hello, world",pos\n"two\nlines ""quoted""",neg\nplain,pos\n'
    path = write(tmp_path, "a.csv", content)
    records = read(path, format="csv", text_col="text", label_col="label")
    assert records == [
        Row(2, "hello, world", ("pos",)),
        Row(3, 'two\nlines "quoted"', ("neg",)),
        Row(5, "plain", ("pos",)),
    ]


def test_csv_without_quoting_rejects_extra_columns(tmp_path):
    path = write(tmp_path, "a.csv", "text,label\na b,pos\na, b,neg\n")
    records = read(path, format="csv", header=True, quoting=False)
    assert rows_of(records) == [Row(2, "a b", ("pos",))]
    [bad] = rejected_of(records)
    assert bad.line_no == 3 and "wrong column count: 3 columns instead of 2" in bad.reason


def test_custom_delimiter(tmp_path):
    path = write(tmp_path, "a.tsv", "good|1\nbad|0\n")
    assert [r.text for r in read(path, delimiter="|", header=False)] == ["good", "bad"]


def test_text_is_stripped_and_crlf_handled(tmp_path):
    path = write(tmp_path, "a.tsv", "  padded text \t 1 \r\nnext\t0\r\n")
    assert read(path, header=False) == [Row(1, "padded text", ("1",)), Row(2, "next", ("0",))]


def test_utf8_bom_is_ignored(tmp_path):
    path = write(tmp_path, "a.tsv", "\ufefftext\tlabel\nok\tpos\n")
    assert read(path, text_col="text", label_col="label") == [Row(2, "ok", ("pos",))]


# --- encodings ---------------------------------------------------------------


def test_latin1_encoding(tmp_path):
    path = write(tmp_path, "a.tsv", "café crème\t1\nnaïve\t0\n".encode("latin-1"))
    records = read(path, encoding="latin-1", header=False)
    assert [r.text for r in records] == ["café crème", "naïve"]


def test_undecodable_line_is_rejected_and_others_kept(tmp_path):
    path = write(tmp_path, "a.tsv", b"ok\t1\ncaf\xe9\t0\nfine\t1\n")
    records = read(path, header=False)
    assert [r.text for r in rows_of(records)] == ["ok", "fine"]
    [bad] = rejected_of(records)
    assert bad.line_no == 2 and "cannot decode as utf-8" in bad.reason and "--encoding latin-1" in bad.reason
    assert bad.raw == "caf\\xe9\t0"


def test_unsupported_and_unknown_encodings_raise():
    with pytest.raises(ValueError, match="re-encode"):
        ReaderSpec(encoding="utf-16")
    with pytest.raises(ValueError, match="Unknown encoding"):
        ReaderSpec(encoding="no-such-codec")


# --- labels ------------------------------------------------------------------


def test_label_map(tmp_path):
    path = write(tmp_path, "a.tsv", "good\t1\nbad\t0\nodd\t2\n")
    records = read(path, header=False, label_map={0: "NEG", "1": "POS"})
    assert [r.labels for r in records] == [("POS",), ("NEG",), ("2",)]


def test_label_names_and_multilabel_separator(tmp_path):
    names = write(tmp_path, "labels.txt", "anger\njoy\nneutral")  # no final newline
    path = write(tmp_path, "a.tsv", "yay\t1\tid1\nmixed\t0, 1\tid2\nsame twice\t2,2\tid3\n")
    records = read(path, header=False, label_names=names, label_sep=",")
    assert [r.labels for r in records] == [("joy",), ("anger", "joy"), ("neutral",)]


def test_label_names_then_label_map(tmp_path):
    names = write(tmp_path, "labels.txt", "neg\npos\n")
    path = write(tmp_path, "a.tsv", "a\t1\n")
    spec = ReaderSpec(header=False, label_names=names, label_map={"pos": "POSITIVE"})
    assert list(read_rows(path, spec))[0].labels == ("POSITIVE",)
    assert resolve_label_set(spec, []) == ["neg", "POSITIVE"]


def test_unknown_label_id_and_non_integer_are_rejected(tmp_path):
    names = write(tmp_path, "labels.txt", "a\nb\n")
    path = write(tmp_path, "a.tsv", "ok\t1\nbad id\t7\nword\tx\n")
    records = read(path, header=False, label_names=names, label_sep=",")
    assert [r.line_no for r in rows_of(records)] == [1]
    reasons = {r.line_no: r.reason for r in rejected_of(records)}
    assert reasons[2].startswith("unknown label id 7") and "ids 0-1" in reasons[2]
    assert "'x' is not an integer id" in reasons[3]


def test_bad_label_names_file_raises(tmp_path):
    names = write(tmp_path, "labels.txt", "a\n\nb\n")
    path = write(tmp_path, "a.tsv", "ok\t1\n")
    with pytest.raises(ValueError, match="empty lines"):
        read_rows(path, ReaderSpec(label_names=names))


# --- prefixed (TREC) and JSONL -------------------------------------------------


def test_prefixed_coarse_and_fine(tmp_path):
    content = "DESC:manner How did serfdom develop ?\nLOC:other Where is it ?\n"
    path = write(tmp_path, "a.label", content.encode("latin-1"))
    coarse = read(path, format="prefixed", encoding="latin-1")
    fine = read(path, format="prefixed", encoding="latin-1", level="fine")
    assert [r.labels for r in coarse] == [("DESC",), ("LOC",)]
    assert [r.labels for r in fine] == [("DESC:manner",), ("LOC:other",)]
    assert coarse[0].text == "How did serfdom develop ?"


def test_prefixed_rejects_lines_without_prefix_or_text(tmp_path):
    path = write(tmp_path, "a.label", "NOPREFIX some text\nHUM:ind\nNUM:date When ?\n")
    records = read(path, format="prefixed")
    assert rows_of(records) == [Row(3, "When ?", ("NUM",))]
    reasons = {r.line_no: r.reason for r in rejected_of(records)}
    assert "COARSE:fine" in reasons[1] and reasons[2] == "empty text"


def test_jsonl_objects_lists_and_errors(tmp_path):
    content = "\n".join([
        '{"text": "good", "label": "POS"}',
        '{"text": "multi", "label": ["A", "B"]}',
        '{"text": "numeric", "label": 1}',
        '{"text": "no label"}',
        "{not json",
        '{"text": "", "label": "POS"}',
        '["as a list", "NEG"]',
    ]) + "\n"
    path = write(tmp_path, "a.jsonl", content)
    records = read(path, format="jsonl")
    assert [(r.line_no, r.labels) for r in rows_of(records)] == [(1, ("POS",)), (2, ("A", "B")), (3, ("1",))]
    reasons = {r.line_no: r.reason for r in rejected_of(records)}
    assert reasons == {
        4: "missing label field 'label'",
        5: reasons[5],
        6: "empty text",
        7: "expected a JSON object with a text field 'text', got list",
    }
    assert reasons[5].startswith("invalid JSON")
    as_list = read(write(tmp_path, "b.jsonl", '["as a list", "NEG"]\n'), format="jsonl", text_col=0, label_col=1)
    assert as_list == [Row(1, "as a list", ("NEG",))]


def test_jsonl_custom_keys(tmp_path):
    path = write(tmp_path, "a.jsonl", '{"sentence": "hi", "y": 0}\n')
    assert read(path, format="jsonl", text_col="sentence", label_col="y") == [Row(1, "hi", ("0",))]


# --- rejected rows -------------------------------------------------------------


def test_rejected_rows_have_line_numbers_and_reasons(tmp_path):
    content = (
        "text\tlabel\tid\nok\tpos\t1\n \tpos\t2\nno label col\n\n"
        "extra\tpos\t3\t4\nfine\tneg\t5\nempty label\t\t6\n"
    )
    path = write(tmp_path, "a.tsv", content)
    records = read(path, text_col="text", label_col="label")
    assert [r.line_no for r in records] == [2, 3, 4, 5, 6, 7, 8]
    assert [r.line_no for r in rows_of(records)] == [2, 7]
    reasons = {r.line_no: r.reason for r in rejected_of(records)}
    assert reasons[3] == "empty text"
    assert reasons[4].startswith("missing column")
    assert reasons[5] == "blank line"
    assert reasons[6].startswith("wrong column count: 4 columns instead of 3")
    assert reasons[8] == "empty label"
    assert next(r for r in records if r.line_no == 6).raw == "extra\tpos\t3\t4"


def test_check_labels_exclusive_and_allowed():
    records = [Row(1, "a", ("x",)), Row(2, "b", ("x", "y")), Row(3, "c", ("z",))]
    out = list(check_labels(records, exclusive=True, allowed=["x", "y"]))
    assert out[0] == records[0]
    assert isinstance(out[1], Rejected) and "exclusive" in out[1].reason
    assert isinstance(out[2], Rejected) and "'z' is not in the label set" in out[2].reason
    assert list(check_labels(records[:2], exclusive=False)) == records[:2]


def test_cats_for_sets_every_label():
    assert cats_for(["b"], ["a", "b", "c"]) == {"a": 0.0, "b": 1.0, "c": 0.0}
    assert cats_for(["a", "c"], ["a", "b", "c"]) == {"a": 1.0, "b": 0.0, "c": 1.0}


def test_spec_validation_and_format_inference(tmp_path):
    with pytest.raises(ValueError, match="Unknown format"):
        ReaderSpec(format="xml")
    with pytest.raises(ValueError, match="header must be"):
        ReaderSpec(header="yes")
    with pytest.raises(FileNotFoundError, match="Input file not found"):
        read_rows(tmp_path / "missing.tsv", ReaderSpec())
    assert infer_format("x/train.TSV") == "tsv" and infer_format("trec.label") == "prefixed"
    with pytest.raises(ValueError, match="--format"):
        infer_format("data.txt")


# --- corpus reader for configs ---------------------------------------------------

CORPUS_CONFIG = """
[corpora]

[corpora.train]
@readers = "spacy_cls.LabelledTextCorpus.v1"
path = "{path}"
format = "tsv"
text_col = "sentence"
label_col = "label"
label_map = {{"0": "NEG", "1": "POS"}}
labels = ["NEG", "POS", "MIXED"]
limit = {limit}
"""


def load_corpus(path: Path, limit: int = 0):
    config = Config().from_str(CORPUS_CONFIG.format(path=path, limit=limit))
    return spacy.util.registry.resolve(config)["corpora"]["train"]


def test_corpus_reader_from_config(tmp_path, caplog):
    path = write(tmp_path, "a.tsv", "sentence\tlabel\ngreat fun\t1\nawful\t0\n\t1\nboring\t7\nnice\t1\n")
    corpus = load_corpus(path)
    nlp = spacy.blank("en")
    with caplog.at_level(logging.WARNING, logger="spacy_cls"):
        examples = list(corpus(nlp))
    assert [eg.reference.text for eg in examples] == ["great fun", "awful", "nice"]
    assert examples[0].reference.cats == {"NEG": 0.0, "POS": 1.0, "MIXED": 0.0}
    assert "skipped 2 rejected rows of 5" in caplog.text and "line 4: empty text" in caplog.text
    assert "line 5: label '7' is not in the label set" in caplog.text
    assert len(list(corpus(nlp))) == 3  # a second epoch reads the same rows, with no new warning
    assert caplog.text.count("skipped") == 1
    assert len(list(load_corpus(path, limit=2)(nlp))) == 2


def test_corpus_reader_trains_a_textcat(tmp_path):
    lines = ["sentence\tlabel"] + [f"good movie {i}\t1\nbad movie {i}\t0" for i in range(5)]
    corpus = load_corpus(write(tmp_path, "a.tsv", "\n".join(lines) + "\n"))
    nlp = spacy.blank("en")
    textcat = nlp.add_pipe("textcat")
    nlp.initialize(lambda: corpus(nlp))
    assert set(textcat.labels) == {"NEG", "POS", "MIXED"}
    losses = nlp.update(list(corpus(nlp)))
    assert losses["textcat"] > 0


def test_docs_config_snippet_resolves(tmp_path):
    docs = (Path(__file__).resolve().parents[2] / "docs" / "convert.md").read_text(encoding="utf-8")
    snippet = next(block.split("```")[0] for block in docs.split("```ini\n")[1:]
                   if "LabelledTextCorpus" in block.split("```")[0])
    train = write(tmp_path, "train.tsv", "sentence\tlabel\nfine film \t1\n")
    dev = write(tmp_path, "dev.tsv", "sentence\tlabel\ndull \t0\n")
    config = Config().from_str(snippet, overrides={"paths.train": str(train), "paths.dev": str(dev)})
    corpora = spacy.util.registry.resolve(config)["corpora"]
    nlp = spacy.blank("en")
    [train_eg] = list(corpora["train"](nlp))
    [dev_eg] = list(corpora["dev"](nlp))
    assert train_eg.reference.cats == {"negative": 0.0, "positive": 1.0}
    assert dev_eg.reference.cats == {"negative": 1.0, "positive": 0.0}


# --- real data sets (counts from the data folder's README) -----------------------

REAL = {
    # name: (file, spec kwargs, rows, number of distinct labels)
    "sst2-train": ("sst2/train.tsv", dict(text_col="sentence", label_col="label"), 67349, 2),
    "sst2-dev": ("sst2/dev.tsv", dict(text_col="sentence", label_col="label"), 872, 2),
    "trec-coarse": ("trec/train_5500.label", dict(format="prefixed", encoding="latin-1"), 5452, 6),
    "trec-fine": ("trec/train_5500.label", dict(format="prefixed", encoding="latin-1", level="fine"), 5452, 50),
    "goemotions-train": ("goemotions/train.tsv", dict(header=False, label_sep=","), 43410, 28),
    "goemotions-dev": ("goemotions/dev.tsv", dict(header=False, label_sep=","), 5426, 28),
    "chnsenticorp-train": ("chnsenticorp/train.tsv", dict(text_col="text_a", label_col="label"), 9600, 2),
    "chnsenticorp-dev": ("chnsenticorp/dev.tsv", dict(text_col="text_a", label_col="label"), 1200, 2),
    "tnews-train": ("tnews/train.tsv", dict(header=False), 53360, 15),
    "tnews-dev": ("tnews/dev.tsv", dict(header=False), 10000, 15),
}


@pytest.mark.parametrize("name", list(REAL))
def test_real_data_counts(name):
    require_datasets(name.split("-")[0])
    file, kwargs, n_rows, n_labels = REAL[name]
    if name.startswith("goemotions"):
        kwargs = dict(kwargs, label_names=DATA / "goemotions" / "labels.txt")
    rows, rejected = split_records(read_rows(DATA / file, ReaderSpec(**kwargs)))
    assert rejected == []
    assert len(rows) == n_rows
    assert len({label for row in rows for label in row.labels}) == n_labels
    assert all(row.text and row.text == row.text.strip() for row in rows)


@needs_datasets("tnews", "goemotions")
def test_real_data_label_sets():
    names = (DATA / "tnews" / "labels.txt").read_text(encoding="utf-8").split()
    rows, _ = split_records(read_rows(DATA / "tnews" / "train.tsv", ReaderSpec(header=False)))
    assert {label for row in rows for label in row.labels} == set(names)
    spec = ReaderSpec(header=False, label_sep=",", label_names=DATA / "goemotions" / "labels.txt")
    rows, _ = split_records(read_rows(DATA / "goemotions" / "dev.tsv", spec))
    assert resolve_label_set(spec, rows)[-1] == "neutral"
    assert Counter(len(row.labels) for row in rows)[2] > 0  # some rows have two labels


@needs_datasets("chnsenticorp")
def test_real_data_chnsenticorp_default_csv_quoting_merges_rows():
    spec = ReaderSpec(text_col="text_a", label_col="label", quoting=True)
    rows, rejected = split_records(read_rows(DATA / "chnsenticorp" / "train.tsv", spec))
    assert len(rows) + len(rejected) == 9146  # why TSV defaults to no quoting


@needs_datasets("trec")
def test_real_data_trec_as_utf8_rejects_only_latin1_lines():
    rows, rejected = split_records(read_rows(DATA / "trec" / "train_5500.label", ReaderSpec(format="prefixed")))
    assert len(rows) + len(rejected) == 5452
    assert rejected and all("cannot decode as utf-8" in r.reason for r in rejected)
