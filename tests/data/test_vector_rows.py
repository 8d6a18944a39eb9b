"""VectorCorpus.v1 on Parquet it did not write: any list column of the encoder's
width is read; every other row is rejected by id and reason (width, null, NaN,
infinity, values beyond the encoder's range, string columns), with row accounting;
a rejected dev vector never reaches `nlp.evaluate`."""
import json
import logging
import math

import numpy
import pandas
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import spacy
from spacy.training import Example

from spacy_cls.data import vectors as vector_data
from spacy_cls.data.fingerprint import cls_output_bound

WIDTH = 32  # tiny_bert's hidden size
RNG = numpy.random.default_rng(0)
GOOD = RNG.normal(0, 1, (6, WIDTH)).astype("float64")
IDS = [f"d{i}" for i in range(len(GOOD))]


def write(path, column, ids=IDS):
    pq.write_table(pa.table({"id": pa.array(ids), "cls_vector": column}), path)
    return path


@pytest.mark.parametrize("kind", ["list32", "list64", "large_list", "fixed_size_list", "float16", "pandas", "ints"])
def test_any_list_column_of_the_right_width_is_read(tmp_path, kind):
    values = numpy.round(GOOD) if kind == "ints" else GOOD
    path = tmp_path / "v.parquet"
    if kind == "pandas":
        pandas.DataFrame({"id": IDS, "cls_vector": list(values)}).to_parquet(path)
    else:
        value_type = {"list64": pa.float64(), "float16": pa.float16(), "ints": pa.int64()}.get(kind, pa.float32())
        flat = pa.array(values.reshape(-1).astype(value_type.to_pandas_dtype()), value_type)
        if kind == "fixed_size_list":
            column = pa.FixedSizeListArray.from_arrays(flat, WIDTH)
        else:
            offsets = pa.array(numpy.arange(0, values.size + 1, WIDTH), pa.int64() if kind == "large_list" else pa.int32())
            column = (pa.LargeListArray if kind == "large_list" else pa.ListArray).from_arrays(offsets, flat)
        write(path, column)
    found = vector_data.read_vector_rows(path)
    assert found.width == WIDTH and not found.rejected and found.n_read == len(IDS)
    for ident, row in zip(IDS, values):
        assert found.vectors[ident].dtype == numpy.float32
        numpy.testing.assert_allclose(found.vectors[ident], row, rtol=1e-3 if kind == "float16" else 1e-6)


def test_bad_rows_are_rejected_by_id_and_reason_and_the_rest_kept(tmp_path):
    rows = [list(v) for v in GOOD] + [
        list(GOOD[0][:-1]), None, [float("nan")] + list(GOOD[0][1:]), list(GOOD[0][:-1]) + [float("inf")],
        [1e30] + list(GOOD[0][1:]), [None] + list(GOOD[0][1:]), list(GOOD[0]) + [0.0], [-2e4] + list(GOOD[0][1:]),
    ]
    ids = IDS + ["short", "null", "nan", "inf", "huge", "null-value", "long", "negative-huge"]
    write(tmp_path / "a.parquet", pa.array(rows, pa.list_(pa.float64())), ids)
    write(tmp_path / "b.parquet", pa.array([list(GOOD[1])], pa.list_(pa.float32())), [None])
    found = vector_data.read_vector_rows(tmp_path)
    assert sorted(found.vectors) == sorted(IDS)
    assert found.n_read == len(ids) + 1 == len(found.vectors) + len(found.rejected)
    why = {entry.split("(id ")[1].split(")")[0].strip("'"): entry for entry in found.rejected}
    assert "values; the encoder gives 32" in why["short"] and "of 33 values" in why["long"]
    assert "is null" in why["null"] and "NaN, infinite or null" in why["nan"]
    assert "NaN, infinite or null" in why["inf"] and "NaN, infinite or null" in why["null-value"]
    assert "beyond the 10000" in why["huge"] and "beyond" in why["negative-huge"]
    assert "'id' is null" in why["None"]
    assert "a.parquet row 7" in why["short"]


@pytest.mark.parametrize("column", [
    pa.array(["[0.1, 0.2]"] * len(IDS)), pa.array([1.0] * len(IDS)),
    pa.array([["a"] * WIDTH] * len(IDS), pa.list_(pa.string())),
])
def test_a_column_that_is_not_a_list_of_numbers_rejects_its_rows(tmp_path, column):
    write(tmp_path / "v.parquet", column)
    found = vector_data.read_vector_rows(tmp_path / "v.parquet", width=WIDTH)
    assert not found.vectors and len(found.rejected) == len(IDS)
    assert all("not a list of numbers" in entry or "not of numbers" in entry for entry in found.rejected)


