"""Text -> token ids: characters, or byte-pair encoding with the ``tokenizers`` library.

Both tokenizers serialize to JSON (``to_json``/``from_json``) so a run's
output folder holds the exact vocabulary the model was trained with.
"""

from __future__ import annotations

from typing import Any

import torch

from ...tokenizer import char_json
from .base import DataError


class CharTokenizer:
    """One id per distinct character of the training text, in sorted order."""

    kind = "char"

    def __init__(self, chars: list[str]):
        self.chars = list(chars)
        self.index = {c: i for i, c in enumerate(self.chars)}

    @classmethod
    def fit(cls, text: str) -> "CharTokenizer":
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str, source: str = "text") -> torch.Tensor:
        try:
            return torch.tensor([self.index[c] for c in text], dtype=torch.long)
        except KeyError as exc:
            at = text.index(exc.args[0])
            line = text.count("\n", 0, at) + 1
            raise DataError(f"{source}: line {line}: character {exc.args[0]!r} is not in the vocabulary") from None

    def decode(self, ids: Any) -> str:
        return "".join(self.chars[int(i)] for i in ids)

    def to_json(self) -> str:
        return char_json(self.chars)


class BPETokenizer:
    """Byte-level BPE trained on the training text (HuggingFace ``tokenizers``)."""

    kind = "bpe"

    def __init__(self, tok: Any):
        self.tok = tok

    @classmethod
    def fit(cls, text: str, vocab_size: int) -> "BPETokenizer":
        try:
            from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
        except ImportError:  # pragma: no cover - a declared dependency
            raise DataError("data.tokenizer: bpe needs the 'tokenizers' package (pip install tokenizers)") from None
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        tok.train_from_iterator(_chunks(text), trainer=trainer)
        return cls(tok)

    @property
    def vocab_size(self) -> int:
        return int(self.tok.get_vocab_size())

    def encode(self, text: str, source: str = "text") -> torch.Tensor:
        ids: list[int] = []
        for chunk in _chunks(text):
            ids.extend(self.tok.encode(chunk).ids)
        return torch.tensor(ids, dtype=torch.long)

    def decode(self, ids: Any) -> str:
        return self.tok.decode([int(i) for i in ids])

    def to_json(self) -> str:
        return self.tok.to_str()


def _chunks(text: str, size: int = 1 << 16) -> list[str]:
    """Lines grouped into ~64 KB pieces (the tokenizers library works on strings, not one huge one)."""
    out, cur, n = [], [], 0
    for line in text.splitlines(keepends=True):
        cur.append(line)
        n += len(line)
        if n >= size:
            out.append("".join(cur))
            cur, n = [], 0
    if cur:
        out.append("".join(cur))
    return out


def make_tokenizer(kind: str, text: str, vocab_size: int) -> CharTokenizer | BPETokenizer:
    """Fit the configured tokenizer on ``text``."""
    return CharTokenizer.fit(text) if kind == "char" else BPETokenizer.fit(text, vocab_size)
