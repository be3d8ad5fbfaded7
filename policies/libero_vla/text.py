"""An offline, deterministic text tokenizer: hashed words, word bigrams and character n-grams.

No vocabulary file and no downloads: every feature string ``f`` of an instruction maps to a bucket

    id(f) = 1 + crc32(utf8(f)) mod (buckets - 1)          (id 0 is padding)

with ``zlib.crc32`` (stable across processes and machines, unlike Python's salted ``hash``). The features,
in this order (so truncation to ``max_tokens`` drops the least informative first):

* ``w:<word>`` for each lower-cased word (``[^\\W_]+``),
* ``b:<word_i>_<word_i+1>`` for each adjacent pair (word order: "the left plate" vs "plate left"),
* ``c:<n-gram>`` for each character n-gram of ``<word>`` with boundary marks (sub-word similarity, so an
  unseen or misspelt word still lands near the words it shares n-grams with).

The model averages the embeddings of the non-padding ids (an embedding bag), so an instruction never seen
in training still runs: it is a bag of known and unknown buckets like any other.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import asdict, dataclass

import numpy as np

_WORD = re.compile(r"[^\W_]+")


@dataclass(frozen=True)
class HashTokenizer:
    """``text -> int64 [max_tokens]`` bucket ids (module docstring); 0 pads."""

    buckets: int = 4096
    max_tokens: int = 128
    ngram: int = 3

    def __post_init__(self) -> None:
        for name, low in (("buckets", 2), ("max_tokens", 1), ("ngram", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"HashTokenizer.{name} must be an int >= {low}, got {value!r}")

    def features(self, text: str) -> list[str]:
        """The feature strings of ``text`` (module docstring), before hashing and truncation."""
        if not isinstance(text, str):
            raise ValueError(f"instruction must be a str, got {type(text).__name__}")
        words = _WORD.findall(text.lower())
        feats = [f"w:{w}" for w in words]
        feats += [f"b:{a}_{b}" for a, b in zip(words, words[1:])]
        n = self.ngram
        for w in words:
            s = f"<{w}>"
            feats += [f"c:{s[i : i + n]}" for i in range(max(len(s) - n + 1, 1))]
        return feats

    def __call__(self, text: str) -> np.ndarray:
        ids = np.zeros(self.max_tokens, dtype=np.int64)
        feats = self.features(text)[: self.max_tokens]
        for i, f in enumerate(feats):
            ids[i] = 1 + zlib.crc32(f.encode("utf-8")) % (self.buckets - 1)
        return ids

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> HashTokenizer:
        return cls(**{k: int(data[k]) for k in ("buckets", "max_tokens", "ngram")})
