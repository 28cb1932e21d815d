"""Text <-> token ids for inference: a training run's ``tokenizer.json``, found beside or inside a model.

Two formats, the two :mod:`nngraph.compilers.train.data.text` writes: characters
(``{"kind": "char", "chars": [...]}``, :func:`char_json`; id i is ``chars[i]``) and anything the Hugging Face
``tokenizers`` library serializes (byte-level BPE, or a downloaded ``tokenizer.json``).

Where :func:`find_tokenizer` looks, first hit wins: the file given (``--tokenizer``); a run folder's
``tokenizer.json``; an exported model's metadata (``nngraph.tokenizer``: the same JSON, written when the
weights come from a run folder, so the file is self-contained); a ``tokenizer.json`` beside the model.

:class:`TextStream` turns a decoder's steps into text pieces as they come: each row's new ids are decoded
together and only the text added since the previous step is returned (a byte-level BPE character split
over two tokens appears once it is complete).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

#: the file name a training run writes and a model folder may hold
TOKENIZER_FILE = "tokenizer.json"
#: the exported model's metadata key (``nngraph.tokenizer``) holding the tokenizer's JSON
METADATA_KEY = "tokenizer"


class TokenizerError(ValueError):
    """A tokenizer file that cannot be read, or text it cannot encode."""


def char_json(chars: Sequence[str]) -> str:
    """The character tokenizer's JSON: id i is ``chars[i]``."""
    return json.dumps({"kind": "char", "chars": list(chars)}, ensure_ascii=False)


class TextTokenizer:
    """``encode(text) -> ids`` and ``decode(ids) -> text`` of one tokenizer JSON (see the module doc)."""

    def __init__(self, text: str, source: str = "the tokenizer"):
        self.json, self.source = text, source
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise TokenizerError(f"{source} is not JSON: {exc}") from None
        self.chars: list[str] | None = data["chars"] if isinstance(data, dict) and data.get("kind") == "char" else None
        self._tok: Any = None
        if self.chars is None:
            try:
                from tokenizers import Tokenizer
            except ImportError:  # pragma: no cover - a declared dependency of the train extra
                raise TokenizerError(f"{source} needs the 'tokenizers' package (pip install tokenizers)") from None
            try:
                self._tok = Tokenizer.from_str(text)
            except Exception as exc:  # noqa: BLE001 - the library raises plain Exceptions for bad files
                raise TokenizerError(f"{source} is not a character or Hugging Face tokenizer: {exc}") from None
        self._index = {c: i for i, c in enumerate(self.chars or [])}

    @property
    def vocab_size(self) -> int:
        return len(self.chars) if self.chars is not None else int(self._tok.get_vocab_size())

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (a character outside a character vocabulary is an error naming it)."""
        if self._tok is not None:
            return list(self._tok.encode(text).ids)
        missing = next((c for c in text if c not in self._index), None)
        if missing is not None:
            raise TokenizerError(f"character {missing!r} of the prompt is not in {self.source}'s vocabulary")
        return [self._index[c] for c in text]

    def decode(self, ids: Sequence[int]) -> str:
        """The text of ``ids``."""
        if self._tok is not None:
            return self._tok.decode([int(i) for i in ids])
        return "".join(self.chars[int(i)] for i in ids)  # type: ignore[index]


def read_tokenizer(path: str | Path) -> TextTokenizer:
    """The tokenizer in a ``tokenizer.json`` file."""
    path = Path(path)
    try:
        return TextTokenizer(path.read_text(encoding="utf-8"), f"the tokenizer '{path}'")
    except OSError as exc:
        raise TokenizerError(f"cannot read the tokenizer '{path}': {exc.strerror or exc}") from None


def find_tokenizer(model: str | Path, metadata: dict[str, Any] | None = None,
                   given: str | Path | None = None) -> TextTokenizer | None:
    """The tokenizer of ``model`` (see the module doc for the order); None if it has none."""
    if given is not None:
        return read_tokenizer(given)
    model = Path(model)
    if model.is_dir() and (model / TOKENIZER_FILE).is_file():
        return read_tokenizer(model / TOKENIZER_FILE)
    stored = (metadata or {}).get(METADATA_KEY)
    if stored:
        text = stored if isinstance(stored, str) else json.dumps(stored)
        return TextTokenizer(text, f"the tokenizer in {model.name}'s metadata")
    beside = model.parent / TOKENIZER_FILE
    return read_tokenizer(beside) if model.is_file() and beside.is_file() else None


def tokenizer_metadata(weights: str | Path | None, given: str | Path | None = None) -> dict[str, str]:
    """``{METADATA_KEY: json}`` for an export: the given file, else the weights' run folder's tokenizer ({} if none)."""
    from nngraph.run_folder import run_folder_of

    if given is not None:
        return {METADATA_KEY: read_tokenizer(given).json}
    folder = run_folder_of(weights)
    path = folder / TOKENIZER_FILE if folder is not None else None
    return {METADATA_KEY: path.read_text(encoding="utf-8")} if path is not None and path.is_file() else {}


class TextStream:
    """Per row, the text each decoding step adds (see the module doc)."""

    def __init__(self, tokenizer: TextTokenizer, rows: int):
        self.tokenizer = tokenizer
        self.ids: list[list[int]] = [[] for _ in range(rows)]
        self.text = [""] * rows

    def add(self, tokens: Sequence[int], active: Sequence[bool]) -> list[str]:
        """The new text of every row after appending ``tokens`` to the ``active`` ones ("" for the others)."""
        out = []
        for row, (tok, on) in enumerate(zip(tokens, active)):
            if not on:
                out.append("")
                continue
            self.ids[row].append(int(tok))
            text = self.tokenizer.decode(self.ids[row])
            # an incomplete multi-byte character decodes to U+FFFD until its last token arrives: hold it back
            stable = text[:-1] if text.endswith("\ufffd") else text
            piece = stable[len(self.text[row]):] if stable.startswith(self.text[row]) else stable
            self.text[row] = stable
            out.append(piece)
        return out
