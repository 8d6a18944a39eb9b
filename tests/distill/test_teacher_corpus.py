"""spacy_cls.TeacherCorpus.v1: the teacher's soft cats at a temperature, mixed with
gold cats by alpha, cached by teacher and text, or read from apply output; every text
read is an example or rejected with its id and reason."""
import json
import shutil

import numpy
import pytest
import spacy

from spacy_cls.data.readers import create_labelled_text_corpus
from spacy_cls.distill.cache import folder_fingerprint
from spacy_cls.distill.corpus import Teacher, create_teacher_corpus
from spacy_cls.distill.targets import soften

from toy_pipelines import EXCLUSIVE, MULTILABEL, MULTILABEL_LABELS, gold_cats

UNLABELLED = ["the movie was fun", "really bad food", "nice staff and clean room", "slow and boring", "ok"]


def write_texts(path, texts, extra=()):
    lines = [json.dumps({"text": t}) for t in texts] + list(extra)
    path.write_text("\n".join(lines) + "\n", encoding="utf8")
    return path


def gold_corpus(tmp_path, multilabel=False):
    path = tmp_path / "gold.jsonl"
    if multilabel:
        rows = [{"text": t, "cats": gold_cats(labels, MULTILABEL_LABELS)} for t, labels in MULTILABEL]
    else:
        rows = [{"text": t, "label": label} for t, label in EXCLUSIVE["en"]]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf8")
    return create_labelled_text_corpus(path, format="jsonl", exclusive=not multilabel)


def teacher_probs(pipeline, texts):
    nlp = spacy.load(pipeline)
    labels = list(nlp.get_pipe(nlp.pipe_names[0]).labels)
    return labels, numpy.array([[nlp(t).cats[label] for label in labels] for t in texts])


def cats_matrix(examples, labels):
    return numpy.array([[eg.reference.cats[label] for label in labels] for eg in examples])


@pytest.mark.parametrize("temperature", [1.0, 2.0, 5.0])
def test_unlabelled_texts_get_the_teachers_scores_at_a_temperature(en_pipeline, tmp_path, temperature):
    texts = write_texts(tmp_path / "texts.jsonl", UNLABELLED)
    corpus = create_teacher_corpus(teacher=en_pipeline, texts=str(texts), temperature=temperature,
                                   cache_dir=tmp_path / "cache")
    examples = list(corpus(spacy.blank("en")))
    labels, probs = teacher_probs(en_pipeline, UNLABELLED)
    assert [eg.reference.text for eg in examples] == UNLABELLED
    expected = soften(probs, temperature, multi_label=False)
    numpy.testing.assert_allclose(cats_matrix(examples, labels), expected, atol=1e-5)
    numpy.testing.assert_allclose(cats_matrix(examples, labels).sum(axis=1), 1.0, atol=1e-6)
    if temperature > 1:  # softer: further from 0/1 than the teacher
        assert (numpy.abs(expected - 0.5) <= numpy.abs(probs - 0.5) + 1e-9).all()


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_gold_texts_mix_hard_and_soft_targets(en_pipeline, tmp_path, alpha):
    corpus = create_teacher_corpus(teacher=en_pipeline, gold=gold_corpus(tmp_path), alpha=alpha, temperature=2.0,
                                   cache_dir=tmp_path / "cache")
    examples = list(corpus(spacy.blank("en")))
    texts = [t for t, _ in EXCLUSIVE["en"]]
    labels, probs = teacher_probs(en_pipeline, texts)
    gold = numpy.array([[float(label == g) for label in labels] for _, g in EXCLUSIVE["en"]])
    expected = alpha * soften(probs, 2.0, multi_label=False) + (1 - alpha) * gold
    numpy.testing.assert_allclose(cats_matrix(examples, labels), expected, atol=1e-5)


def test_multilabel_teacher(multilabel_pipeline, tmp_path):
    texts = write_texts(tmp_path / "texts.jsonl", UNLABELLED)
    corpus = create_teacher_corpus(teacher=multilabel_pipeline, texts=str(texts), gold=gold_corpus(tmp_path, True),
                                   alpha=0.5, temperature=3.0, cache_dir=tmp_path / "cache")
    examples = list(corpus(spacy.blank("en")))
    all_texts = [t for t, _ in MULTILABEL] + UNLABELLED
    labels, probs = teacher_probs(multilabel_pipeline, all_texts)
    soft = soften(probs, 3.0, multi_label=True)
    gold = numpy.array([[float(label in g) for label in labels] for _, g in MULTILABEL])
    expected = numpy.vstack([0.5 * soft[:len(MULTILABEL)] + 0.5 * gold, soft[len(MULTILABEL):]])
    numpy.testing.assert_allclose(cats_matrix(examples, labels), expected, atol=1e-5)
    logits = numpy.log(probs) - numpy.log1p(-probs)
    numpy.testing.assert_allclose(soft, 1 / (1 + numpy.exp(-logits / 3.0)), atol=1e-6)


