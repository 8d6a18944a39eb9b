"""Registered architectures: composition only; the layers live in ``layers/``."""
from functools import partial
from typing import Callable, Dict, List, Optional, Tuple, Union

from spacy.tokens import Doc
from spacy.util import registry
from spacy_transformers.layers import TransformerListener, TransformerModel
from thinc.api import Dropout, Linear, Model, Softmax_v2, chain, normal_init
from thinc.types import Floats2d

from ..layers.encoder import (
    DEFAULT_CACHE_SIZE,
    DEFAULT_MAX_WINDOWS,
    DEFAULT_SUB_BATCH_SIZE,
    EncoderOutput,
    HFClsEncoder,
)
from ..layers.head import NORMALIZE_FEATURES, l2_normalize, sigmoid_logit_grad
from ..layers.listener import TransformerClsListener, TransformerClsReader


@registry.architectures("spacy_cls.HFClsEncoder.v1")
def build_hf_cls_encoder(
    name: Optional[str] = None,
    pooling: str = "cls",
    freeze: bool = False,
    max_length: Optional[int] = None,
    long_text: str = "truncate",
    stride: int = 128,
    max_windows: Optional[int] = DEFAULT_MAX_WINDOWS,
    mixed_precision: bool = False,
    grad_scaler_config: Optional[Dict] = None,
    tokenizer_config: Optional[Dict] = None,
    transformer_config: Optional[Dict] = None,
    mixed_precision_dtype: str = "float16",
    cache_size: int = DEFAULT_CACHE_SIZE,
    quantize_int8: bool = False,
    sub_batch_size: int = DEFAULT_SUB_BATCH_SIZE,
    layers: Optional[Union[int, List[int]]] = None,
) -> Model[List[Doc], EncoderOutput]:
    """A Hugging Face encoder that outputs each doc's [CLS] row and pooled features.
    Speed settings (docs/performance.md): mixed_precision_dtype (float16|bfloat16, CUDA),
    cache_size (docs whose outputs a frozen encoder keeps; 0: off), quantize_int8 (CPU
    inference with int8 linear layers), sub_batch_size (most rows a forward pass holds; 0: no cap).
    layers: a student with fewer layers than the checkpoint (docs/distill.md): N keeps
    layer i * L // N of L (3 of 6: layers 0, 2, 4), a list keeps those; null: all."""
    return HFClsEncoder(
        name,
        pooling=pooling,
        freeze=freeze,
        max_length=max_length,
        long_text=long_text,
        stride=stride,
        max_windows=max_windows,
        mixed_precision=mixed_precision,
        grad_scaler_config=grad_scaler_config,
        tokenizer_config=tokenizer_config,
        transformer_config=transformer_config,
        mixed_precision_dtype=mixed_precision_dtype,
        cache_size=cache_size,
        quantize_int8=quantize_int8,
        sub_batch_size=sub_batch_size,
        layers=layers,
    )


@registry.architectures("spacy_cls.TransformerClsListener.v1")
def build_transformer_cls_listener(
    pooling: str = "cls", grad_factor: float = 1.0, upstream: str = "*"
) -> Model[List[Doc], EncoderOutput]:
    """An encoder that reads each doc's [CLS] row from a spacy-transformers
    `transformer` component earlier in the pipeline, instead of running its own.
    grad_factor scales the gradient passed to the transformer (0: keep it frozen
    with respect to this component); upstream names the transformer ("*": any)."""
    return TransformerClsListener(pooling=pooling, grad_factor=grad_factor, upstream=upstream)


@registry.architectures("spacy_cls.ClsClassifier.v1")
def build_cls_classifier(
    name: Optional[str] = None,
    pooling: str = "cls",
    freeze: bool = False,
    max_length: Optional[int] = None,
    long_text: str = "truncate",
    stride: int = 128,
    max_windows: Optional[int] = DEFAULT_MAX_WINDOWS,
    exclusive_classes: bool = True,
    dropout: float = 0.1,
    mixed_precision: bool = False,
    grad_scaler_config: Optional[Dict] = None,
    tokenizer_config: Optional[Dict] = None,
    transformer_config: Optional[Dict] = None,
    nO: Optional[int] = None,
    mixed_precision_dtype: str = "float16",
    cache_size: int = DEFAULT_CACHE_SIZE,
    quantize_int8: bool = False,
    sub_batch_size: int = DEFAULT_SUB_BATCH_SIZE,
    layers: Optional[Union[int, List[int]]] = None,
) -> Model[List[Doc], Floats2d]:
    """The default model of `cls_classifier`: a Hugging Face encoder, a pooling and a
    linear head, with every setting flat so that `config={"model": {"name": ...}}` works.
    `layers` makes a shallower student of the checkpoint (docs/distill.md)."""
    encoder = build_hf_cls_encoder(
        name,
        pooling=pooling,
        freeze=freeze,
        max_length=max_length,
        long_text=long_text,
        stride=stride,
        max_windows=max_windows,
        mixed_precision=mixed_precision,
        grad_scaler_config=grad_scaler_config,
        tokenizer_config=tokenizer_config,
        transformer_config=transformer_config,
        mixed_precision_dtype=mixed_precision_dtype,
        cache_size=cache_size,
        quantize_int8=quantize_int8,
        sub_batch_size=sub_batch_size,
        layers=layers,
    )
    return build_classifier_on_encoder(encoder, exclusive_classes, dropout, nO)


