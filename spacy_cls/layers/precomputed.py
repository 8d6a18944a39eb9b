"""[CLS] rows computed before training (by `python -m spacy_cls apply --vectors`) and
carried on each doc, so that a frozen encoder hands them to the head instead of
running. `spacy_cls.VectorCorpus.v1` puts them there."""
from typing import List, Optional

import numpy
from spacy.tokens import Doc

# In doc.user_data, so that the row travels with the doc through Example copies.
PRECOMPUTED_CLS = "spacy_cls.precomputed_cls"


def precomputed_rows(docs: List[Doc]) -> List[Optional[numpy.ndarray]]:
    return [doc.user_data.get(PRECOMPUTED_CLS) for doc in docs]


def check_precomputed(rows: List[Optional[numpy.ndarray]], *, frozen: bool, pooling: str, hidden: int) -> None:
    """Precomputed rows are the [CLS] rows of this encoder, for a head read from
    them alone: a frozen encoder with pooling='cls'."""
    if not frozen:
        raise ValueError(
            "These docs carry precomputed [CLS] vectors (spacy_cls.VectorCorpus.v1), which can only "
            "train the head of a frozen encoder: set freeze = true in the model config, or read the "
            "texts (spacy_cls.LabelledTextCorpus.v1) to fine-tune the encoder."
        )
    if pooling != "cls":
        raise ValueError(
            f"Precomputed [CLS] vectors (spacy_cls.VectorCorpus.v1) give the head what pooling='cls' "
            f"reads, and this encoder uses pooling='{pooling}': set pooling = \"cls\", or read the "
            f"texts (spacy_cls.LabelledTextCorpus.v1)."
        )
    for row in rows:
        if row is not None and row.shape != (hidden,):
            raise ValueError(
                f"A precomputed [CLS] vector has shape {row.shape} and this encoder gives {hidden} values: "
                f"the vectors were made by another encoder. Make them again with this pipeline's "
                f"encoder (python -m spacy_cls apply --vectors)."
            )
