"""Datasets: built-ins, user files (bad data names the file and row), deterministic batches sliced per rank."""

from __future__ import annotations

import math
import os
import pickle

import numpy as np
import pytest
import torch

from nngraph.compilers.train.data import ArrayData, DataError, TokenData, load_data
from nngraph.compilers.train.data.base import split_indices, split_stream
from nngraph.compilers.train.data.builtin import corpus_text, synthetic
from nngraph.compilers.train.data.text import BPETokenizer, CharTokenizer
from nngraph.errors import Diagnostics, SourcePos
from nngraph.train_schema import check_train


def cfg(**data):
    """A checked train.data section with defaults, plus the given keys."""
    return check_train({"data": data}, Diagnostics(), SourcePos("t")).values["data"]


def test_digits_are_the_1797_uci_images_scaled_to_unit_range_with_seeded_splits():
    ds = load_data(cfg(builtin="digits"), "classification", None)
    x, y = ds.fields["x"], ds.fields["y"]
    assert x.shape == (1797, 64) and float(x.min()) == 0.0 and float(x.max()) == 1.0
    assert torch.bincount(y).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]  # sklearn's class counts
    assert [ds.size(s) for s in ("train", "val", "test")] == [1258, 180, 359]
    again = load_data(cfg(builtin="digits"), "classification", None)
    assert torch.equal(ds.splits["test"], again.splits["test"])
    assert not set(ds.splits["train"].tolist()) & set(ds.splits["test"].tolist())


def test_karate_labels_the_highest_degree_members_of_each_club():
    ds = load_data(cfg(builtin="karate", labelled_per_class=2), "node_classification", None)
    assert ds.x.shape == (34, 34) and ds.edge_index.shape == (2, 156)  # 78 undirected edges, both directions
    assert ds.num_classes == 2 and torch.bincount(ds.y).tolist() == [17, 17]
    assert ds.masks["train"].nonzero().flatten().tolist() == [0, 2, 32, 33]  # Mr. Hi, the officer and their seconds
    assert int(ds.masks["test"].sum()) == 30


def test_the_bundled_corpus_is_char_tokenized_with_interleaved_val_blocks():
    ds = load_data(cfg(builtin="text"), "language_model", None)
    text = corpus_text()
    assert isinstance(ds, TokenData) and ds.vocab_size == len(set(text)) == 67
    assert ds.size("train") + ds.size("val") == len(text)
    assert abs(ds.size("val") / len(text) - 0.1) < 0.01
    assert ds.tokenizer.decode(ds.streams["train"][:4]) == text[:4]


def test_the_bundled_shakespeare_is_real_public_domain_text_of_61_characters():
    from nngraph.compilers.train.data.builtin import SHAKESPEARE

    ds = load_data(cfg(builtin="shakespeare"), "language_model", None)
    text = corpus_text(SHAKESPEARE)
    assert len(text) == 111_592 and text.startswith("First Citizen:\nBefore we proceed any further, hear me speak.")
    assert text.endswith("Yet, Marcius, that was much. Your hand: most welcome!\n")  # Coriolanus, act IV scene 5
    assert isinstance(ds, TokenData) and ds.vocab_size == len(set(text)) == 61
    assert ds.meta == {"name": "shakespeare.txt", "tokens": 111_592}
    assert ds.size("train") + ds.size("val") == len(text)
    assert ds.tokenizer.decode(ds.streams["train"][:14]) == "First Citizen:"


def test_bpe_tokenizer_round_trips_text_and_has_the_asked_vocabulary(tmp_path):
    text = corpus_text()[:20000]
    tok = BPETokenizer.fit(text, 300)
    assert tok.vocab_size == 300
    ids = tok.encode(text[:500])
    assert tok.decode(ids) == text[:500] and len(ids) < 500 * 0.7  # merges compress the text


def test_char_tokenizer_names_the_line_of_an_unknown_character():
    tok = CharTokenizer.fit("abc\n")
    with pytest.raises(DataError, match=r"^f.txt: line 2: character 'z' is not in the vocabulary$"):
        tok.encode("ab\nz", "f.txt")


