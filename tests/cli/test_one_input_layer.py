"""One input layer for every command that reads texts or labelled data: apply,
rank-uncertain, plot-vectors, plot-confusion and classify --file read a file the
same way (format by extension or --input-format, --text-col, --label-col), with the
same reasons for the rows they reject; a .csv is never read as lines."""
import csv
import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import spacy
from spacy.language import Language
from typer.testing import CliRunner

from spacy_cls.cli import app
from spacy_cls.scale import inputs

from toy_pipelines import EXCLUSIVE

ROWS = EXCLUSIVE["en"]


@Language.component("test_rank_fails_on_boom")
def fails_on_boom(doc):
    if "boom" in doc.text:
        raise RuntimeError("cannot take boom")
    return doc


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def write_table(path, rows, text_col="body", label_col="gold"):
    """The label column first, quoted texts with commas and a newline: a reader that
    guessed by position or by line would get them wrong."""
    records = [{label_col: label, "title": f"t{i}", text_col: f"{text}, really\nyes" if i == 0 else text}
               for i, (text, label) in enumerate(rows)]
    suffix = path.suffix
    if suffix == ".csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=[label_col, "title", text_col], quoting=csv.QUOTE_ALL)
        writer.writeheader()
        writer.writerows(records)
        path.write_text(buffer.getvalue(), encoding="utf8")
    elif suffix == ".tsv":
        for r in records:
            r[text_col] = r[text_col].replace("\n", " ")
        path.write_text("\n".join([f"{label_col}\ttitle\t{text_col}"]
                                  + [f"{r[label_col]}\t{r['title']}\t{r[text_col]}" for r in records]) + "\n",
                        encoding="utf8")
    elif suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf8")
    else:
        pq.write_table(pa.Table.from_pylist(records), path)
    return [r[text_col] for r in records], [r[label_col] for r in records]


FORMATS = [".csv", ".tsv", ".jsonl", ".parquet"]


@pytest.mark.parametrize("suffix", FORMATS)
def test_read_rows_gives_the_named_columns_in_every_format(tmp_path, suffix):
    path = tmp_path / f"data{suffix}"
    texts, labels = write_table(path, ROWS)
    rows = list(inputs.read_rows(path, text_col="body", id_col=None, columns=["gold"]))
    assert [r.text for r in rows] == texts
    assert [r.values["gold"] for r in rows] == labels
    assert [r.row for r in rows] == list(range(1, len(ROWS) + 1))


@pytest.mark.parametrize("suffix", FORMATS)
def test_apply_and_rank_uncertain_read_the_text_column(en_pipeline, tmp_path, suffix):
    path = tmp_path / f"data{suffix}"
    texts, _ = write_table(path, ROWS)
    result = invoke("apply", en_pipeline, path, tmp_path / "out", "--text-col", "body", "--keep-cols", "body,title")
    assert result.exit_code == 0, result.output
    out = pq.read_table(tmp_path / "out").to_pandas().sort_values("title", key=lambda s: s.str[1:].astype(int))
    assert list(out["body"]) == texts
    ranked = tmp_path / "ranked.jsonl"
    result = invoke("rank-uncertain", en_pipeline, path, "--text-col", "body", "-n", "100", "-o", ranked)
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in ranked.read_text(encoding="utf8").splitlines()]
    assert sorted(r["text"] for r in records) == sorted(texts)
    assert all(r["meta"]["gold"] in ("POS", "NEG") and r["meta"]["title"].startswith("t") for r in records)
    nlp = spacy.load(en_pipeline)
    for record in records:
        assert record["meta"]["scores"]["POS"] == pytest.approx(nlp(record["text"]).cats["POS"], abs=1e-5)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_plots_read_the_text_and_label_columns(en_pipeline, tmp_path, suffix):
    pytest.importorskip("matplotlib")
    path = tmp_path / f"data{suffix}"
    write_table(path, ROWS)
    result = invoke("plot-vectors", en_pipeline, path, "--text-col", "body", "--label-col", "gold",
                    "-o", tmp_path / "v.png")
    assert result.exit_code == 0, result.output
    assert f"{len(ROWS)} docs" in result.output and "nearest-centroid accuracy 1.000" in result.output
    result = invoke("plot-confusion", en_pipeline, path, "--text-col", "body", "--label-col", "gold",
                    "-o", tmp_path / "c.png")
    assert result.exit_code == 0, result.output
    assert f"{len(ROWS)} docs: accuracy 1.000" in result.output


