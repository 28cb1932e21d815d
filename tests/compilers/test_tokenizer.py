"""Text <-> ids for generate (compilers/tokenizer.py): the training run's character format and Hugging Face
tokenizers files, found by the documented order; streamed text pieces add up to the decoded text."""

from __future__ import annotations

import pytest

from nngraph.compilers.tokenizer import (TextStream, TextTokenizer, TokenizerError, char_json, find_tokenizer,
                                         read_tokenizer)

tokenizers = pytest.importorskip("tokenizers")

TEXT = "héllo wörld ✓ naïve café — ünïcode tokens\n" * 20


def _bpe() -> TextTokenizer:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator([TEXT], trainers.BpeTrainer(vocab_size=300, show_progress=False,
                                                         initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return TextTokenizer(tok.to_str())


def test_char_tokenizer_round_trips_and_names_an_unknown_character():
    tok = TextTokenizer(char_json(sorted(set("abc \n"))))
    assert tok.encode("cab a") == [4, 2, 3, 1, 2] and tok.decode([4, 2, 3, 1, 2]) == "cab a"
    with pytest.raises(TokenizerError, match="character 'z' of the prompt is not in"):
        tok.encode("az")


def test_bpe_equals_the_tokenizers_library_and_streams_whole_characters():
    tok = _bpe()
    lib = tokenizers.Tokenizer.from_str(tok.json)
    text = "naïve ✓ café"
    ids = tok.encode(text)
    assert ids == lib.encode(text).ids and tok.decode(ids) == lib.decode(ids) == text
    euro = tok.encode("€")  # not in the training text: its three UTF-8 bytes stay separate tokens
    assert len(euro) >= 2 and tok.decode(euro[:1]) == "\ufffd"
    stream = TextStream(tok, 1)
    pieces = [stream.add([i], [True])[0] for i in [*ids, *euro]]
    assert pieces[-len(euro):] == [""] * (len(euro) - 1) + ["€"]  # held back until the character is whole
    assert "".join(pieces) == text + "€"
    two = TextStream(tok, 2)
    assert two.add([ids[0], ids[0]], [True, False]) == [tok.decode(ids[:1]), ""]


def test_find_tokenizer_order(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "tokenizer.json").write_text(char_json(["a", "b"]))
    (tmp_path / "given.json").write_text(char_json(["x"]))
    assert find_tokenizer(run).chars == ["a", "b"]
    assert find_tokenizer(run, None, tmp_path / "given.json").chars == ["x"]
    model = run / "m.onnx"
    model.write_bytes(b"")
    assert find_tokenizer(model, {"tokenizer": {"kind": "char", "chars": ["m"]}}).chars == ["m"]  # metadata first
    assert find_tokenizer(model, {}).chars == ["a", "b"]  # then the file beside it
    assert find_tokenizer(tmp_path / "given.json", {}) is None
    with pytest.raises(TokenizerError, match="is not JSON"):
        (tmp_path / "bad.json").write_text("{")
        read_tokenizer(tmp_path / "bad.json")
