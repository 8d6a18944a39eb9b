"""Export a torch encoder to the ONNX graph that the ONNX Runtime backend runs
(``models/onnx.py``): the same computation as the torch prediction path, with the last
layer at [CLS] only when the pooling needs nothing else."""
import tempfile
import warnings
from pathlib import Path
from typing import Callable, Optional

from ..models.onnx import INPUT_NAMES, OPSET, Int8Recipe, fuse_graph, output_names, quantize_graph, require_onnxruntime
from .cls_forward import cls_only_rows, encode_rows
from .pooling import pool


def _export_module(transformer, pooling: str, cls_only: bool):
    """A torch module with the graph's signature, built on the encoder's own modules."""
    import torch

    class ExportedEncoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.transformer = transformer

        def forward(self, input_ids, attention_mask):
            if cls_only:
                rows = self._cls_only(input_ids, attention_mask)
                pooler = getattr(self.transformer, "pooler", None)
                pooler_output = pooler(rows) if pooling == "pooler" else None
            else:
                encoded = encode_rows(
                    self.transformer, input_ids, attention_mask, cls_only=False, need_pooler=pooling == "pooler"
                )
                rows, pooler_output = encoded.hidden, encoded.pooler_output
            cls = rows[:, 0]
            if pooling == "cls":
                return cls
            return cls, pool(rows, attention_mask, pooler_output, pooling)

        def _cls_only(self, input_ids, attention_mask):
            # encode_rows(cls_only=True) skips the mask when no row is padded, a
            # data-dependent branch that a traced graph would freeze; here the mask
            # is always applied (the same numbers).
            return cls_only_rows(self.transformer, input_ids, attention_mask, padded=True)

    return ExportedEncoder().eval()


def export_graph(transformer, pooling: str, cls_only: bool, path: Path) -> None:
    """Write the float32 graph of `transformer` (a torch module on CPU) to `path`."""
    import torch

    module = _export_module(transformer, pooling, cls_only)
    vocab_size = int(getattr(transformer.config, "vocab_size", 100) or 100)
    # Three rows of a length other than 1 (a size of 1 would be baked in as a constant).
    ids = (torch.arange(3 * 7).reshape(3, 7) * 31 + 5) % vocab_size
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    outputs = output_names(pooling)
    axes = {name: {0: "batch", 1: "length"} for name in INPUT_NAMES}
    axes.update({name: {0: "batch"} for name in outputs})
    with torch.no_grad(), warnings.catch_warnings():
        # The tracer warns about the one-row branch in last_layer_at_cls; the traced
        # graph takes the general (several rows) branch, correct for any batch size.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        # The TorchScript-based exporter: it handles Hugging Face's BERT modules as
        # they are, and ONNX Runtime's transformer optimizer recognises its patterns.
        torch.onnx.export(
            module,
            (ids, mask),
            str(path),
            input_names=list(INPUT_NAMES),
            output_names=list(outputs),
            dynamic_axes=axes,
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )


def build_graph(
    transformer, pooling: str, cls_only: bool, int8: bool, recipe: Optional[Int8Recipe] = None,
    choose_recipe: Optional[Callable[[Path], Int8Recipe]] = None,
) -> bytes:
    """The optimised (and, with `int8`, quantised following `recipe`) graph of a CPU
    torch encoder, as bytes. `choose_recipe`, given the optimised float32 graph's path,
    returns the recipe instead (int8 calibration)."""
    require_onnxruntime()
    with tempfile.TemporaryDirectory(prefix="spacy_cls_onnx_") as tmp:
        folder = Path(tmp)
        export_graph(transformer, pooling, cls_only, folder / "exported.onnx")
        fuse_graph(folder / "exported.onnx", folder / "fused.onnx", transformer)
        final = folder / "fused.onnx"
        if int8:
            if choose_recipe is not None:
                recipe = choose_recipe(final)
            n_layers = int(getattr(transformer.config, "num_hidden_layers", 0) or 0)
            quantize_graph(final, folder / "int8.onnx", recipe or Int8Recipe(), n_layers=n_layers)
            final = folder / "int8.onnx"
        return final.read_bytes()