def test_synthetic_tasks_mask_the_answer_and_are_correct():
    copy = synthetic("copy", 50, 5, 7, 0.1, 0.1, 0)
    t = copy.fields["tokens"]
    assert t.shape == (50, 11) and (t[:, 5] == 7).all() and torch.equal(t[:, :5], t[:, 6:])
    assert copy.fields["loss_mask"][0].tolist() == [False] * 5 + [True] * 5
    rev = synthetic("reverse", 50, 5, 7, 0.1, 0.1, 0).fields["tokens"]
    assert torch.equal(rev[:, :5].flip(1), rev[:, 6:])
    par = synthetic("parity", 50, 6, 2, 0.1, 0.1, 0).fields["tokens"]
    assert torch.equal(par[:, :6].sum(1) % 2, par[:, 7])


def test_csv_with_header_and_class_names(tmp_path):
    f = tmp_path / "iris.csv"
    f.write_text("a,b,kind\n1,2,cat\n3,4,dog\n5,6,cat\n7,8,dog\n9,1,cat\n")
    ds = load_data(cfg(path=str(f), label_column="kind", test_fraction=0.2), "classification", tmp_path)
    assert ds.fields["x"].tolist()[0] == [1.0, 2.0] and ds.fields["y"].tolist() == [0, 1, 0, 1, 0]
    assert ds.meta["classes"] == ["cat", "dog"] and ds.meta["num_classes"] == 2


@pytest.mark.parametrize("text, message", [
    ("a,b,y\n1,2,0\n3,x,1\n", r"bad.csv:3: column 'b' value 'x' is not a number"),
    ("1,2,0\n3,4\n", r"bad.csv:2: expected 3 columns, got 2"),
    ("1,2,0\n3,inf,1\n", r"bad.csv:2: column 1 value 'inf' is not finite"),
])
def test_a_bad_csv_row_is_named_by_file_and_line(tmp_path, text, message):
    f = tmp_path / "bad.csv"
    f.write_text(text)
    with pytest.raises(DataError, match=message):
        load_data(cfg(path=str(f)), "classification", tmp_path)


def test_npz_arrays_load_and_nan_rows_are_reported(tmp_path):
    f = tmp_path / "d.npz"
    x = np.random.default_rng(0).normal(size=(20, 3)).astype(np.float32)
    np.savez(f, x=x, y=np.arange(20) % 2)
    ds = load_data(cfg(path="d.npz"), "classification", tmp_path)
    assert ds.fields["x"].shape == (20, 3) and ds.meta["num_classes"] == 2
    x[7, 1] = np.nan
    np.savez(f, x=x, y=np.arange(20) % 2)
    with pytest.raises(DataError, match=r"d.npz: feature row 7 holds NaN or infinity"):
        load_data(cfg(path="d.npz"), "classification", tmp_path)
    np.savez(f, features=x)
    with pytest.raises(DataError, match=r"no array 'x' \(arrays: features\); set train.data.x_key"):
        load_data(cfg(path="d.npz"), "classification", tmp_path)


def test_object_arrays_in_npy_files_are_refused_without_unpickling(tmp_path):
    f = tmp_path / "evil.npy"
    np.save(f, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="object arrays need pickle, which is refused"):
        load_data(cfg(path=str(f)), "classification", tmp_path)


def test_missing_file_and_unknown_suffix_are_clear(tmp_path):
    with pytest.raises(DataError, match=r"data file '.*nothere.csv' not found"):
        load_data(cfg(path="nothere.csv"), "classification", tmp_path)
    (tmp_path / "d.bin").write_bytes(b"\0")
    with pytest.raises(DataError, match=r"cannot tell the format from the suffix '.bin'; set train.data.format"):
        load_data(cfg(path="d.bin"), "classification", tmp_path)


