"""An encoder that reads the [CLS] rows from a `transformer` component earlier in
the pipeline (spacy-transformers), instead of running a second transformer.

It wraps spacy-transformers' own ``TransformerListener``: the `transformer`
component finds it (``find_listeners``), hands it each training batch's outputs
with a backprop callback (``receive``), and at prediction time it reads
``doc._.trf_data``. On top of the listener, this layer turns each doc's
``TransformerData`` into one row: the last-layer [CLS] row of every window
(span) the transformer read for the doc, averaged over the windows, and the
pooled features for the head, computed the same way. The gradient of the
features goes back into ``last_hidden_state``, so training fine-tunes the
shared transformer.

``TransformerClsReader`` is the same layer reading a transformer of its own (a
spacy-transformers ``TransformerModel``) instead of a shared one: what
``nlp.replace_listeners`` turns the listener into, by swapping the inner
``TransformerListener`` for ``chain(TransformerModel, split_trf_batch())`` (the
replacement spacy-transformers makes for its own listeners), and what the component
is rebuilt with when such a pipeline is loaded.
"""
from typing import Callable, List, Optional, Tuple

import torch
from spacy.tokens import Doc
from spacy_transformers.data_classes import TransformerData
from spacy_transformers.layers import TransformerListener, TransformerModel
from spacy_transformers.layers.split_trf import split_trf_batch
from thinc.api import Model, chain, torch2xp, xp2torch
from thinc.types import Floats2d
from transformers.file_utils import ModelOutput

from .encoder import EncoderOutput
from .pooling import check_pooling, pool, pooled_width

LISTENER_POOLINGS = ("cls", "mean", "max", "cls_mean")


def check_listener_pooling(pooling: str) -> None:
    check_pooling(pooling)
    if pooling not in LISTENER_POOLINGS:
        raise ValueError(
            f"pooling='{pooling}' is not available on a shared transformer: its "
            f"pooler output is not trained through the listener. Choose one of "
            f"{', '.join(LISTENER_POOLINGS)} (pooling='cls' reads the same [CLS] row "
            f"without the pooler's dense layer)."
        )


def TransformerClsListener(
    pooling: str = "cls", grad_factor: float = 1.0, upstream: str = "*"
) -> Model[List[Doc], EncoderOutput]:
    check_listener_pooling(pooling)
    return _cls_reader(TransformerListener(upstream_name=upstream), pooling, grad_factor)


def TransformerClsReader(
    transformer: Model, pooling: str = "cls", grad_factor: float = 1.0
) -> Model[List[Doc], EncoderOutput]:
    """The [CLS] rows of the component's own spacy-transformers `TransformerModel`."""
    check_listener_pooling(pooling)
    if not isinstance(transformer, TransformerModel):
        raise ValueError(
            f"Expected a spacy-transformers TransformerModel (e.g. "
            f"spacy-transformers.TransformerModel.v3) to read [CLS] rows from, got the layer "
            f"'{transformer.name}'. For the component's own Hugging Face encoder use "
            f"spacy_cls.HFClsEncoder.v1; to share a `transformer` component use "
            f"spacy_cls.TransformerClsListener.v1."
        )
    return _cls_reader(chain(transformer, split_trf_batch()), pooling, grad_factor)


def _cls_reader(source: Model, pooling: str, grad_factor: float) -> Model[List[Doc], EncoderOutput]:
    # The ref keeps the name "listener" for both sources: saved pipelines name it.
    return Model(
        "trf_cls_listener",
        forward,
        init=init,
        layers=[source],
        refs={"listener": source},
        dims={"nO": None, "nI": None},
        attrs={"pooling": pooling, "grad_factor": grad_factor},
    )


def reads_shared_transformer(model: Model) -> bool:
    """True when the layer listens to a `transformer` component; False when it runs
    a transformer of its own (after `nlp.replace_listeners`)."""
    return isinstance(model.get_ref("listener"), TransformerListener)


def _source_width(source: Model) -> Optional[int]:
    for node in source.walk():
        if node.has_dim("nO"):
            return node.get_dim("nO")
    return None


def init(model: Model, X: Optional[List[Doc]] = None, Y=None) -> None:
    listener = model.get_ref("listener")
    if not reads_shared_transformer(model):
        listener.initialize(X=X)
    width = _source_width(listener)
    if width is None:
        raise ValueError(
            f"The [CLS] listener does not know the width of the transformer it listens to "
            f"(upstream='{getattr(listener, 'upstream_name', '*')}'). Put a `transformer` component "
            f"(spacy-transformers) before this component in the pipeline, e.g. "
            f'nlp.add_pipe("transformer", first=True), and initialize them together '
            f"with nlp.initialize()."
        )
    model.set_dim("nI", width, force=True)
    model.set_dim("nO", pooled_width(width, model.attrs["pooling"]), force=True)


