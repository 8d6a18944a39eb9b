"""Tables keyed by label ({label: threshold}, {label: weight}) in a spaCy config.

spaCy's config writes such a table as a section whose keys are the labels, and its
format cannot hold every string as a key: '=' and ':' split a line, a line starting with
'[' or '#' is a section or a comment, and spaces at either end are dropped. A label that
would not read back, or that holds a character that is not printable, is written with
JSON's escapes (`k\\u003dv` for `k=v`); a key that is not a label is read as such an
escaped form. `encode_label_table` checks that every key reads back, through the same
parser (with interpolation) that `spacy.load` uses.
"""
from __future__ import annotations

import json
from typing import Dict, Mapping, Optional, Sequence

# Characters left as they are in an escaped key; everything else becomes \uXXXX.
_PLAIN_PUNCTUATION = set("_-.+/()@&!?*~^|<>,")


def _escape(label: str) -> str:
    out = []
    for i, ch in enumerate(label):
        plain = ch.isalnum() or ch in _PLAIN_PUNCTUATION or (ch == " " and 0 < i < len(label) - 1)
        if plain and ch.isprintable():
            out.append(ch)
        elif ord(ch) > 0xFFFF:
            out.append(json.dumps(ch)[1:-1])  # a surrogate pair
        else:
            out.append(f"\\u{ord(ch):04x}")
    return "".join(out)


def _unescape(key: str) -> Optional[str]:
    if '"' in key:
        return None
    try:
        value = json.loads(f'"{key}"')
    except ValueError:
        return None
    return value if isinstance(value, str) else None


def _reads_back(key: str) -> bool:
    from thinc.api import Config

    config = Config({"section": {"table": {key: 0.5}}})
    try:
        text = config.to_str()
        return all(
            Config().from_str(text, interpolate=interpolate)["section"]["table"] == {key: 0.5}
            for interpolate in (False, True)
        )
    except Exception:  # the parser's errors have no common base
        return False


def encode_label_table(table: Mapping[str, float], labels: Sequence[str], what: str) -> Dict[str, float]:
    """The table with each label as a config key that reads back as that label."""
    known = set(labels)
    out: Dict[str, float] = {}
    for label, value in table.items():
        key = label if label.isprintable() and _reads_back(label) else _escape(label)
        if key != label and (key in known or not _reads_back(key) or _unescape(key) != label):
            raise ValueError(
                f"{what}: the label {label!r} cannot be written as a config key (escaped, it reads as "
                f"{key!r}); rename the label, or set {what} in Python."
            )
        out[key] = value
    return out


def resolve_label_table(table: Optional[Mapping[str, object]], labels: Sequence[str], what: str,
                        component: str) -> Optional[Dict[str, object]]:
    """{label: value} from a table read from a config: a key is a label, or the escaped
    form of one. A key naming no label of the component is an error (a typo would
    otherwise be silent)."""
    if table is None:
        return None
    known = set(labels)
    out: Dict[str, object] = {}
    unknown = []
    for key, value in table.items():
        label = key if key in known else _unescape(str(key))
        if label not in known:
            unknown.append(key)
            continue
        if label in out:
            raise ValueError(f"[{component}] {what} gives the label {label!r} twice.")
        out[label] = value
    if unknown:
        raise ValueError(
            f"[{component}] {what} names labels the component does not have: {sorted(map(str, unknown))}. "
            f"Its labels: {list(labels)}."
        )
    return out
