"""How much the [CLS] position attends to each spaCy token: `doc._.cls_attention`.

The weight of a token is the last layer's attention from [CLS] to the token's word
pieces, averaged over heads and summed over pieces. A piece that spans several spaCy
tokens (a Chinese word piece over single-character tokens, "don" over "do" + "n't")
shares its weight among them by the characters it covers in each. Weights are read
from the first window of the text (the encoder's maximum length); tokens beyond it
get 0. The special tokens ([CLS], [SEP]) hold the rest of the attention, so a doc's
weights sum to less than 1.

The weights are computed on request, by an extra forward pass with
`output_attentions=True`; the component's own predictions do not pay for them.
"""
from contextlib import contextmanager
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy
import torch
from spacy.language import Language
from spacy.tokens import Doc
from transformers.utils import logging as hf_logging

from ..pipeline.extensions import CLS_ATTENTION, install_extensions
from ..layers.windows import pad_rows
from ..pipeline.component import ClsClassifierMixin

DEFAULT_BATCH_SIZE = 32


def find_component(nlp_or_component: Union[Language, ClsClassifierMixin], name: Optional[str] = None) -> ClsClassifierMixin:
    """The pipeline's cls_classifier component (by name, or the first one)."""
    if isinstance(nlp_or_component, ClsClassifierMixin):
        return nlp_or_component
    if not isinstance(nlp_or_component, Language):
        raise TypeError(
            f"Expected a spaCy pipeline or a cls_classifier component, got {type(nlp_or_component).__name__}."
        )
    nlp = nlp_or_component
    if name is not None:
        component = nlp.get_pipe(name)
        if not isinstance(component, ClsClassifierMixin):
            raise ValueError(f"The component '{name}' is not a cls_classifier (it is {type(component).__name__}).")
        return component
    for _, component in nlp.pipeline:
        if isinstance(component, ClsClassifierMixin):
            return component
    raise ValueError(
        f"The pipeline has no cls_classifier or cls_classifier_multilabel component "
        f"(its components: {', '.join(nlp.pipe_names) or 'none'})."
    )


def cls_attention(
    nlp_or_component: Union[Language, ClsClassifierMixin],
    docs: Iterable[Doc],
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    name: Optional[str] = None,
) -> List[Doc]:
    """Set `doc._.cls_attention` (float32, one weight per spaCy token) on each doc and
    return the docs. `docs` need not have been through the pipeline."""
    install_extensions()
    component = find_component(nlp_or_component, name)
    docs = list(docs)
    for start in range(0, len(docs), batch_size):
        batch = docs[start : start + batch_size]
        for doc, weights in zip(batch, _batch_weights(component, batch)):
            doc._.set(CLS_ATTENTION, weights)
    return docs


def _batch_weights(component: ClsClassifierMixin, docs: Sequence[Doc]) -> List[numpy.ndarray]:
    from ..layers.onnx_encoder import is_onnx_encoder, refuse_attention

    encoder = component.encoder
    if is_onnx_encoder(encoder):
        raise refuse_attention(component.name)
    if not encoder.shims or "max_length" not in encoder.attrs:
        raise ValueError(
            f"The component '{component.name}' reads a shared transformer component "
            f"({encoder.name}) instead of running its own encoder; cls_attention needs the "
            f"encoder of spacy_cls.ClsClassifier.v1 / spacy_cls.HFClsEncoder.v1."
        )
    shim = encoder.shims[0]
    hf_model = shim._model
    tokenizer = shim._hfmodel.tokenizer
    if hf_model is None or tokenizer is None:
        raise ValueError("The component's encoder is not loaded: initialise the pipeline or load a trained one.")
    texts = [doc.text for doc in docs]
    encoding = tokenizer(
        texts,
        add_special_tokens=True,
        truncation=True,
        max_length=encoder.attrs["max_length"],
        return_offsets_mapping=True,
        return_special_tokens_mask=True,
        return_attention_mask=False,
        return_token_type_ids=False,
        split_special_tokens=True,
        padding=False,
    )
    # Padded on the right by hand: [CLS] must be at position 0 whatever the tokenizer's padding side.
    input_ids, attention_mask = pad_rows(encoding["input_ids"], tokenizer.pad_token_id or 0)
    piece_weights = _cls_row(hf_model, input_ids, attention_mask, shim.device)
    weights = []
    for i, doc in enumerate(docs):
        n_pieces = len(encoding["input_ids"][i])
        is_text = numpy.asarray(encoding["special_tokens_mask"][i]) == 0
        offsets = numpy.asarray(encoding["offset_mapping"][i], dtype=numpy.int64).reshape(-1, 2)
        weights.append(token_weights(doc, offsets, piece_weights[i, :n_pieces], is_text))
    return weights