@registry.architectures("spacy_cls.ClsClassifierOnEncoder.v1")
def build_classifier_on_encoder(
    encoder: Model[List[Doc], EncoderOutput],
    exclusive_classes: bool = True,
    dropout: float = 0.1,
    nO: Optional[int] = None,
) -> Model[List[Doc], Floats2d]:
    """A linear head (softmax or sigmoid) on any encoder that yields `EncoderOutput`.
    The component reaches the parts as `model.get_ref("encoder")` and `get_ref("head")`."""
    if exclusive_classes:
        # Small random weights, as Hugging Face initialises its classifiers (std 0.02;
        # thinc's normal_init names the standard deviation `mean`). Softmax_v2's default
        # zero start sends no gradient into a fine-tuned encoder until Adam has grown the
        # head, which at BERT learning rates (2e-5..5e-5) takes hundreds of steps.
        output_layer = Softmax_v2(nO, init_W=partial(normal_init, mean=0.02))
    else:
        output_layer = chain(Linear(nO), sigmoid_logit_grad())  # Linear: Glorot start
    head = chain(Dropout(dropout), output_layer)
    return Model(
        "cls_classifier",
        _classifier_forward,
        init=_classifier_init,
        layers=[encoder, head],
        refs={"encoder": encoder, "head": head, "output_layer": output_layer},
        dims={"nO": nO},
        attrs={"multi_label": not exclusive_classes, NORMALIZE_FEATURES: False},
    )


@registry.architectures("spacy_cls.ClsClassifierOnEncoder.v2")
def build_classifier_on_encoder_v2(
    tok2vec: Model,
    exclusive_classes: bool = True,
    dropout: float = 0.1,
    nO: Optional[int] = None,
) -> Model[List[Doc], Floats2d]:
    """v1 with the encoder under `tok2vec`, where spaCy's `nlp.replace_listeners`
    looks for a listener (path "model.tok2vec"). Besides an encoder that yields
    `EncoderOutput`, `tok2vec` may be a spacy-transformers `TransformerModel`: what
    replace_listeners writes in place of `spacy_cls.TransformerClsListener.v1`, whose
    [CLS] rows the head then reads (pooling and grad_factor are kept with the weights)."""
    if isinstance(tok2vec, TransformerModel):
        tok2vec = TransformerClsReader(tok2vec)
    elif tok2vec.name != "trf_cls_listener" and any(isinstance(node, TransformerListener) for node in tok2vec.walk()):
        raise ValueError(
            f"The layer '{tok2vec.name}' listens to a `transformer` component for token "
            f"vectors; the classifier reads one [CLS] row a doc. Use "
            f'{{"@architectures": "spacy_cls.TransformerClsListener.v1"}} for its tok2vec.'
        )
    return build_classifier_on_encoder(tok2vec, exclusive_classes, dropout, nO)


def _classifier_forward(model: Model, docs: List[Doc], is_train: bool) -> Tuple[Floats2d, Callable]:
    encoder, head = model.layers
    encoded, backprop_encoder = encoder(docs, is_train)
    features, backprop_features = encoded.features, None
    if model.attrs.get(NORMALIZE_FEATURES):
        features, backprop_features = l2_normalize(model.ops, features)
    scores, backprop_head = head(features, is_train)

    def backprop(d_scores: Floats2d) -> List[Doc]:
        d_features = backprop_head(d_scores)
        if backprop_features is not None:
            d_features = backprop_features(d_features)
        return backprop_encoder(d_features)

    return scores, backprop


def _classifier_init(model: Model, X: Optional[List[Doc]] = None, Y: Optional[Floats2d] = None) -> None:
    encoder, head = model.layers
    encoder.initialize(X=X)
    n_labels = Y.shape[1] if Y is not None else model.get_dim("nO")
    model.set_dim("nO", n_labels, force=True)
    output_layer = model.get_ref("output_layer")
    linear = output_layer.layers[0] if output_layer.layers else output_layer
    linear.set_dim("nI", encoder.get_dim("nO"), force=True)
    linear.set_dim("nO", n_labels, force=True)
    head.initialize()
