"""Tests for spacy_cls.data.convert and the `python -m spacy_cls convert` command."""
import json
import re
import shlex
import tempfile
from pathlib import Path
from typing import List, Union

import pytest
import spacy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spacy.tokens import DocBin
from typer.testing import CliRunner

from spacy_cls.cli import app
from spacy_cls.cli.convert import parse_label_map
from spacy_cls.data.convert import ConversionReport, convert, report_path_for
from spacy_cls.data.readers import ReaderSpec, Row, read_rows

from conftest import SHARED_DATA as DATA, require_datasets

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


@pytest.fixture(scope="module")
def nlp_en():
    return spacy.blank("en")


def write(path: Path, content: Union[str, bytes]) -> Path:
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


VOCABS = {}


def load_docs(path: Path, lang: str = "en") -> list:
    if lang not in VOCABS:
        VOCABS[lang] = spacy.blank(lang).vocab
    return list(DocBin().from_disk(path).get_docs(VOCABS[lang]))


def check_invariant(report: ConversionReport) -> None:
    assert report.rows_written + report.rows_rejected == report.rows_read


# --- convert() -------------------------------------------------------------------


def test_exclusive_round_trip(tmp_path, nlp_en):
    src = write(tmp_path / "train.tsv", "sentence\tlabel\ngood film \t1\nbad film \t0\nfun\t1\n")
    spec = ReaderSpec(text_col="sentence", label_col="label", label_map={"0": "NEG", "1": "POS"})
    report = convert(src, tmp_path / "out" / "train.spacy", spec, nlp=nlp_en)
    docs = load_docs(tmp_path / "out" / "train.spacy")
    assert [d.text for d in docs] == ["good film", "bad film", "fun"]
    assert [d.cats for d in docs] == [
        {"NEG": 0.0, "POS": 1.0}, {"NEG": 1.0, "POS": 0.0}, {"NEG": 0.0, "POS": 1.0}
    ]
    assert (report.rows_read, report.rows_written, report.rejected) == (3, 3, [])
    assert report.labels == ["NEG", "POS"] and report.label_counts == {"NEG": 1, "POS": 2}
    assert report.header is True and report.exclusive is True


def test_multilabel_round_trip_uses_all_label_names(tmp_path, nlp_en):
    names = write(tmp_path / "labels.txt", "anger\njoy\nsurprise\n")
    src = write(tmp_path / "train.tsv", "wow\t1,2\tc1\nugh\t0\tc2\n")
    spec = ReaderSpec(header=False, label_names=names, label_sep=",")
    report = convert(src, tmp_path / "train.spacy", spec, nlp=nlp_en, exclusive=False)
    docs = load_docs(tmp_path / "train.spacy")
    assert docs[0].cats == {"anger": 0.0, "joy": 1.0, "surprise": 1.0}
    assert docs[1].cats == {"anger": 1.0, "joy": 0.0, "surprise": 0.0}
    assert report.label_counts == {"anger": 1, "joy": 1, "surprise": 1}


def test_exclusive_mode_rejects_rows_with_several_labels(tmp_path, nlp_en):
    src = write(tmp_path / "a.tsv", "one\tA\ntwo\tA,B\n")
    report = convert(src, tmp_path / "a.spacy", ReaderSpec(header=False, label_sep=","), nlp=nlp_en)
    assert report.rows_written == 1
    assert report.rejected[0].line_no == 2 and "exclusive" in report.rejected[0].reason
    check_invariant(report)


def test_rejected_rows_are_reported_with_line_numbers(tmp_path, nlp_en):
    src = write(tmp_path / "a.tsv", "text\tlabel\nok\tpos\n\tpos\nmissing\nfine\tneg\n")
    report = convert(src, tmp_path / "a.spacy", ReaderSpec(text_col="text", label_col="label"), nlp=nlp_en)
    assert [(r.line_no, r.reason.split(":")[0]) for r in report.rejected] == [
        (3, "empty text"), (4, "missing column")
    ]
    assert (report.rows_read, report.rows_written, report.physical_lines) == (4, 2, 5)
    check_invariant(report)


