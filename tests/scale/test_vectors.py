"""Training a frozen encoder's head from [CLS] vectors written by `apply --vectors`
(spacy_cls.VectorCorpus.v1): the reader, the encoder's use of the vectors, and the
same dev scores as a frozen run that computes the vectors itself."""
import json
import logging
from pathlib import Path

import numpy
import pytest
import spacy
from spacy.training import Example
from spacy.training.initialize import init_nlp
from spacy.training.loop import train
from spacy.util import load_config, registry

from spacy_cls.data import vectors as vector_data
from spacy_cls.layers import encoder as encoder_module
from spacy_cls.layers.precomputed import PRECOMPUTED_CLS
from spacy_cls.scale import apply

from toy_pipelines import EXCLUSIVE

ROOT = Path(__file__).resolve().parents[2]
TRAIN = EXCLUSIVE["en"] + [
    ("great staff and a clean room", "POS"), ("slow service and rude staff", "NEG"),
    ("i love the food", "POS"), ("the worst hotel", "NEG"),
]
DEV = [("a good film, i love it", "POS"), ("awful and boring", "NEG"), ("nice clean room", "POS"),
       ("the staff was rude", "NEG")]


def test_the_key_the_reader_sets_is_the_one_the_encoder_reads():
    assert vector_data.PRECOMPUTED_CLS == PRECOMPUTED_CLS


def write_labelled(path: Path, rows, prefix: str, with_text: bool = True) -> Path:
    lines = []
    for i, (text, label) in enumerate(rows):
        record = {"id": f"{prefix}{i}", "label": label}
        if with_text:
            record["text"] = text
        lines.append(json.dumps(record))
    path.write_text("\n".join(lines) + "\n", encoding="utf8")
    return path


@pytest.fixture(scope="module")
def embedded(tiny_bert, tmp_path_factory):
    """Vectors of TRAIN and DEV texts from apply --vectors with tiny_bert as it is
    (the encoder a frozen run trains on), and the labels files."""
    folder = tmp_path_factory.mktemp("embedded")
    nlp = spacy.blank("en")
    nlp.add_pipe("cls_classifier", config={"model": {"name": tiny_bert}})
    nlp.initialize(lambda: [Example.from_dict(nlp.make_doc(t), {"cats": {"POS": float(l == "POS"), "NEG": float(l == "NEG")}})
                            for t, l in TRAIN])
    nlp.to_disk(folder / "pipeline")
    write_labelled(folder / "texts.jsonl", [(t, l) for t, l in TRAIN], "train-")
    with open(folder / "texts.jsonl", "a", encoding="utf8") as f:
        for i, (text, label) in enumerate(DEV):
            f.write(json.dumps({"id": f"dev-{i}", "text": text}) + "\n")
    apply(folder / "pipeline", folder / "texts.jsonl", folder / "vectors", vectors=True, progress=False)
    return {
        "pipeline": folder / "pipeline",
        "vectors": folder / "vectors",
        "train": write_labelled(folder / "train.jsonl", TRAIN, "train-"),
        "dev": write_labelled(folder / "dev.jsonl", DEV, "dev-"),
        "train_no_text": write_labelled(folder / "train_nt.jsonl", TRAIN, "train-", with_text=False),
    }


def test_reader_joins_vectors_and_labels_by_id_and_rejects_rows_without_a_vector(embedded, tmp_path, caplog):
    labels = tmp_path / "labels.jsonl"
    labels.write_text(
        embedded["train"].read_text() + json.dumps({"id": "nowhere", "label": "POS"}) + "\n"
        + json.dumps({"id": "dev-0", "label": None}) + "\n",
        encoding="utf8",
    )
    corpus = registry.readers.get("spacy_cls.VectorCorpus.v1")(vectors=embedded["vectors"], labels_path=labels)
    nlp = spacy.blank("en")
    with caplog.at_level(logging.WARNING, logger="spacy_cls"):
        examples = list(corpus(nlp))
    assert [eg.reference.text for eg in examples] == [t for t, _ in TRAIN]
    assert [eg.reference.cats for eg in examples][0] == {"NEG": 0.0, "POS": 1.0}
    assert all(eg.predicted.user_data[PRECOMPUTED_CLS].shape == (32,) for eg in examples)
    assert "skipped 2 rejected rows of 12" in caplog.text
    assert "row 11: no vector for id 'nowhere'" in caplog.text and "row 12: id 'dev-0': no label" in caplog.text


