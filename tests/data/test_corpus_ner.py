"""`spacy_cls.JsonlCatsEntsCorpus.v1` accounts for every line: blank, undecodable,
unwritable or too long lines are counted in its warning, never dropped or fatal."""
import logging

import pytest
import spacy

from spacy_cls.data.corpus_ner import create_jsonl_cats_ents_corpus, read_cats_ents


def test_every_line_is_yielded_or_skipped_with_a_reason(tmp_path, caplog):
    path = tmp_path / "a.jsonl"
    path.write_bytes(
        b'{"text": "Maria won.", "label": "SPORTS", "entities": [[0, 5, "PERSON"]]}\n'
        b"\n"
        b'{"text": "caf\xe9", "label": "BUSINESS"}\n'
        b'{"text": "bad \\ud800", "label": "BUSINESS"}\n'
        b'{"text": "a long text here", "label": "BUSINESS"}\n'
        b'{"text": "Markets rose.", "label": "BUSI\\rNESS"}\n'
        b'{"text": "Markets fell.", "label": "BUSINESS"}\n'
    )
    nlp = spacy.blank("en")
    nlp.max_length = 15
    with caplog.at_level(logging.WARNING, logger="spacy_cls"):
        examples = list(create_jsonl_cats_ents_corpus(path)(nlp))
    assert [eg.reference.text for eg in examples] == ["Maria won.", "Markets fell."]
    assert "skipped 5 of 7 lines" in caplog.text
    rows, skipped = read_cats_ents(path, max_length=15)
    reasons = dict(skipped)
    assert reasons[2] == "blank line" and "cannot decode as utf-8" in reasons[3]
    assert "lone surrogate" in reasons[4] and "nlp.max_length (15)" in reasons[5]
    assert "control character" in reasons[6]


def test_a_docbin_is_refused(tmp_path):
    path = tmp_path / "train.spacy"
    path.write_bytes(b"x")
    with pytest.raises(ValueError, match="spacy.Corpus.v1"):
        read_cats_ents(path)