def test_report_json_next_to_output(tmp_path, nlp_en):
    src = write(tmp_path / "a.tsv", "ok\tpos\n\tneg\n")
    out = tmp_path / "a.spacy"
    report = convert(src, out, ReaderSpec(header=False), nlp=nlp_en)
    path = report_path_for(out)
    assert path == tmp_path / "a.spacy.report.json" == report.report_path
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["rows_read"] == 2 and data["rows_written"] == 1 and data["rows_rejected"] == 1
    assert data["rejected"] == [{"line_no": 2, "reason": "empty text", "raw": "\tneg"}]
    assert data["label_counts"] == {"pos": 1} and data["dev"] is None


def test_no_report_when_asked(tmp_path, nlp_en):
    src = write(tmp_path / "a.tsv", "ok\tpos\n")
    convert(src, tmp_path / "a.spacy", ReaderSpec(header=False), nlp=nlp_en, write_report=False)
    assert not report_path_for(tmp_path / "a.spacy").exists()


def test_duplicates_and_conflicting_duplicates(tmp_path, nlp_en):
    src = write(tmp_path / "a.tsv", "same\tA\nsame\tA\nsame\tB\nother\tA\nother \tA\nunique\tB\n")
    report = convert(src, tmp_path / "a.spacy", ReaderSpec(header=False), nlp=nlp_en)
    assert report.duplicate_texts == 3  # 2 extra "same", 1 extra "other" (after stripping)
    assert report.conflicting_duplicates == 1
    assert report.rows_written == 6  # duplicates are reported, not removed


def test_dev_overlap_and_dev_label_outside_train_set(tmp_path, nlp_en):
    train = write(tmp_path / "train.tsv", "a\tX\nb\tY\nc\tX\n")
    dev = write(tmp_path / "dev.tsv", "b\tY\nnew\tX\na\tX\nb\tY\nodd\tZ\n")
    report = convert(train, tmp_path / "train.spacy", ReaderSpec(header=False), nlp=nlp_en,
                     dev=(dev, tmp_path / "dev.spacy"))
    assert report.dev is not None
    assert report.shared_with_dev == 2 and report.shared_texts == ["b", "a"]
    assert report.dev.rows_written == 4 and report.dev.duplicate_texts == 1
    assert "'Z' is not in the label set" in report.dev.rejected[0].reason
    assert [d.cats for d in load_docs(tmp_path / "dev.spacy")][1] == {"X": 1.0, "Y": 0.0}
    saved = json.loads(report_path_for(tmp_path / "train.spacy").read_text(encoding="utf-8"))
    assert saved["shared_with_dev"] == 2 and saved["dev"]["rows_rejected"] == 1
    assert report_path_for(tmp_path / "dev.spacy").exists()
    check_invariant(report)
    check_invariant(report.dev)


def test_explicit_labels_reject_other_labels_and_set_cats(tmp_path, nlp_en):
    src = write(tmp_path / "a.tsv", "a\tX\nb\tW\n")
    report = convert(src, tmp_path / "a.spacy", ReaderSpec(header=False), nlp=nlp_en, labels=["X", "Y"])
    assert report.rows_written == 1 and report.labels == ["X", "Y"]
    assert "labels have no rows: ['Y']" in " ".join(report.warnings)
    assert load_docs(tmp_path / "a.spacy")[0].cats == {"X": 1.0, "Y": 0.0}


