"""A bounded LRU cache of a frozen encoder's per-doc outputs.

With ``freeze = true`` the encoder's weights never change, so a text's [CLS] row and
pooled features are the same in every epoch: the encoder layer computes them once
and reads them back afterwards, and an epoch after the first costs only the head.
Entries are keyed by a digest of the text and are valid for one encoder state (the
torch module and the settings that shape its output); a change of either empties
the cache. The rows are float32 numpy copies, never views of a batch's tensors, so
the cache holds ``max_size * (hidden + pooled width) * 4`` bytes at most.
"""
import hashlib
import weakref
from collections import OrderedDict
from typing import Dict, Hashable, List, Optional, Sequence, Tuple

import numpy

Rows = Tuple[numpy.ndarray, numpy.ndarray]  # ([CLS] row, pooled features)


def text_key(text: str) -> bytes:
    """A 16-byte digest: smaller than most texts and collision-free in practice."""
    return hashlib.blake2b(text.encode("utf8", "surrogatepass"), digest_size=16).digest()


class EncoderCache:
    def __init__(self, max_size: int) -> None:
        if max_size < 0:
            raise ValueError(f"cache_size must be 0 (no cache) or a positive number of docs, not {max_size}.")
        self.max_size = max_size
        self._rows: "OrderedDict[bytes, Rows]" = OrderedDict()
        self._owner: Optional[weakref.ref] = None
        self._settings: Optional[Hashable] = None
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._rows)

    def bind(self, owner: object, settings: Hashable) -> None:
        """Use the cache for `owner` (the torch module) with `settings`; entries made
        for another module or other settings are dropped."""
        current = self._owner() if self._owner is not None else None
        if current is not owner or self._settings != settings:
            self.clear()
            self._owner = weakref.ref(owner)
            self._settings = settings

    def clear(self) -> None:
        self._rows.clear()
        self._owner = None
        self._settings = None

    def lookup(self, keys: Sequence[bytes]) -> Dict[bytes, Rows]:
        found: Dict[bytes, Rows] = {}
        for key in keys:
            rows = self._rows.get(key)
            if rows is None:
                self.misses += 1
            else:
                self._rows.move_to_end(key)
                found[key] = rows
                self.hits += 1
        return found

    def store(self, keys: List[bytes], cls: numpy.ndarray, features: numpy.ndarray) -> None:
        """Keep row i of `cls` and `features` under keys[i], evicting the least
        recently used entries beyond `max_size`."""
        if self.max_size == 0:
            return
        same = features is cls
        for i, key in enumerate(keys[-self.max_size :], start=max(len(keys) - self.max_size, 0)):
            cls_row = numpy.array(cls[i], dtype=numpy.float32)
            feature_row = cls_row if same else numpy.array(features[i], dtype=numpy.float32)
            self._rows[key] = (cls_row, feature_row)
            self._rows.move_to_end(key)
        while len(self._rows) > self.max_size:
            self._rows.popitem(last=False)
