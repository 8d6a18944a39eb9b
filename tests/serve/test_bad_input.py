"""Bad input gets its own status and a message that says what is wrong: 422 for
malformed JSON and wrong types, 413 over the limits, a per-item error for a text
that cannot be processed (its neighbours are answered)."""
import json

import httpx
import pytest
import spacy

from serve_helpers import assert_same, expected, start


@pytest.fixture(scope="module")
def server(en_pipeline):
    s = start(en_pipeline, max_texts_per_request=5, max_text_chars=300, max_body_bytes=2000, max_queue_texts=50)
    yield s
    s.stop()


def _post(server, content: bytes, headers=None):
    return httpx.post(server.url + "/v1/classify", content=content,
                      headers={"content-type": "application/json", **(headers or {})}, timeout=30)


@pytest.mark.parametrize("body, says", [
    (b'{"texts": ["a", ', "not JSON"),
    (b'{"texts": ["a"]} trailing', "not JSON"),
    (b"", "empty"),
    (b"   ", "empty"),
    (b"\xff\xfe{}", "not"),
    (b'["a", "b"]', "not an object"),
    (b'"just a string"', "not an object"),
    (b"null", "not an object"),
    (b"{}", "texts: missing"),
    (b'{"text": "a"}', "text: unknown field"),
    (b'{"texts": 5}', "texts: a JSON number"),
    (b'{"texts": null}', "texts: a JSON null"),
    (b'{"texts": {"a": 1}}', "texts: a JSON object"),
    (b'{"texts": ["ok", 3, null, ["x"]]}', "texts[1]: a JSON number"),
    (b'{"texts": ["ok", ["x"]]}', "texts[1]: a JSON array"),
    (b'{"texts": ["a"], "vectors": "yes"}', "vectors: a JSON string"),
    (b'{"texts": ["a"], "vectors": 1}', "vectors: a JSON number"),
    (b'{"texts": []}', "texts is empty"),
    (b'{"texts": ["a"], "vectors": NaN}', "vectors: a JSON number"),
    (b'{"texts": ["a"], "vectors": null}', "vectors: a JSON null"),
    (b'{"texts": ["a"], "texts2": ["b"], "extra": 1}', "extra: unknown field"),
])
def test_malformed_json_and_wrong_types_get_422_with_the_reason(server, body, says):
    r = _post(server, body)
    assert r.status_code == 422, r.text
    assert says in r.json()["error"]


def test_json_nested_too_deeply_is_422_not_a_crash():
    from spacy_cls.serve.app import HttpError, _parse

    for body in (b"[" * 100_000 + b"]" * 100_000, b'{"texts": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"):
        with pytest.raises(HttpError) as e:
            _parse(body)
        assert e.value.status == 422 and "nested too deeply" in e.value.message


def test_a_text_the_tokenizer_cannot_count_is_that_texts_error(server, monkeypatch):
    served = server.service.served

    def broken(text):
        if "count me not" in text:
            raise RuntimeError("cannot count")
        return type(served).word_pieces(served, text)

    monkeypatch.setattr(served, "word_pieces", broken)
    r = _post(server, json.dumps({"texts": ["fine", "count me not"]}).encode())
    assert r.status_code == 200 and r.json()["errors"] == 0  # counted as a full-length text, then classified


def test_limits_give_413(server):
    too_many = _post(server, json.dumps({"texts": ["a"] * 6}).encode())
    assert too_many.status_code == 413 and "6 texts" in too_many.json()["error"]
    too_long = _post(server, json.dumps({"texts": ["ok", "x" * 301]}).encode())
    assert too_long.status_code == 413 and "texts[1]" in too_long.json()["error"]
    big = b"{\"texts\": [\"a\"]" + b" " * 2100 + b"}"  # valid JSON, but over the byte limit
    assert len(big) > 2000
    declared = _post(server, big)
    assert declared.status_code == 413 and "--max-body-bytes" in declared.json()["error"]

    def chunks():  # no Content-Length: the body is counted as it arrives
        for i in range(0, len(big), 256):
            yield big[i:i + 256]

    streamed = httpx.post(server.url + "/v1/classify", content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413
    metrics = httpx.get(server.url + "/metrics").text
    assert 'spacy_cls_rejections_total{reason="body_too_large"} 2.0' in metrics
    assert 'spacy_cls_rejections_total{reason="too_many_texts"} 1.0' in metrics


def test_a_text_over_the_max_length_is_truncated_not_refused(server, en_pipeline):
    long_text = "good movie " * 100  # 200 word pieces; the model reads 64
    r = _post(server, json.dumps({"texts": [long_text[:300]]}).encode())
    assert r.status_code == 200
    assert_same(r.json()["results"][0]["components"], expected(spacy.load(en_pipeline), [long_text[:300]], False)[0])


@pytest.mark.parametrize("bad", ["\\ud800", "a\\udfffb", "\\udc80 tail", "ok \\ud83d"])
def test_a_lone_surrogate_gets_a_per_item_error_and_the_neighbours_are_answered(server, en_pipeline, bad):
    body = ('{"texts": ["i love this movie", "%s", "terrible food"]}' % bad).encode()
    r = _post(server, body)
    assert r.status_code == 200, r.text
    rows = r.json()["results"]
    assert r.json()["errors"] == 1 and "surrogate" in rows[1]["error"] and "components" not in rows[1]
    want = expected(spacy.load(en_pipeline), ["i love this movie", "terrible food"], vectors=False)
    assert_same(rows[0]["components"], want[0])
    assert_same(rows[2]["components"], want[1])


def test_surrogate_safe_pipeline_answers_such_texts(en_pipeline, tmp_path):
    nlp = spacy.load(en_pipeline)
    config = nlp.config.copy()
    config["nlp"]["tokenizer"] = {"@tokenizers": "spacy_cls.SurrogateSafeTokenizer.v1"}
    safe = spacy.blank("en", config={"nlp": {"tokenizer": config["nlp"]["tokenizer"]}})
    safe.add_pipe("cls_classifier", source=nlp)
    safe.to_disk(tmp_path / "safe")
    s = start(tmp_path / "safe")
    try:
        r = httpx.post(s.url + "/v1/classify", content=b'{"texts": ["\\ud800 good", "good"]}',
                       headers={"content-type": "application/json"})
        assert r.status_code == 200 and r.json()["errors"] == 0
    finally:
        s.stop()