def test_reader_refuses_ids_with_two_vectors(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    vectors = pa.FixedSizeListArray.from_arrays(pa.array(numpy.zeros(4, dtype=numpy.float32)), 2)
    (tmp_path / "v").mkdir()
    pq.write_table(pa.table({"id": ["a", "a"], "cls_vector": vectors}), tmp_path / "v" / "part-0.parquet")
    with pytest.raises(vector_data.VectorCorpusError, match="more than one vector"):
        vector_data.read_vectors(tmp_path / "v")


def frozen_component(nlp):
    pipe = nlp.get_pipe("cls_classifier")
    pipe.model.get_ref("encoder").attrs["freeze"] = True
    return pipe


def test_frozen_encoder_reads_the_vectors_instead_of_running(embedded, monkeypatch):
    nlp = spacy.load(embedded["pipeline"])
    frozen_component(nlp)
    corpus = vector_data.VectorCorpus(embedded["vectors"], embedded["train_no_text"])
    examples = list(corpus(nlp))
    assert all(eg.reference.text == "" for eg in examples)

    def no_encoder(*args, **kwargs):
        raise AssertionError("the encoder ran")

    monkeypatch.setattr(encoder_module, "_predict_tensors", no_encoder)
    losses = nlp.update(examples, sgd=nlp.create_optimizer())
    assert losses["cls_classifier"] > 0
    cls = nlp.get_pipe("cls_classifier").predict([eg.predicted for eg in examples]).cls_vectors
    numpy.testing.assert_array_equal(cls[0], examples[0].predicted.user_data[PRECOMPUTED_CLS])


@pytest.mark.parametrize("change,message", [("fine_tune", "freeze = true"), ("width", "shape")])
def test_vectors_that_cannot_serve_are_refused(en_pipeline, change, message):
    nlp = spacy.load(en_pipeline)
    doc = nlp.make_doc("good")
    doc.user_data[PRECOMPUTED_CLS] = numpy.zeros(32 if change == "fine_tune" else 7, dtype=numpy.float32)
    eg = Example.from_dict(doc, {"cats": {"POS": 1.0, "NEG": 0.0}})
    if change == "width":
        frozen_component(nlp)
    with pytest.raises(ValueError, match=message):
        nlp.update([eg], sgd=nlp.create_optimizer())


def train_frozen(tiny_bert: str, corpora: dict):
    overrides = {
        "components.cls_classifier.model.name": tiny_bert,
        "components.cls_classifier.model.freeze": True,
        "training.max_steps": 12,
        "training.eval_frequency": 6,
        "training.batcher.size": 4,
        "training.optimizer.learn_rate.initial_rate": 0.01,
        "training.logger.progress_bar": None,
    }
    config = load_config(ROOT / "configs" / "en_sst2.cfg", overrides=overrides, interpolate=False)
    config["corpora"] = corpora
    nlp = init_nlp(config, use_gpu=-1)
    nlp, _ = train(nlp, None, use_gpu=-1, stdout=_Null(), stderr=_Null())
    return nlp


class _Null:
    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


def test_training_from_vectors_scores_like_a_frozen_run_on_the_texts(tiny_bert, embedded):
    text_corpus = {"@readers": "spacy_cls.LabelledTextCorpus.v1", "format": "jsonl", "text_col": "text",
                   "label_col": "label"}
    from_texts = train_frozen(tiny_bert, {"train": {**text_corpus, "path": str(embedded["train"])},
                                          "dev": {**text_corpus, "path": str(embedded["dev"])}})
    vector_corpus = {"@readers": "spacy_cls.VectorCorpus.v1", "vectors": str(embedded["vectors"])}
    from_vectors = train_frozen(tiny_bert, {"train": {**vector_corpus, "labels_path": str(embedded["train"])},
                                            "dev": {**vector_corpus, "labels_path": str(embedded["dev"])}})
    dev = [Example.from_dict(from_texts.make_doc(t), {"cats": {"POS": float(l == "POS"), "NEG": float(l == "NEG")}})
           for t, l in DEV]
    scores_texts = from_texts.evaluate(dev)
    scores_vectors = from_vectors.evaluate([Example(from_vectors.make_doc(eg.reference.text), eg.reference) for eg in dev])
    assert scores_vectors["cats_score"] == pytest.approx(scores_texts["cats_score"], abs=1e-6)
    for text, _ in DEV:
        a, b = from_texts(text).cats, from_vectors(text).cats
        assert a.keys() == b.keys()
        assert all(abs(a[k] - b[k]) < 1e-4 for k in a)
    out_a = from_texts.get_pipe("cls_classifier").model.get_ref("output_layer")
    out_b = from_vectors.get_pipe("cls_classifier").model.get_ref("output_layer")
    numpy.testing.assert_allclose(out_a.get_param("W"), out_b.get_param("W"), atol=1e-4)


def test_vectors_record_the_encoder_that_made_them(embedded, en_pipeline):
    import pyarrow.parquet as pq

    from spacy_cls.data.fingerprint import METADATA_KEY, encoder_fingerprint
    from spacy_cls.scale import load_summary

    parts = sorted(embedded["vectors"].glob("part-*.parquet"))
    records = [json.loads(pq.read_schema(p).metadata[METADATA_KEY]) for p in parts]
    expected = encoder_fingerprint(spacy.load(embedded["pipeline"]))
    assert all(r == expected for r in records)
    assert load_summary(embedded["vectors"]).encoder == expected
    assert expected["fingerprint"] != encoder_fingerprint(spacy.load(en_pipeline))["fingerprint"]


@pytest.fixture(scope="module")
def fine_tuned_vectors(en_pipeline, embedded, tmp_path_factory):
    """apply --vectors on the fine-tuned toy pipeline: the docs' wrong encoder."""
    folder = tmp_path_factory.mktemp("fine_tuned")
    apply(en_pipeline, embedded["vectors"].parent / "texts.jsonl", folder / "vectors", vectors=True, progress=False)
    return folder / "vectors"


def test_training_on_the_base_checkpoint_refuses_a_fine_tuned_pipelines_vectors(tiny_bert, embedded,
                                                                                   fine_tuned_vectors):
    vector_corpus = {"@readers": "spacy_cls.VectorCorpus.v1", "vectors": str(fine_tuned_vectors)}
    with pytest.raises(vector_data.VectorCorpusError) as refused:
        train_frozen(tiny_bert, {"train": {**vector_corpus, "labels_path": str(embedded["train"])},
                                 "dev": {**vector_corpus, "labels_path": str(embedded["dev"])}})
    message = str(refused.value)
    assert "were made by the encoder" in message and "trains its head on the encoder" in message
    weights = [part.split("weights ")[1][:12] for part in message.split("encoder ")[1:3]]
    assert weights[0] != weights[1]


def test_a_head_on_the_fine_tuned_encoder_accepts_its_own_vectors_only(en_pipeline, embedded, fine_tuned_vectors):
    nlp = spacy.load(en_pipeline)
    frozen_component(nlp)
    assert len(list(vector_data.VectorCorpus(fine_tuned_vectors, embedded["train"])(nlp))) == len(TRAIN)
    with pytest.raises(vector_data.VectorCorpusError, match="were made by the encoder"):
        list(vector_data.VectorCorpus(embedded["vectors"], embedded["train"])(nlp))


def test_one_folder_of_two_encoders_vectors_is_refused(embedded, fine_tuned_vectors, tmp_path):
    import shutil

    mixed = tmp_path / "mixed"
    mixed.mkdir()
    shutil.copy(next(embedded["vectors"].glob("part-*.parquet")), mixed / "a.parquet")
    shutil.copy(next(fine_tuned_vectors.glob("part-*.parquet")), mixed / "b.parquet")
    nlp = spacy.blank("en")
    with pytest.raises(vector_data.VectorCorpusError, match="2 different encoders"):
        list(vector_data.VectorCorpus(mixed, embedded["train"])(nlp))


def test_parquet_from_other_tools_is_used_with_one_warning(embedded, tmp_path, caplog):
    import pyarrow.parquet as pq

    table = pq.read_table(embedded["vectors"])
    other = tmp_path / "other"
    other.mkdir()
    pq.write_table(table.replace_schema_metadata(None), other / "vectors.parquet")
    nlp = spacy.load(embedded["pipeline"])
    frozen_component(nlp)
    with caplog.at_level(logging.WARNING, logger="spacy_cls"):
        for labels in (embedded["train"], embedded["dev"]):
            assert list(vector_data.VectorCorpus(other, labels)(nlp))
    warnings = [r.message for r in caplog.records if "do not say which encoder" in r.message]
    assert len(warnings) == 1 and "encoder that runs at inference" in warnings[0]