def test_the_bound_follows_from_the_encoders_final_layer_norm(tiny_bert):
    nlp = base_pipeline(tiny_bert)
    bound = cls_output_bound(nlp)
    norm = nlp.get_pipe("cls_classifier").model.get_ref("encoder").shims[0]._hfmodel.transformer.encoder.layer[-1].output.LayerNorm
    gamma = float(norm.weight.detach().abs().max())
    beta = float(norm.bias.detach().abs().max())
    assert gamma * math.sqrt(WIDTH - 1) + beta < bound < (gamma * math.sqrt(WIDTH - 1) + beta) * 1.02 + 0.01
    docs = list(nlp.pipe(["good film " * 20, "bad", "a b c d e f g h i j k l"]))
    assert max(float(numpy.abs(d._.cls_vector).max()) for d in docs) < bound


def base_pipeline(tiny_bert):
    nlp = spacy.blank("en")
    nlp.add_pipe("cls_classifier", config={"model": {"name": tiny_bert, "freeze": True}})
    nlp.initialize(lambda: [Example.from_dict(nlp.make_doc("good"), {"cats": {"POS": 1.0, "NEG": 0.0}}),
                            Example.from_dict(nlp.make_doc("bad"), {"cats": {"POS": 0.0, "NEG": 1.0}})])
    return nlp


def labels_file(path, ids, label="POS"):
    path.write_text("".join(json.dumps({"id": i, "label": label if n % 2 else "NEG", "text": f"t {i}"}) + "\n"
                            for n, i in enumerate(ids)), encoding="utf8")
    return path


def test_vectors_beyond_the_encoders_range_and_nan_dev_vectors_never_reach_evaluate(tiny_bert, tmp_path, caplog):
    nlp = base_pipeline(tiny_bert)
    bound = cls_output_bound(nlp)
    rows = [list(v) for v in numpy.clip(GOOD, -2, 2)]
    rows += [[bound * 2] + rows[0][1:], [float("nan")] * WIDTH, [None] * WIDTH]
    ids = IDS + ["beyond", "nan", "nulls"]
    write(tmp_path / "v.parquet", pa.array(rows, pa.list_(pa.float32())), ids)
    corpus = vector_data.VectorCorpus(tmp_path / "v.parquet", labels_file(tmp_path / "dev.jsonl", ids))
    with caplog.at_level(logging.WARNING, logger="spacy_cls"):
        examples = list(corpus(nlp))
    assert sorted(eg.reference.text for eg in examples) == sorted(f"t {i}" for i in IDS)
    assert any("beyond" in r.message for r in caplog.records)
    assert [r for r in corpus.rejected if "nan" in r or "'beyond'" in r]
    scores = nlp.evaluate(examples)
    assert all(math.isfinite(v) for k, v in scores.items() if isinstance(v, float))
    for eg in examples:
        doc = nlp.get_pipe("cls_classifier")(eg.predicted)
        assert all(math.isfinite(v) for v in doc.cats.values())


def test_a_nan_training_vector_is_named_instead_of_failing_the_loss(tiny_bert, tmp_path, caplog):
    nlp = base_pipeline(tiny_bert)
    rows = [list(v) for v in numpy.clip(GOOD, -2, 2)] + [[float("nan")] * WIDTH]
    ids = IDS + ["poison"]
    write(tmp_path / "v.parquet", pa.array(rows, pa.list_(pa.float64())), ids)
    corpus = vector_data.VectorCorpus(tmp_path / "v.parquet", labels_file(tmp_path / "train.jsonl", ids))
    with caplog.at_level(logging.WARNING, logger="spacy_cls"):
        examples = list(corpus(nlp))
    assert len(examples) == len(IDS)
    assert any("'poison'" in r.message and "NaN" in r.message for r in caplog.records)
    losses = nlp.update(examples, sgd=nlp.create_optimizer())
    assert math.isfinite(losses["cls_classifier"])


def test_a_bad_line_of_the_labels_file_is_rejected_on_its_own(tmp_path, caplog):
    write(tmp_path / "v.parquet", pa.array([list(v) for v in numpy.clip(GOOD, -2, 2)], pa.list_(pa.float32())))
    labels = tmp_path / "labels.jsonl"
    labels.write_text('{"id": "d0", "label": "POS"}\n{oops\n\n[1]\n{"id": "d1", "label": "NEG"}\n', encoding="utf8")
    corpus = vector_data.VectorCorpus(tmp_path / "v.parquet", labels)
    with caplog.at_level(logging.WARNING, logger="spacy_cls"):
        examples = list(corpus(spacy.blank("en")))
    assert len(examples) == 2
    assert [r.split(":")[0] for r in corpus.rejected] == ["row 2", "row 3", "row 4"]
    assert "not valid JSON" in corpus.rejected[0] and "blank line" in corpus.rejected[1]
