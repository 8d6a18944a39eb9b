"""A tokenizer wrapper that lets any text in: spaCy keeps token strings as UTF-8, so
`nlp(text)` raises UnicodeEncodeError for a text with a surrogate code point (a lone
"\\ud800" from a JSON escape or a surrogateescape decoding) before any component runs.

`spacy_cls.SurrogateSafeTokenizer.v1` wraps the language's tokenizer (or the one
named in its `tokenizer` setting) and replaces each such code point with U+FFFD, one
for one, so character offsets stay those of the text given. Opt in with:

    [nlp.tokenizer]
    @tokenizers = "spacy_cls.SurrogateSafeTokenizer.v1"
"""
from typing import Any, Callable, Optional

from spacy.language import Language
from spacy.util import registry

from ..layers.windows import encodable_text


class SurrogateSafeTokenizer:
    """Calls the wrapped tokenizer on `encodable_text(text)`; everything else
    (serialisation, special cases, explain, ...) is the wrapped tokenizer's."""

    def __init__(self, tokenizer: Callable[[str], Any]) -> None:
        self.tokenizer = tokenizer

    def __call__(self, text: str):
        return self.tokenizer(encodable_text(text))

    def pipe(self, texts, batch_size: int = 1000):
        for text in texts:
            yield self(text)

    def __getattr__(self, name: str):
        # Only reached for names this class does not define.
        if name == "tokenizer":
            raise AttributeError(name)
        return getattr(self.tokenizer, name)


@registry.tokenizers("spacy_cls.SurrogateSafeTokenizer.v1")
def create_surrogate_safe_tokenizer(
    tokenizer: Optional[Callable[[Language], Callable[[str], Any]]] = None,
) -> Callable[[Language], SurrogateSafeTokenizer]:
    """`tokenizer`: the tokenizer to wrap, as a [nlp.tokenizer] block would name it
    (e.g. spacy.zh.ChineseTokenizer); None: the language's default."""

    def create(nlp: Language) -> SurrogateSafeTokenizer:
        create_inner = tokenizer
        if create_inner is None:
            default = type(nlp).default_config["nlp"]["tokenizer"]
            create_inner = registry.resolve({"tokenizer": default})["tokenizer"]
        return SurrogateSafeTokenizer(create_inner(nlp))

    return create
