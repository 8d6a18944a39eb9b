"""No single row stops `apply`: rows that are not valid Unicode, texts over spaCy's
max_length, and docs the pipeline fails on are rejected with their id, row and
reason; every other row is written, and read = written + rejected."""
import json
import shutil

import pytest
import spacy
from hypothesis import HealthCheck, given, settings, strategies as st
from spacy.language import Language

from spacy_cls.scale import apply, inputs
from spacy_cls.scale.local import run_local
from spacy_cls.scale.predict import Predictor, classify_texts
from spacy_cls.scale.summary import summarise

from helpers import read_output

BOOM = "boom"


@Language.component("test_fails_on_boom")
def fails_on_boom(doc):
    if BOOM in doc.text:
        raise RuntimeError(f"cannot take {BOOM}")
    return doc


@Language.component("test_slow_with_length")
def slow_with_length(doc):
    return doc


@pytest.fixture(scope="module")
def boom_pipeline(en_pipeline, tmp_path_factory):
    nlp = spacy.load(en_pipeline)
    nlp.add_pipe("test_fails_on_boom", first=True)
    folder = tmp_path_factory.mktemp("boom") / "pipeline"
    nlp.to_disk(folder)
    return folder


@pytest.fixture(scope="module")
def safe_tokenizer_pipeline(en_pipeline, tmp_path_factory):
    folder = tmp_path_factory.mktemp("safe") / "pipeline"
    shutil.copytree(en_pipeline, folder)
    config = (folder / "config.cfg").read_text(encoding="utf8")
    config = config.replace('[nlp.tokenizer]\n@tokenizers = "spacy.Tokenizer.v1"',
                            '[nlp.tokenizer]\n@tokenizers = "spacy_cls.SurrogateSafeTokenizer.v1"')
    assert "SurrogateSafeTokenizer" in config
    (folder / "config.cfg").write_text(config, encoding="utf8")
    return folder


