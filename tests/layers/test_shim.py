"""Loading saved encoder weights: a missing parameter is an error, not random weights."""
import warnings
from io import BytesIO

import pytest
import spacy
import srsly
import torch
from spacy.training import Example

from spacy_cls.layers.shim import PartialWeightsError


@pytest.fixture
def encoder_and_bytes(tiny_bert):
    nlp = spacy.blank("en")
    component = nlp.add_pipe("cls_classifier", config={"model": {"name": tiny_bert}})
    examples = [Example.from_dict(nlp.make_doc(text), {"cats": {"A": float(a), "B": float(not a)}})
                for text, a in (("good", True), ("bad", False))]
    nlp.initialize(lambda: examples)
    encoder = component.encoder
    return encoder, encoder.shims[0].to_bytes()


def _edited(shim_bytes: bytes, edit) -> bytes:
    msg = srsly.msgpack_loads(shim_bytes)
    state = torch.load(BytesIO(msg["state"]), map_location="cpu", weights_only=True)
    edit(state)
    out = BytesIO()
    torch.save(state, out)
    msg["state"] = out.getvalue()
    return srsly.msgpack_dumps(msg)


def test_round_trip_is_quiet(encoder_and_bytes):
    encoder, data = encoder_and_bytes
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        encoder.shims[0].from_bytes(data)


def test_missing_parameter_is_an_error(encoder_and_bytes):
    encoder, data = encoder_and_bytes
    broken = _edited(data, lambda state: state.pop("encoder.layer.0.attention.self.query.weight"))
    with pytest.raises(PartialWeightsError, match="lack 1 of the encoder's parameters.*query.weight"):
        encoder.shims[0].from_bytes(broken)


def test_leftover_tensor_loads_with_a_warning(encoder_and_bytes):
    encoder, data = encoder_and_bytes
    expected = encoder.shims[0]._model.state_dict()["pooler.dense.weight"].clone()
    extra = _edited(data, lambda state: state.__setitem__("embeddings.old_buffer", torch.zeros(3)))
    with pytest.warns(UserWarning, match="does not use \\(embeddings.old_buffer\\); every parameter was loaded"):
        encoder.shims[0].from_bytes(extra)
    torch.testing.assert_close(encoder.shims[0]._model.state_dict()["pooler.dense.weight"], expected)