def test_cached_scores_are_reused_and_give_the_same_targets(en_pipeline, tmp_path, monkeypatch):
    texts = write_texts(tmp_path / "texts.jsonl", UNLABELLED)
    make = lambda: create_teacher_corpus(teacher=en_pipeline, texts=str(texts), gold=gold_corpus(tmp_path),
                                         cache_dir=tmp_path / "cache")
    first = make()
    targets = first.targets(spacy.blank("en"))
    assert first.report.scored_by_teacher == len(UNLABELLED) + len(EXCLUSIVE["en"]) and first.report.from_cache == 0

    def refuse(*args, **kwargs):
        raise AssertionError("the teacher ran although every score is cached")

    monkeypatch.setattr(spacy.language.Language, "pipe", refuse)
    second = make()
    assert second.targets(spacy.blank("en")) == targets
    assert second.report.scored_by_teacher == 0 and second.report.from_cache == len(targets)


def test_a_changed_teacher_gets_its_own_cache(en_pipeline, tmp_path):
    copy = tmp_path / "teacher"
    shutil.copytree(en_pipeline, copy)
    assert folder_fingerprint(copy, "cls_classifier") == folder_fingerprint(en_pipeline, "cls_classifier")
    meta = json.loads((copy / "meta.json").read_text())
    meta["version"] = "0.0.2"
    (copy / "meta.json").write_text(json.dumps(meta))
    assert folder_fingerprint(copy, "cls_classifier") != folder_fingerprint(en_pipeline, "cls_classifier")
    texts = write_texts(tmp_path / "texts.jsonl", UNLABELLED)
    for teacher, computed in ((en_pipeline, len(UNLABELLED)), (copy, len(UNLABELLED)), (copy, 0)):
        corpus = create_teacher_corpus(teacher=teacher, texts=str(texts), cache_dir=tmp_path / "cache")
        corpus.targets(spacy.blank("en"))
        assert corpus.report.scored_by_teacher == computed


def test_new_texts_are_scored_and_cached_ones_read(en_pipeline, tmp_path):
    cache = tmp_path / "cache"
    create_teacher_corpus(teacher=en_pipeline, texts=str(write_texts(tmp_path / "a.jsonl", UNLABELLED[:2])),
                          cache_dir=cache).targets(spacy.blank("en"))
    corpus = create_teacher_corpus(teacher=en_pipeline, texts=str(write_texts(tmp_path / "b.jsonl", UNLABELLED)),
                                   cache_dir=cache)
    corpus.targets(spacy.blank("en"))
    assert (corpus.report.from_cache, corpus.report.scored_by_teacher) == (2, 3)


def test_every_text_read_is_an_example_or_rejected_with_its_id(en_pipeline, tmp_path):
    extra = ['{"text": ""}', "not json", '{"text": "the movie was fun"}', '{"txt": "no text field"}',
             '{"text": "i love this movie, it was great"}', json.dumps({"text": "good " * 300})]
    texts = write_texts(tmp_path / "texts.jsonl", UNLABELLED, extra)
    report = tmp_path / "report.json"
    nlp = spacy.blank("en")
    nlp.max_length = 1000
    corpus = create_teacher_corpus(teacher=en_pipeline, texts=str(texts), gold=gold_corpus(tmp_path),
                                   cache_dir=tmp_path / "cache", report=report)
    examples = list(corpus(nlp))
    saved = json.loads(report.read_text())
    read = saved["gold_read"] + saved["texts_read"]
    assert read == len(EXCLUSIVE["en"]) + len(UNLABELLED) + len(extra)
    assert read == len(examples) + len(saved["rejected"]) == saved["examples"] + len(saved["rejected"])
    reasons = {r["id"]: r["reason"] for r in saved["rejected"]}
    assert set(reasons) == {f"texts.jsonl:{i}" for i in range(6, 12)}
    assert "empty text" in reasons["texts.jsonl:6"]
    assert "the same text as texts.jsonl:1" in reasons["texts.jsonl:8"]
    assert "the same text as gold example 0" in reasons["texts.jsonl:10"]
    assert "max_length" in reasons["texts.jsonl:11"]