def test_dry_run_writes_nothing(tmp_path):
    src = write(tmp_path / "a.tsv", "a\tX\n\tY\n")
    report = convert(src, tmp_path / "a.spacy", ReaderSpec(header=False), dry_run=True,
                     dev=(src, tmp_path / "d.spacy"))
    assert (report.rows_written, report.rows_rejected, report.dev.rows_written) == (1, 1, 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tsv"]
    assert "dry run: nothing written" in report.summary()


def test_output_must_end_with_spacy(tmp_path):
    src = write(tmp_path / "a.tsv", "a\tX\n")
    with pytest.raises(ValueError, match="must end with .spacy"):
        convert(src, tmp_path / "a.docbin", ReaderSpec())


def test_chinese_is_split_into_characters(tmp_path):
    src = write(tmp_path / "a.tsv", "label\ttext_a\n1\t酒店很好\n")
    convert(src, tmp_path / "a.spacy", ReaderSpec(text_col="text_a", label_col="label"), lang="zh")
    [doc] = load_docs(tmp_path / "a.spacy", "zh")
    assert [t.text for t in doc] == ["酒", "店", "很", "好"]


def test_jsonl_and_csv_inputs(tmp_path, nlp_en):
    jsonl = write(tmp_path / "a.jsonl", '{"text": "hi", "label": "A"}\n{"text": "yo", "label": "B"}\n')
    assert convert(jsonl, tmp_path / "j.spacy", ReaderSpec(format="jsonl"), nlp=nlp_en).rows_written == 2
    csv_file = write(tmp_path / "a.csv", 'text,label\n"multi\nline",A\nsimple,B\n')
    report = convert(csv_file, tmp_path / "c.spacy", ReaderSpec(format="csv", header=True), nlp=nlp_en)
    assert report.rows_written == 2
    assert any("span lines" in w for w in report.warnings)


def test_summary_mentions_counts_and_rejections(tmp_path, nlp_en):
    train = write(tmp_path / "train.tsv", "a\tX\n\tY\nb\tY\n")
    dev = write(tmp_path / "dev.tsv", "a\tX\n")
    report = convert(train, tmp_path / "t.spacy", ReaderSpec(header=False), nlp=nlp_en,
                     dev=(dev, tmp_path / "d.spacy"))
    text = report.summary()
    assert "read 3  written 2  rejected 1" in text
    assert "line 2: empty text" in text
    assert "X 1 (50.0%)" in text
    assert ": 1  e.g. 'a'" in text
    assert "t.spacy.report.json" in text


# --- invariant: property tests ---------------------------------------------------

LINE_BYTES = st.binary(max_size=30).map(lambda b: b.replace(b"\n", b""))
CELL = st.text(alphabet=st.sampled_from(list("ab \t\"',é漢\r") + ["x", "0", "1"]), max_size=8)


def physical_lines(content: bytes) -> int:
    """Lines end at LF (or CRLF); a file with CRs and no LF has classic Mac line ends."""
    end = b"\n" if b"\n" in content or b"\r" not in content else b"\r"
    return len(content.split(end)) - (1 if content.endswith(end) else 0) if content else 0


@settings(max_examples=150, deadline=None)
@given(st.lists(LINE_BYTES, max_size=12), st.sampled_from(["tsv", "csv", "prefixed", "jsonl"]),
       st.booleans(), st.sampled_from(["utf-8", "latin-1", "gb18030", "utf-7", "raw_unicode_escape"]))
def test_every_line_gives_exactly_one_record(lines: List[bytes], fmt: str, final_newline: bool, encoding: str):
    content = b"\n".join(lines) + (b"\n" if final_newline and lines else b"")
    with tempfile.TemporaryDirectory() as tmp:
        path = write(Path(tmp) / "a.txt", content)
        spec = ReaderSpec(format=fmt, header=False, quoting=False, encoding=encoding)
        try:
            records = list(read_rows(path, spec))
        except ValueError as e:  # the whole file refused, with the reason
            assert "not a text file" in str(e) or "DocBin" in str(e) or "compressed" in str(e)
            return
    assert [r.line_no for r in records] == list(range(1, physical_lines(content) + 1))
    for record in records:
        if isinstance(record, Row):
            assert record.text and record.text.encode("utf-8")
            assert all(label.encode("utf-8") and "\r" not in label for label in record.labels)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(CELL, CELL), max_size=10), st.sampled_from(["tsv", "csv"]),
       st.sampled_from([None, True]), st.booleans())
