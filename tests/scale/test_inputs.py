"""spacy_cls.scale.inputs: finding files, stable ids, rejection reasons, shard plans."""
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from spacy_cls.scale import inputs


def rows_of(path, text_col="text", id_col="id", shard_rows=1000):
    files = inputs.describe_files(path, text_col)
    tables = [inputs.read_shard(s, text_col, id_col) for s in inputs.plan_shards(files, shard_rows)]
    return pa.concat_tables(tables).to_pylist()


def test_jsonl_every_line_is_a_row_kept_or_rejected_with_a_reason(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_bytes(
        b'{"text": "good", "id": 7}\n{"text": "no id"}\n\nnot json\n{"text": 5}\n[1]\n{"id": "x"}\n'
        b'{"text": null, "id": "n"}\n{"text": "a", "id": null}\n\xff\xfe\n{"text": "last, no newline"}'
    )
    rows = rows_of(path)
    assert [r[inputs.ROW] for r in rows] == list(range(11))
    assert [r[inputs.ID] for r in rows] == [
        "7", "in.jsonl:2", "in.jsonl:3", "in.jsonl:4", "in.jsonl:5", "in.jsonl:6", "x", "n", "in.jsonl:9",
        "in.jsonl:10", "in.jsonl:11",
    ]
    problems = [r[inputs.PROBLEM] for r in rows]
    assert problems[0] is None and problems[1] is None and problems[-1] is None
    assert problems[2] == "blank line"
    assert problems[3].startswith("not valid JSON")
    assert problems[4] == "'text' is of type int, not a string"
    assert problems[5].startswith("a JSON list")
    assert problems[6] == "no 'text' column"
    assert problems[7] == "'text' is null"
    assert problems[8] == "'id' is null"
    assert problems[9].startswith("not UTF-8")
    assert [r[inputs.TEXT] for r in rows if r[inputs.PROBLEM] is None] == ["good", "no id", "last, no newline"]


def test_csv_values_stay_strings_and_quoted_newlines_are_one_row(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text('id,text,other\n007,"two\nlines",1\n8,42,2\n', encoding="utf8")
    rows = rows_of(path)
    assert [(r[inputs.ID], r[inputs.TEXT]) for r in rows] == [("007", "two\nlines"), ("8", "42")]


def test_tsv_quotes_are_text_and_missing_id_column_gives_file_and_row(tmp_path):
    path = tmp_path / "in.tsv"
    path.write_text('sentence\tlabel\nit \'s "fine\t1\nbad\t0\n', encoding="utf8")
    rows = rows_of(path, text_col="sentence")
    assert [(r[inputs.ID], r[inputs.TEXT]) for r in rows] == [("in.tsv:1", 'it \'s "fine'), ("in.tsv:2", "bad")]


def test_missing_text_column_rejects_every_row(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text("id,body\n1,a\n2,b\n", encoding="utf8")
    rows = rows_of(path)
    assert [r[inputs.PROBLEM] for r in rows] == ["no 'text' column"] * 2


def test_parquet_shards_read_only_their_rows_and_non_strings_are_rejected(tmp_path):
    path = tmp_path / "in.parquet"
    pq.write_table(pa.table({"text": [f"t{i}" for i in range(10)], "n": list(range(10))}), path, row_group_size=3)
    rows = rows_of(path, shard_rows=4)
    assert [r[inputs.TEXT] for r in rows] == [f"t{i}" for i in range(10)]
    assert [r[inputs.ID] for r in rows] == [f"in.parquet:{i + 1}" for i in range(10)]
    assert [r[inputs.PROBLEM] for r in rows_of(path, text_col="n")][:2] == ["'n' is of type int, not a string"] * 2


def test_folder_and_glob_name_files_relative_to_the_input_root(tmp_path):
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "x.jsonl").write_text('{"text": "t"}\n', encoding="utf8")
    (tmp_path / "_hidden.jsonl").write_text('{"text": "t"}\n', encoding="utf8")
    (tmp_path / "notes.txt").write_text("skip me", encoding="utf8")
    assert [name for _, name in inputs.find_input_files(tmp_path)] == ["a/x.jsonl", "b/x.jsonl"]
    assert [name for _, name in inputs.find_input_files(str(tmp_path / "*" / "x.jsonl"))] == ["a/x.jsonl", "b/x.jsonl"]
    assert [r[inputs.ID] for r in rows_of(tmp_path)] == ["a/x.jsonl:1", "b/x.jsonl:1"]


@pytest.mark.parametrize("name,message", [("missing.jsonl", "not a file"), ("data.xml", "unknown file type")])
def test_unusable_input_is_refused(tmp_path, name, message):
    if name == "data.xml":
        (tmp_path / name).write_text("x", encoding="utf8")
    with pytest.raises(inputs.InputError, match=message):
        inputs.find_input_files(tmp_path / name)


def test_shards_skip_the_ranges_done_before():
    file = inputs.InputFile(path=None, name="f.jsonl", format="jsonl", n_rows=25)
    done = {file.key: [(0, 10), (12, 20)]}
    shards = inputs.plan_shards([file], 5, done=done)
    assert [(s.start, s.stop) for s in shards] == [(10, 12), (20, 25)]
    assert [(s.start, s.stop) for s in inputs.plan_shards([file], 10)] == [(0, 10), (10, 20), (20, 25)]


def test_file_that_changed_since_the_plan_is_refused(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(json.dumps({"text": str(i)}) for i in range(5)) + "\n", encoding="utf8")
    [shard] = inputs.plan_shards(inputs.describe_files(path, "text"), 10)
    path.write_text('{"text": "a"}\n', encoding="utf8")
    with pytest.raises(inputs.InputError, match="changed"):
        inputs.read_shard(shard, "text", "id")


@pytest.mark.parametrize("text_col", ["text", "body"])
def test_read_rows_gives_every_line_of_a_text_file_whatever_the_text_column(tmp_path, text_col):
    path = tmp_path / "t.txt"
    path.write_bytes(b"good film\n\n  bad food  \r\n\xff\n")
    rows = list(inputs.read_rows(path, text_col=text_col, id_col=None, all_columns=True))
    assert [(r.row, r.id, r.text) for r in rows] == [
        (1, "t.txt:1", "good film"), (2, "t.txt:2", None), (3, "t.txt:3", "bad food"), (4, "t.txt:4", None)]
    assert [r.problem for r in rows][1] == "blank line" and rows[3].problem.startswith("not UTF-8")


def test_read_rows_keeps_a_jsonl_records_other_keys_per_row(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"text": "a", "x": 1}\n{"text": "b", "y": [2]}\n', encoding="utf8")
    rows = list(inputs.read_rows(path, id_col=None, all_columns=True))
    assert [r.values for r in rows] == [{"x": 1}, {"y": [2]}]