def test_plain_text_lines(en_pipeline, tmp_path):
    path = tmp_path / "texts.txt"
    path.write_text("\n".join(UNLABELLED[:3]) + "\n\n" + UNLABELLED[3] + "\n", encoding="utf8")
    corpus = create_teacher_corpus(teacher=en_pipeline, texts=str(path), cache_dir=tmp_path / "cache")
    examples = list(corpus(spacy.blank("en")))
    assert [eg.reference.text for eg in examples] == UNLABELLED[:4]
    assert corpus.report.rejected == [{"id": "texts.txt:4", "reason": "blank line"}]


def test_scores_from_apply_output(en_pipeline, tmp_path):
    from spacy_cls.scale import apply

    texts = write_texts(tmp_path / "texts.jsonl", UNLABELLED)
    apply(en_pipeline, texts, tmp_path / "applied", progress=False)
    more = write_texts(tmp_path / "texts.jsonl", UNLABELLED, ['{"text": "a text apply never saw"}'])
    corpus = create_teacher_corpus(scores=tmp_path / "applied", texts=str(more), temperature=2.0)
    examples = list(corpus(spacy.blank("en")))
    labels, probs = teacher_probs(en_pipeline, UNLABELLED)
    numpy.testing.assert_allclose(cats_matrix(examples, labels), soften(probs, 2.0, multi_label=False), atol=1e-5)
    assert corpus.report.from_apply_output == len(UNLABELLED) and corpus.report.scored_by_teacher == 0
    assert corpus.report.rejected == [{"id": "texts.jsonl:6", "reason": f"no teacher score for this id in {tmp_path / 'applied'}"}]


def test_apply_output_of_another_teacher_is_refused(en_pipeline, multilabel_pipeline, tmp_path):
    from spacy_cls.scale import apply

    texts = write_texts(tmp_path / "texts.jsonl", UNLABELLED)
    apply(multilabel_pipeline, texts, tmp_path / "applied", progress=False)
    corpus = create_teacher_corpus(teacher=en_pipeline, scores=tmp_path / "applied", texts=str(texts),
                                   cache_dir=tmp_path / "cache")
    with pytest.raises(ValueError, match="give the apply output of this teacher"):
        corpus.targets(spacy.blank("en"))


@pytest.mark.parametrize("settings,match", [
    ({}, "needs a teacher"),
    ({"teacher": "x", "temperature": 0}, "above 0"),
    ({"teacher": "x", "temperature": -1.0}, "above 0"),
    ({"teacher": "x", "alpha": 1.5}, "from 0 to 1"),
    ({"teacher": "x", "alpha": -0.1}, "from 0 to 1"),
    ({"scores": "x", "texts": "t.jsonl", "gold": lambda nlp: []}, "gold texts need the teacher"),
    ({"scores": "x"}, "reads nothing"),
])
def test_settings_that_cannot_work_are_refused(settings, match):
    settings = {"texts": "t.jsonl", **settings} if "texts" not in settings and settings.get("teacher") else settings
    with pytest.raises(ValueError, match=match):
        create_teacher_corpus(**settings).targets(spacy.blank("en"))


def test_a_missing_teacher_folder_says_what_to_give(tmp_path):
    with pytest.raises(FileNotFoundError, match="model-best"):
        Teacher(tmp_path / "nothing", None, tmp_path / "cache", 8)


def test_rows_that_share_an_id_are_rejected(en_pipeline, tmp_path):
    from spacy_cls.scale import apply

    texts = tmp_path / "texts.jsonl"
    rows = [{"id": "a", "text": UNLABELLED[0]}, {"id": "b", "text": UNLABELLED[1]}, {"id": "a", "text": UNLABELLED[2]}]
    texts.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf8")
    corpus = create_teacher_corpus(teacher=en_pipeline, texts=str(texts), cache_dir=tmp_path / "cache")
    assert len(list(corpus(spacy.blank("en")))) == 2
    assert corpus.report.rejected[0]["id"] == "a" and "ids must be unique" in corpus.report.rejected[0]["reason"]
    apply(en_pipeline, texts, tmp_path / "applied", progress=False)
    corpus = create_teacher_corpus(scores=tmp_path / "applied", texts=str(texts))
    assert [eg.reference.text for eg in corpus(spacy.blank("en"))] == [UNLABELLED[1]]
    reasons = sorted(r["reason"] for r in corpus.report.rejected)
    assert "ids must be unique" in reasons[1] and "not probabilities" in reasons[0]