def test_written_plus_rejected_is_read(nlp_en, rows, fmt, quoting, exclusive):
    sep = "\t" if fmt == "tsv" else ","
    content = "".join(f"{text}{sep}{label}\n" for text, label in rows)
    with tempfile.TemporaryDirectory() as tmp:
        src = write(Path(tmp) / f"a.{fmt}", content)
        spec = ReaderSpec(format=fmt, header=False, quoting=quoting, label_sep=None if exclusive else ",")
        report = convert(src, Path(tmp) / "a.spacy", spec, nlp=nlp_en, exclusive=exclusive,
                         dev=(src, Path(tmp) / "dev.spacy"))
        n_docs = len(load_docs(Path(tmp) / "a.spacy"))
    check_invariant(report)
    check_invariant(report.dev)
    assert n_docs == report.rows_written
    assert report.dev.rows_written == report.rows_written
    assert report.rows_read <= content.count("\n")
    if not (quoting or fmt == "csv"):
        assert report.rows_read == len(rows)


# --- command line ------------------------------------------------------------------


def test_cli_has_convert_command():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0 and "convert" in result.output


def test_cli_convert_with_dev(tmp_path):
    train = write(tmp_path / "train.tsv", "sentence\tlabel\ngood \t1\nbad \t0\n")
    dev = write(tmp_path / "dev.tsv", "sentence\tlabel\ngood \t1\n")
    args = ["convert", str(train), str(tmp_path / "c" / "train.spacy"), "--text-col", "sentence",
            "--label-col", "label", "--label-map", "0=neg,1=pos", "--dev", str(dev), str(tmp_path / "c" / "dev.spacy")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "read 2  written 2  rejected 0" in result.output
    assert "texts in both" in result.output and ": 1  e.g. 'good'" in result.output
    assert load_docs(tmp_path / "c" / "dev.spacy")[0].cats == {"neg": 0.0, "pos": 1.0}


def test_cli_multilabel_defaults_to_comma_and_label_names(tmp_path):
    names = write(tmp_path / "labels.txt", "a\nb\nc\n")
    src = write(tmp_path / "g.tsv", "x\t0,2\tid\ny\t1\tid\n")
    out = tmp_path / "g.spacy"
    args = ["convert", str(src), str(out), "--no-header", "--label-names", str(names), "--multilabel"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert load_docs(out)[0].cats == {"a": 1.0, "b": 0.0, "c": 1.0}


def test_cli_prefixed_latin1_and_labels_option(tmp_path):
    src = write(tmp_path / "q.label", "DESC:def What is café ?\nHUM:ind Who ?\n".encode("latin-1"))
    out = tmp_path / "q.spacy"
    result = runner.invoke(app, ["convert", str(src), str(out), "--encoding", "latin-1", "--level", "fine",
                                 "--labels", "DESC:def,HUM:ind,LOC:city"])
    assert result.exit_code == 0, result.output
    docs = load_docs(out)
    assert docs[0].text == "What is café ?" and set(docs[0].cats) == {"DESC:def", "HUM:ind", "LOC:city"}


def test_cli_strict_fails_on_rejected_rows(tmp_path):
    src = write(tmp_path / "a.tsv", "ok\tA\n\tB\n")
    result = runner.invoke(app, ["convert", str(src), str(tmp_path / "a.spacy"), "--no-header", "--strict"])
    assert result.exit_code == 1
    assert "line 2: empty text" in result.output


def test_cli_bad_option_gives_clear_error(tmp_path):
    src = write(tmp_path / "a.tsv", "sentence\tlabel\nok\t1\n")
    result = runner.invoke(app, ["convert", str(src), str(tmp_path / "a.spacy"), "--text-col", "text"])
    assert result.exit_code == 2
    assert "'text' is not in the header ['sentence', 'label']" in result.output
    result = runner.invoke(app, ["convert", str(tmp_path / "a.txt"), str(tmp_path / "a.spacy")])
    assert result.exit_code == 2 and "--format" in result.output


def test_cli_nothing_written_exits_1(tmp_path):
    src = write(tmp_path / "a.tsv", b"caf\xe9\t1\n")
    result = runner.invoke(app, ["convert", str(src), str(tmp_path / "a.spacy"), "--no-header"])
    assert result.exit_code == 1 and "no rows were written" in result.output


def test_parse_label_map():
    assert parse_label_map(["0=NEG,1=POS", "2 = MIXED"]) == {"0": "NEG", "1": "POS", "2": "MIXED"}
    with pytest.raises(Exception, match="OLD=NEW"):
        parse_label_map(["0:NEG"])


# --- the documented commands on the real data sets ----------------------------------------

EXPECTED = {
    # data set: (train rows, dev rows or None, number of labels)
    "sst2": (67349, 872, 2),
    "trec": (5452, None, 6),
    "goemotions": (43410, 5426, 28),
    "chnsenticorp": (9600, 1200, 2),
    "tnews": (53360, 10000, 15),
}


def documented_commands() -> dict:
    section = (ROOT / "docs" / "convert.md").read_text(encoding="utf-8").split("## The public data sets")[1]
    lines = section.split("\n## ")[0].splitlines()
    commands = [shlex.split(line) for line in lines if line.startswith("python -m spacy_cls convert ")]
    return {args[4].split("/")[1]: args[3:] for args in commands}


def test_docs_have_one_command_per_data_set():
    assert set(documented_commands()) == set(EXPECTED)


def localise(args: List[str], out: Path) -> List[str]:
    """The documented command, with `data/` as the data folder and `corpus/` under `out`."""
    def one(arg: str) -> str:
        if arg.startswith("data/"):
            return str(DATA / arg[len("data/"):])
        return str(out / arg) if arg.startswith("corpus/") else arg

    return [one(arg) for arg in args]


@pytest.mark.parametrize("name", list(EXPECTED))
def test_documented_command_counts_on_real_data(name, tmp_path):
    """--dry-run: the same parsing, counts and report, without the slow Doc writing."""
    require_datasets(name)
    args = localise(documented_commands()[name], tmp_path)
    result = runner.invoke(app, args + ["--strict", "--dry-run"])
    assert result.exit_code == 0, result.output
    train_rows, dev_rows, n_labels = EXPECTED[name]
    summaries = re.findall(r"read ([\d,]+)  written ([\d,]+)  rejected 0", result.output)
    expected = [(f"{train_rows:,}", f"{train_rows:,}")] + ([(f"{dev_rows:,}",) * 2] if dev_rows else [])
    assert summaries == expected
    assert re.search(rf"labels \({n_labels}, ", result.output)
    assert not (tmp_path / "corpus").exists()


@pytest.mark.parametrize("name", ["trec", "chnsenticorp"])
def test_documented_command_writes_real_corpus(name, tmp_path):
    """Writes Docs for real (ChnSentiCorp: its dev file only, to keep the test fast)."""
    require_datasets(name)
    args = localise(documented_commands()[name], tmp_path)
    if "--dev" in args:
        at = args.index("--dev")
        args = [args[0], args[at + 1], args[at + 2]] + args[3:at] + args[at + 3:]
    result = runner.invoke(app, args + ["--strict", "--no-progress"])
    assert result.exit_code == 0, result.output
    n_rows = EXPECTED[name][1] or EXPECTED[name][0]
    n_labels = EXPECTED[name][2]
    report = json.loads(report_path_for(args[2]).read_text(encoding="utf-8"))
    assert (report["rows_read"], report["rows_written"], report["rows_rejected"]) == (n_rows, n_rows, 0)
    assert len(report["labels"]) == n_labels
    docs = load_docs(Path(args[2]), "zh" if name == "chnsenticorp" else "en")
    assert len(docs) == n_rows
    assert all(sum(doc.cats.values()) == 1.0 and len(doc.cats) == n_labels for doc in docs)