def _hidden(data: TransformerData):
    """The doc's last_hidden_state, (n_windows, length, width), or None for a doc
    the transformer read nothing of (an empty doc)."""
    if not isinstance(data, TransformerData):
        raise ValueError(
            f"Expected spacy-transformers' TransformerData from the listener, got "
            f"{type(data).__name__}. The [CLS] listener needs a `transformer` component "
            f"with a spacy-transformers TransformerModel architecture."
        )
    return data.model_output.get("last_hidden_state") if data.model_output is not None else None


def forward(model: Model, docs: List[Doc], is_train: bool) -> Tuple[EncoderOutput, Callable]:
    listener = model.get_ref("listener")
    if not reads_shared_transformer(model) and not any(len(doc) for doc in docs):
        # A transformer of its own cannot run on no spans; the `transformer`
        # component makes the same exception for a batch without tokens.
        trf_datas, backprop_listener = [TransformerData.empty() for _ in docs], lambda d_trf_datas: []
    else:
        trf_datas, backprop_listener = listener(docs, is_train)
    ops = model.ops
    pooling = model.attrs["pooling"]
    width = model.get_dim("nI")
    hiddens = [_hidden(data) for data in trf_datas]
    present = [i for i, h in enumerate(hiddens) if h is not None and h.size > 0]
    # Only the [CLS] position matters for pooling="cls": copy that row alone.
    n_positions = 1 if pooling == "cls" else max((hiddens[i].shape[1] for i in present), default=1)
    n_windows = [hiddens[i].shape[0] for i in present]
    total = sum(n_windows)
    padded = ops.alloc3f(total, n_positions, width)
    mask = ops.alloc2f(total, n_positions)
    doc_index = ops.alloc1i(total)
    row = 0
    for i, n in zip(present, n_windows):
        length = min(hiddens[i].shape[1], n_positions)
        padded[row : row + n, :length] = ops.asarray(hiddens[i][:, :length], dtype="float32")
        mask[row : row + n, :length] = ops.asarray(trf_datas[i].wordpieces.attention_mask[:, :length])
        doc_index[row : row + n] = i
        row += n
    hidden_t = xp2torch(padded, requires_grad=is_train)
    mask_t = xp2torch(mask)
    index_t = xp2torch(doc_index).long()
    with torch.set_grad_enabled(is_train):
        features_t = average_by_doc(pool(hidden_t, mask_t, None, pooling), index_t, len(docs))
    cls_t = average_by_doc(hidden_t[:, 0].detach(), index_t, len(docs))
    output = EncoderOutput(cls=torch2xp(cls_t, ops=ops), features=torch2xp(features_t.detach(), ops=ops))

    def backprop(d_output: Floats2d) -> List[Doc]:
        d_padded = None
        if total:
            d_features = xp2torch(ops.asarray2f(d_output), device=features_t.device)
            (d_hidden_t,) = torch.autograd.grad(features_t, hidden_t, d_features)
            d_padded = torch2xp(d_hidden_t, ops=ops) * model.attrs["grad_factor"]
        # One gradient per doc with an output, like spacy-transformers' own
        # listeners, so that the `transformer` component can add them up.
        d_trf_datas = []
        rows = dict(zip(present, zip(_starts(n_windows), n_windows)))
        for i, (data, hidden) in enumerate(zip(trf_datas, hiddens)):
            if hidden is None:
                continue
            d_hidden = ops.alloc(hidden.shape, dtype=hidden.dtype)
            if i in rows:
                start, n = rows[i]
                length = min(hidden.shape[1], n_positions)
                d_hidden[:, :length] = d_padded[start : start + n, :length]
            d_trf_datas.append(
                TransformerData(
                    wordpieces=data.wordpieces,
                    model_output=ModelOutput(last_hidden_state=d_hidden),
                    align=data.align,
                )
            )
        backprop_listener(d_trf_datas)
        return docs

    return output, backprop


def _starts(sizes: List[int]) -> List[int]:
    starts, total = [], 0
    for size in sizes:
        starts.append(total)
        total += size
    return starts


def average_by_doc(rows: torch.Tensor, doc_index: torch.Tensor, n_docs: int) -> torch.Tensor:
    """Mean of the rows of each doc; zeros for a doc without rows."""
    sums = rows.new_zeros((n_docs, rows.shape[1])).index_add(0, doc_index, rows)
    counts = torch.bincount(doc_index, minlength=n_docs).clamp(min=1).to(rows.dtype)
    return sums / counts.unsqueeze(1)