def _cls_row(hf_model, input_ids: numpy.ndarray, attention_mask: numpy.ndarray, device) -> numpy.ndarray:
    """(n_docs, n_pieces): last-layer attention from position 0, mean over heads."""
    inputs = {
        "input_ids": torch.from_numpy(input_ids.astype("int64")).to(device),
        "attention_mask": torch.from_numpy(attention_mask.astype("int64")).to(device),
    }
    with _eager_attention(hf_model), torch.no_grad():
        output = hf_model(**inputs, output_attentions=True, return_dict=True)
    attentions = getattr(output, "attentions", None)
    if not attentions or attentions[-1] is None:
        raise ValueError(
            f"The encoder ({type(hf_model).__name__}) returned no attention weights, so "
            f"there is nothing to explain with. Use a BERT-family encoder whose attention "
            f"implementation can return them ('eager')."
        )
    return attentions[-1][:, :, 0, :].float().mean(dim=1).cpu().numpy()


@contextmanager
def _eager_attention(hf_model) -> Iterator[None]:
    """Inference mode with an attention implementation that returns its weights.

    Models that pick the attention function per call read `config._attn_implementation`;
    BERT's SDPA layers fall back to the eager computation by themselves when asked for
    weights, with a warning that this silences. Either way the hidden states are those
    of the SDPA path up to float rounding.
    """
    config = hf_model.config
    previous_impl = getattr(config, "_attn_implementation", None)
    was_training = hf_model.training
    verbosity = hf_logging.get_verbosity()
    try:
        if previous_impl is not None:
            config._attn_implementation = "eager"
        hf_model.eval()
        hf_logging.set_verbosity_error()
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if previous_impl is not None:
            config._attn_implementation = previous_impl
        hf_model.train(was_training)


def token_weights(doc: Doc, offsets: numpy.ndarray, weights: numpy.ndarray, is_text: numpy.ndarray) -> numpy.ndarray:
    """Spread word-piece weights over the spaCy tokens whose characters they cover."""
    result = numpy.zeros(len(doc), dtype=numpy.float32)
    if not len(doc):
        return result
    char_token = char_to_token(doc)
    for (start, end), weight, text in zip(offsets, weights, is_text):
        if not text or end <= start:
            continue
        covered = char_token[start:end]
        covered = covered[covered >= 0]
        if covered.size:
            numpy.add.at(result, covered, numpy.float32(weight / covered.size))
    return result


def char_to_token(doc: Doc) -> numpy.ndarray:
    """For each character of doc.text, the index of its spaCy token (-1: whitespace)."""
    index = numpy.full(len(doc.text), -1, dtype=numpy.int64)
    for token in doc:
        index[token.idx : token.idx + len(token.text)] = token.i
    return index


def top_tokens(doc: Doc, n: int = 5) -> List[Tuple[str, float]]:
    """The n tokens with the highest `cls_attention`, highest first."""
    weights = doc._.get(CLS_ATTENTION)
    if weights is None:
        raise ValueError("doc._.cls_attention is not set: run spacy_cls.explain.attention.cls_attention(nlp, docs) first.")
    order = numpy.argsort(-weights, kind="stable")[:n]
    return [(doc[int(i)].text, float(weights[i])) for i in order]