def test_graph_json_node_and_graph_level(tmp_path):
    f = tmp_path / "g.json"
    f.write_text('{"num_nodes": 4, "edges": [[0, 1], [1, 2], [2, 3]], "y": [0, 0, 1, -1], "train": [0, 2]}')
    ds = load_data(cfg(path="g.json"), "node_classification", tmp_path)
    assert ds.edge_index.shape == (2, 6) and ds.masks["train"].tolist() == [True, False, True, False]
    assert ds.masks["test"].tolist() == [False, True, False, False]  # labelled, not trained on
    f.write_text('{"graphs": [{"x": [[1.0], [2.0]], "edges": [[0, 1]], "y": 1}, '
                 '{"x": [[1.0]], "edges": [], "y": 0}, {"x": [[3.0], [1.0]], "edges": [[1, 0]], "y": 1}]}')
    ds = load_data(cfg(path="g.json", val_fraction=0.0, test_fraction=0.0), "graph_classification", tmp_path)
    b = ds.collate(torch.tensor([0, 2]))
    assert b["x"].shape == (4, 1) and b["batch"].tolist() == [0, 0, 1, 1]
    assert b["edge_index"].tolist() == [[0, 1, 3, 2], [1, 0, 2, 3]] and b["y"].tolist() == [1, 1]
    f.write_text('{"num_nodes": 3, "edges": [[0, 5]], "y": [0, 1, 0]}')
    with pytest.raises(DataError, match=r"g.json: edge 0 \[0, 5\] names a node outside 0..2"):
        load_data(cfg(path="g.json"), "node_classification", tmp_path)
    f.write_text('{"num_nodes": 3,\n "edges": [[0, 1],]}')
    with pytest.raises(DataError, match=r"g.json:2:19: invalid JSON"):
        load_data(cfg(path="g.json"), "node_classification", tmp_path)


def test_edge_list_with_labels_file(tmp_path):
    f = tmp_path / "club.edges"
    f.write_text("# karate-like\na b\nb c\nc d\n")
    (tmp_path / "club.edges.labels").write_text("a x\nd y\n")
    ds = load_data(cfg(path="club.edges", labelled_per_class=1), "node_classification", tmp_path)
    assert ds.x.shape == (4, 4) and ds.num_classes == 2 and ds.masks["train"].tolist() == [True, False, False, True]
    f.write_text("a b c d\n")
    with pytest.raises(DataError, match=r"club.edges:1: expected 'source target'"):
        load_data(cfg(path="club.edges"), "node_classification", tmp_path)


def test_batches_are_a_function_of_the_step_and_ranks_split_the_global_batch():
    ds = load_data(cfg(builtin="digits"), "classification", None)
    whole = ds.train_batch(5, 16, 0, 1, seed=3)["y"]
    halves = [ds.train_batch(5, 16, r, 2, seed=3)["y"] for r in (0, 1)]
    assert torch.equal(torch.cat(halves), whole)
    assert torch.equal(ds.train_batch(5, 16, 0, 1, seed=3)["y"], whole)
    assert not torch.equal(ds.train_batch(6, 16, 0, 1, seed=3)["x"], ds.train_batch(5, 16, 0, 1, seed=3)["x"])
    rows = ArrayData({"i": torch.arange(100)}, {"train": torch.arange(100)})
    seen = torch.cat([rows.train_batch(m, 16, 0, 1, 3)["i"] for m in range(rows.batches_per_epoch(16))])
    assert seen.numel() == 96 and torch.unique(seen).numel() == 96  # an epoch visits rows without repeats
    assert not torch.equal(rows.train_batch(0, 16, 0, 1, 3)["i"], rows.train_batch(6, 16, 0, 1, 3)["i"])


def test_token_windows_and_tbptt_streams():
    stream = torch.arange(1000)
    ds = TokenData({"train": stream, "val": torch.arange(100)}, 1000)
    b = ds.train_batch(0, 4, 0, 1, seed=0, seq_len=8)["tokens"]
    assert b.shape == (4, 9) and (b[:, 1:] - b[:, :-1] == 1).all()
    first, reset = ds.stream_batch(0, 4, 0, 1, window=10)
    second, reset2 = ds.stream_batch(1, 4, 0, 1, window=10)
    assert reset and not reset2
    assert torch.equal(second["tokens"][:, 0], first["tokens"][:, -1])  # windows continue each row
    assert first["tokens"][:, 0].tolist() == [0, 249, 498, 747]
    evals = list(ds.eval_batches("val", 4, 9))
    assert sum(e["tokens"].shape[0] for e in evals) == 11 and evals[0]["tokens"][1, 0] == 9


