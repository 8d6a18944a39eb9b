"""The registered architecture of the ONNX Runtime encoder that `optimize` writes into
a trained pipeline's config (composed with ``spacy_cls.ClsClassifierOnEncoder.v1``)."""
from typing import List, Optional

from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import Model

from ..layers.encoder import EncoderOutput
from ..layers.onnx_encoder import OnnxClsEncoder


@registry.architectures("spacy_cls.OnnxClsEncoder.v1")
def build_onnx_cls_encoder(
    pooling: str,
    max_length: int,
    hidden_width: int,
    sha256: str,
    long_text: str = "truncate",
    stride: int = 128,
    max_windows: Optional[int] = 16,
    sub_batch_size: int = 0,
    threads: int = 0,
    int8: bool = False,
) -> Model[List[Doc], EncoderOutput]:
    """An encoder graph run by ONNX Runtime on the CPU, for prediction only. pooling,
    max_length, hidden_width, sha256 and int8 describe the saved graph (written by
    optimize; do not edit them); long_text, stride, max_windows, sub_batch_size and
    threads (ONNX Runtime's intra-op threads; 0: as many as torch uses) may be changed."""
    return OnnxClsEncoder(
        pooling=pooling,
        max_length=max_length,
        hidden_width=hidden_width,
        sha256=sha256,
        long_text=long_text,
        stride=stride,
        max_windows=max_windows,
        sub_batch_size=sub_batch_size,
        threads=threads,
        int8=int8,
    )