def test_plots_reject_rows_without_a_known_label_and_say_which(en_pipeline, tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "data.csv"
    path.write_text("text,label\ngood film,POS\nbad food,NEG\nfine,MAYBE\nokay,\n", encoding="utf8")
    result = invoke("plot-confusion", en_pipeline, path, "-o", tmp_path / "c.png")
    assert result.exit_code == 0, result.output
    assert "2 docs" in result.output
    assert "row 3: label 'MAYBE' is not one of the pipeline's" in result.output
    assert "row 4: no 'label' value" in result.output
    result = invoke("plot-vectors", en_pipeline, path, "--text-col", "body", "-o", tmp_path / "v.png")
    assert result.exit_code == 2 and "no 'body' column" in result.output


def test_classify_file_reads_tables_by_column_and_other_files_as_lines(en_pipeline, tmp_path):
    path = tmp_path / "data.csv"
    path.write_text('label,text\nPOS,"good, very good"\nNEG,awful food\n', encoding="utf8")
    result = invoke("classify", en_pipeline, "--file", path)
    assert result.exit_code == 0, result.output
    assert "] good, very good" in result.output and "] awful food" in result.output
    assert "label,text" not in result.output and "POS," not in result.output
    notes = tmp_path / "notes.md"
    notes.write_text("good film\n\nbad food\n", encoding="utf8")
    result = invoke("classify", en_pipeline, "--file", notes)
    assert result.exit_code == 0 and "] good film" in result.output and "] bad food" in result.output


@pytest.mark.parametrize("command", ["apply", "rank-uncertain"])
def test_a_csv_is_never_read_as_lines(en_pipeline, tmp_path, command):
    path = tmp_path / "data.csv"
    path.write_text("text\ngood\n", encoding="utf8")
    args = [command, en_pipeline, path] + ([tmp_path / "out"] if command == "apply" else ["-o", tmp_path / "r.jsonl"])
    result = invoke(*args, "--input-format", "lines")
    assert result.exit_code == 2 and "read as csv" in result.output
    result = invoke(*args, "--input-format", "xml")
    assert result.exit_code == 2 and "choose one of" in result.output


def test_input_format_names_the_format_of_a_file_without_a_known_extension(en_pipeline, tmp_path):
    path = tmp_path / "export.dat"
    path.write_text("id,text\na,good film\nb,bad food\n", encoding="utf8")
    result = invoke("apply", en_pipeline, path, tmp_path / "refused")
    assert result.exit_code == 2 and "--input-format" in result.output
    result = invoke("apply", en_pipeline, path, tmp_path / "out", "--input-format", "csv")
    assert result.exit_code == 0, result.output
    assert sorted(pq.read_table(tmp_path / "out").column("id").to_pylist()) == ["a", "b"]
    lines = tmp_path / "texts.txt"
    lines.write_text("good film\n\nbad food\n", encoding="utf8")
    result = invoke("apply", en_pipeline, lines, tmp_path / "lines")
    assert result.exit_code == 0, result.output
    assert sorted(pq.read_table(tmp_path / "lines").column("id").to_pylist()) == ["texts.txt:1", "texts.txt:3"]


def test_a_cell_that_is_not_utf8_rejects_its_row_not_the_file(en_pipeline, tmp_path):
    path = tmp_path / "data.csv"
    path.write_bytes(b"id,text\na,good film\nb,bad \xff food\nc,fine\n")
    result = invoke("apply", en_pipeline, path, tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert sorted(pq.read_table(tmp_path / "out").column("id").to_pylist()) == ["a", "c"]
    rejected = json.loads((tmp_path / "out" / "_rejected.jsonl").read_text(encoding="utf8"))
    assert rejected["id"] == "b" and "not UTF-8" in rejected["reason"]


def test_rank_uncertain_rejects_bad_rows_and_escapes_line_separators(en_pipeline, tmp_path):
    source = tmp_path / "texts.jsonl"
    separators = ["\u2028", "\u2029", "\x85", "\x1c", "\x1d", "\x1e", "\x0b", "\x0c"]
    lines = [json.dumps({"text": f"good{sep}film {i}", "note": f"a{sep}b"}, ensure_ascii=False)
             for i, sep in enumerate(separators)]
    lines += ['{"text": "bad \\ud800 food"}', '{"text": "fine", "note": "\\udfff"}', "", "[1]", '{"text": 3}']
    source.write_text("\n".join(lines) + "\n", encoding="utf8")
    out = tmp_path / "ranked.jsonl"
    result = invoke("rank-uncertain", en_pipeline, source, "-n", "100", "-o", out)
    assert result.exit_code == 0, result.output
    written = out.read_text(encoding="utf8")
    assert len(written.splitlines()) == len(separators)  # no line is cut by a separator
    records = [json.loads(line) for line in written.splitlines()]
    assert sorted(r["text"] for r in records) == sorted(f"good{sep}film {i}" for i, sep in enumerate(separators))
    for sep in ["\u2028", "\u2029", "\x85"]:
        assert sep not in written
    rejected_path = tmp_path / "ranked_rejected.jsonl"
    rejected = [json.loads(line) for line in rejected_path.read_text(encoding="utf8").splitlines()]
    assert [r["row"] for r in rejected] == [9, 10, 11, 12, 13]
    assert "lone surrogate" in rejected[0]["reason"] and "'note'" in rejected[1]["reason"]
    assert f"Read {len(lines)} rows: {len(separators)} ranked, 5 rejected" in result.output


def test_rank_uncertain_rejects_a_doc_the_pipeline_fails_on(en_pipeline, tmp_path):
    nlp = spacy.load(en_pipeline)
    nlp.add_pipe("test_rank_fails_on_boom", first=True)
    nlp.to_disk(tmp_path / "pipeline")
    source = tmp_path / "texts.txt"
    source.write_text("good film\nboom here\nbad food\n", encoding="utf8")
    result = invoke("rank-uncertain", tmp_path / "pipeline", source, "-n", "10", "-o", tmp_path / "r.jsonl",
                    "--batch-size", "8")
    assert result.exit_code == 0, result.output
    assert len((tmp_path / "r.jsonl").read_text(encoding="utf8").splitlines()) == 2
    [rejected] = [json.loads(line) for line in (tmp_path / "r_rejected.jsonl").read_text(encoding="utf8").splitlines()]
    assert rejected["row"] == 2 and "RuntimeError" in rejected["reason"]


def test_rank_uncertain_rejects_surrogates_nested_in_kept_fields(en_pipeline, tmp_path):
    source = tmp_path / "texts.jsonl"
    source.write_text('{"text": "good film"}\n{"text": "bad", "meta": {"note": "\\ud800"}}\n'
                      '{"text": "fine", "tags": ["ok", "\\udfff"]}\n{"text": "awful", "\\ud801": 1}\n',
                      encoding="utf8")
    out = tmp_path / "ranked.jsonl"
    result = invoke("rank-uncertain", en_pipeline, source, "-n", "10", "-o", out)
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["text"] for line in out.read_text(encoding="utf8").splitlines()] == ["good film"]
    rejected = [json.loads(line) for line in (tmp_path / "ranked_rejected.jsonl").read_text(encoding="utf8").splitlines()]
    assert [r["row"] for r in rejected] == [2, 3, 4] and all("lone surrogate" in r["reason"] for r in rejected)


def test_classify_file_takes_the_text_column_and_format_options(en_pipeline, tmp_path):
    path = tmp_path / "export.dat"
    path.write_text('{"body": "good film", "text": "not this"}\n{"body": "bad food"}\n', encoding="utf8")
    result = invoke("classify", en_pipeline, "--file", path, "--text-col", "body", "--input-format", "jsonl")
    assert result.exit_code == 0, result.output
    assert "] good film" in result.output and "] bad food" in result.output and "not this" not in result.output


def test_explain_file_takes_the_text_column_and_format_options(en_pipeline, tmp_path):
    path = tmp_path / "export.csv"
    path.write_text('label,body\nPOS,"good, very good film"\nNEG,bad food\n', encoding="utf8")
    page = tmp_path / "page.html"
    result = invoke("explain", en_pipeline, "--file", path, "--text-col", "body", "-o", page)
    assert result.exit_code == 0, result.output
    html = page.read_text(encoding="utf8")
    assert "Wrote" in result.output and "(2 docs)" in result.output
    assert "POS," not in html and "label" not in result.output