def test_split_helpers_partition_everything():
    s = split_indices(100, 0.1, 0.2, 0)
    assert sorted(torch.cat(list(s.values())).tolist()) == list(range(100)) and s["test"].numel() == 20
    parts = split_stream(torch.arange(10_000), 0.1, 0.0, block=100)
    assert sorted(torch.cat(list(parts.values())).tolist()) == list(range(10_000))
    assert parts["val"].numel() == 1000 and math.isclose(parts["val"][0].item(), 500)


def test_pickle_is_never_used_for_data(tmp_path):
    f = tmp_path / "d.npz"
    f.write_bytes(pickle.dumps({"x": [1, 2]}))
    with pytest.raises(DataError):
        load_data(cfg(path=str(f)), "classification", tmp_path)


def test_a_fifo_as_data_is_not_a_regular_file_rather_than_not_found(tmp_path):
    os.mkfifo(tmp_path / "d.csv")
    with pytest.raises(DataError) as info:
        load_data(cfg(path="d.csv"), "classification", tmp_path)
    assert str(info.value) == (f"data file '{tmp_path / 'd.csv'}' is not a regular file (it is a FIFO "
                               "(named pipe)); only regular files are read")


def test_a_sparse_csv_over_the_text_share_of_memory_is_refused_unread(tmp_path, monkeypatch):
    from nngraph import readers

    monkeypatch.setattr(readers, "machine_memory", lambda: 1 << 30)
    with open(tmp_path / "big.csv", "wb") as fh:
        fh.write(b"a,b,label\n")
        fh.truncate(8 * 10**9)
    with pytest.raises(DataError, match=r"big.csv' is 8.0 GB, over the 33.6 MB limit on this machine \(a share of "
                                        r"its 1.1 GB memory\)$"):
        load_data(cfg(path="big.csv"), "classification", tmp_path)


def test_a_csv_field_over_the_csv_limit_is_located(tmp_path):
    (tmp_path / "d.csv").write_text("a,b,label\n1,2,0\n1," + "1" * 140_000 + ",1\n")
    with pytest.raises(DataError) as info:
        load_data(cfg(path="d.csv"), "classification", tmp_path)
    assert str(info.value) == (f"{tmp_path / 'd.csv'}:3: field larger than field limit (131072): a data CSV holds "
                               "numbers and class names")


def test_fractional_labels_are_refused_for_classification_and_whole_floats_are_class_ids(tmp_path):
    (tmp_path / "d.csv").write_text("a,label\n1,0\n2,1.5\n3,1\n")  # data row 1 (0-based) is the file's line 3
    with pytest.raises(DataError) as info:
        load_data(cfg(path="d.csv"), "classification", tmp_path)
    assert str(info.value) == (f"{tmp_path / 'd.csv'}:3: target is 1.5, not a class id; task 'classification' "
                               "needs whole-number class ids or class names (fractional targets: task regression)")
    assert load_data(cfg(path="d.csv"), "regression", tmp_path).fields["y"].tolist() == [0.0, 1.5, 1.0]
    (tmp_path / "e.csv").write_text("1,0\n\n2,1\n3,0.25\n")  # no header, a blank line 2: the fraction is on line 4
    with pytest.raises(DataError, match=r"e.csv:4: target is 0.25, not a class id"):
        load_data(cfg(path="e.csv"), "classification", tmp_path)
    np.savez(tmp_path / "d.npz", x=np.ones((3, 2)), y=np.array([0.0, 2.0, 1.0]))
    ds = load_data(cfg(path="d.npz"), "classification", tmp_path)
    assert ds.fields["y"].tolist() == [0, 2, 1] and ds.meta["num_classes"] == 3
    np.savez(tmp_path / "f.npz", x=np.ones((3, 2)), y=np.array([0.0, 2.0, 1.5]))  # an array has rows, not lines
    with pytest.raises(DataError, match=r"f.npz: target row 2 is 1.5, not a class id"):
        load_data(cfg(path="f.npz"), "classification", tmp_path)


def test_an_npz_zip_bomb_as_data_is_refused_before_inflating(tmp_path):
    from hostile.hostile_fixtures import zip_bomb

    zip_bomb(tmp_path / "d.npz", "x", 1 << 26)
    with pytest.raises(DataError, match=r"d.npz' array 'x': .* inflate to 67.1 MB \(over 200x\): refused as a zip bomb"):
        load_data(cfg(path="d.npz"), "classification", tmp_path)
