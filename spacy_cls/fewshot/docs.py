"""Docs that carry only a text, for encoding description prompts and examples: the
encoder reads `doc.text`, nothing else."""
from typing import List, Sequence

from spacy.tokens import Doc
from spacy.vocab import Vocab

_VOCAB = Vocab()


def text_docs(texts: Sequence[str]) -> List[Doc]:
    return [Doc(_VOCAB, words=[text], spaces=[False]) if text else Doc(_VOCAB) for text in texts]