def write_lines(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf8")
    return path


def rejected(out_dir):
    lines = (out_dir / "_rejected.jsonl").read_text(encoding="utf8").split("\n")
    return {record["id"]: record for record in (json.loads(line) for line in lines if line.strip())}


# JSON escapes of lone surrogates: high, low, reversed pair, and one beside text.
SURROGATE_TEXTS = ['"\\ud800"', '"abc \\udfff def"', '"\\udc00\\ud800"', '"good \\ud83d film"']


@pytest.mark.parametrize("pipeline", ["en", "safe"])
def test_lone_surrogates_in_texts_ids_and_kept_columns_reject_their_row_only(
        pipeline, en_pipeline, safe_tokenizer_pipeline, tmp_path):
    lines = ['{"id": "ok-0", "text": "good film", "title": "t0"}']
    for i, text in enumerate(SURROGATE_TEXTS):
        lines.append(f'{{"id": "text-{i}", "text": {text}, "title": "t"}}')
        lines.append(f'{{"id": "ok-{i + 1}", "text": "bad food", "title": "t{i + 1}"}}')
    lines.append('{"id": "id-\\ud800", "text": "good"}')
    lines.append('{"id": "title", "text": "good", "title": "x\\udc01"}')
    write_lines(tmp_path / "in.jsonl", lines)
    path = en_pipeline if pipeline == "en" else safe_tokenizer_pipeline
    summary = apply(path, tmp_path / "in.jsonl", tmp_path / "out", keep_cols=["title"], shard_rows=3,
                    batch_size=2, progress=False)
    out = read_output(tmp_path / "out")
    assert sorted(out["id"]) == [f"ok-{i}" for i in range(len(SURROGATE_TEXTS) + 1)]
    assert list(out.set_index("id").loc["ok-1", ["title"]]) == ["t1"]
    why = rejected(tmp_path / "out")
    assert set(why) == {f"text-{i}" for i in range(len(SURROGATE_TEXTS))} | {"id-\\ud800", "title"}
    assert all("lone surrogate" in r["reason"] for r in why.values())
    assert "'id'" in why["id-\\ud800"]["reason"] and "'title'" in why["title"]["reason"]
    assert why["text-0"]["row"] == 2
    assert summary.rows_read == len(lines) == summary.rows_written + summary.rows_rejected


def test_a_surrogate_in_a_file_name_still_gives_writable_ids(en_pipeline, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    name = b"bad\xff.jsonl".decode("utf8", "surrogateescape")
    write_lines(folder / name, ['{"text": "good film"}', '{"text": 5}'])
    summary = apply(en_pipeline, folder, tmp_path / "out", progress=False)
    assert summary.rows_written == 1 and summary.rows_rejected == 1
    assert list(read_output(tmp_path / "out")["id"]) == ["bad\\udcff.jsonl:1"]


def test_texts_over_max_length_are_classified_when_the_pipeline_only_classifies(en_pipeline):
    predictor = Predictor(en_pipeline)
    predictor.nlp.max_length = 40
    texts = ["good film " * 10, "bad", "awful food " * 30]
    results = classify_texts(predictor.nlp, texts, batch_size=2)
    assert all(not isinstance(r, str) for r in results)
    reference = spacy.load(en_pipeline)
    for text, doc in zip(texts, results):
        assert doc.cats == pytest.approx(reference(text).cats, abs=1e-5)
    assert predictor.nlp.max_length == 40


def test_texts_over_max_length_are_rejected_when_another_component_needs_the_limit(en_pipeline):
    predictor = Predictor(en_pipeline)
    predictor.nlp.add_pipe("test_slow_with_length")
    predictor.nlp.max_length = 40
    results = classify_texts(predictor.nlp, ["good film " * 10, "bad", "x" * 41, "y" * 40], batch_size=8)
    assert isinstance(results[0], str) and isinstance(results[2], str)
    assert "max_length" in results[0] and "E088" in results[0] and "test_slow_with_length" in results[0]
    assert not isinstance(results[1], str) and not isinstance(results[3], str)


def test_a_text_over_spacys_default_max_length_is_classified_by_apply(en_pipeline, tmp_path):
    long_text = "good film " * 100_001
    write_lines(tmp_path / "in.jsonl", [json.dumps({"id": "long", "text": long_text}), '{"id": "short", "text": "bad"}'])
    summary = apply(en_pipeline, tmp_path / "in.jsonl", tmp_path / "out", progress=False)
    assert summary.rows_written == 2 and summary.rows_rejected == 0
    assert summary.rows_cut == 1


@pytest.mark.parametrize("batch_size", [1, 3, 64])
def test_a_doc_the_pipeline_fails_on_is_rejected_and_its_batch_neighbours_written(boom_pipeline, tmp_path,
                                                                                   batch_size):
    texts = ["good", f"a {BOOM} here", "bad", "fine", f"{BOOM}", "awful", "great"]
    write_lines(tmp_path / "in.jsonl", [json.dumps({"id": f"d{i}", "text": t}) for i, t in enumerate(texts)])
    summary = apply(boom_pipeline, tmp_path / "in.jsonl", tmp_path / "out", batch_size=batch_size, progress=False)
    assert sorted(read_output(tmp_path / "out")["id"]) == ["d0", "d2", "d3", "d5", "d6"]
    why = rejected(tmp_path / "out")
    assert set(why) == {"d1", "d4"}
    assert all("RuntimeError: cannot take boom" in r["reason"] for r in why.values())
    assert summary.rows_read == 7 == summary.rows_written + summary.rows_rejected


ROW_KINDS = {
    "ok": lambda i: json.dumps({"id": f"r{i}", "text": "good film"}),
    "boom": lambda i: json.dumps({"id": f"r{i}", "text": f"{BOOM} {i}"}),
    "surrogate_text": lambda i: f'{{"id": "r{i}", "text": "x\\ud800"}}',
    "surrogate_id": lambda i: f'{{"id": "r{i}\\udfff", "text": "good"}}',
    "null_text": lambda i: json.dumps({"id": f"r{i}", "text": None}),
    "number_text": lambda i: json.dumps({"id": f"r{i}", "text": 3}),
    "blank": lambda i: "",
    "not_json": lambda i: "{oops",
    "separators": lambda i: json.dumps({"id": f"r{i}\u2028", "text": "a\u2029b\x85c"}, ensure_ascii=False),
}
GOOD = {"ok", "separators"}


@pytest.fixture(scope="module")
def boom_predictor(boom_pipeline):
    return Predictor(boom_pipeline, batch_size=3)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kinds=st.lists(st.sampled_from(sorted(ROW_KINDS)), min_size=1, max_size=14),
       shard_rows=st.integers(1, 6))
def test_every_row_read_is_written_or_rejected_once(boom_predictor, tmp_path_factory, kinds, shard_rows):
    folder = tmp_path_factory.mktemp("rows")
    write_lines(folder / "in.jsonl", [ROW_KINDS[kind](i) for i, kind in enumerate(kinds)])
    out = folder / "out"
    out.mkdir()
    files = inputs.describe_files(folder / "in.jsonl")
    run_local(inputs.plan_shards(files, shard_rows), out, boom_predictor, text_col="text", id_col="id",
              progress=False)
    summary = summarise(out, rows_this_run=len(kinds), seconds=1.0, engine="local", workers=1)
    assert summary.rows_read == len(kinds) == summary.rows_written + summary.rows_rejected
    assert summary.rows_written == sum(kind in GOOD for kind in kinds)
    rows = [json.loads(line) for line in (out / "_rejected.jsonl").read_text(encoding="utf8").split("\n") if line]
    assert len((out / "_rejected.jsonl").read_text(encoding="utf8").splitlines()) == len(rows)
    assert sorted(r["row"] for r in rows) == [i + 1 for i, kind in enumerate(kinds) if kind not in GOOD]
    written = read_output(out)["id"].tolist() if summary.rows_written else []
    assert len(written) == len(set(written))
