"""Built-in datasets, all offline.

* ``digits`` -- the 1,797 8x8 handwritten digits (UCI optdigits test set, as
  scikit-learn ships them; ``bundled/digits.csv.gz``, 57 KB, source and licence
  in ``bundled/README.md``), features scaled to [0, 1].
* ``karate`` -- Zachary's karate club (networkx): 34 nodes, identity features,
  2 classes (the club each member joined); ``labelled_per_class`` nodes of each
  class, those of highest degree (the leaders first), are labelled, the rest
  are the test split.
* ``text`` -- ``bundled/tiny_tales.txt``, a generated English corpus (see
  ``bundled/make_corpus.py``).
* ``shakespeare`` -- ``bundled/shakespeare.txt``, real public-domain text: the
  first 111,592 characters (61 distinct) of the Tiny Shakespeare corpus
  (``bundled/README.md``).

The bundled files are package data, read through :mod:`importlib.resources`, so an
installed wheel finds them wherever it runs.
* ``copy`` / ``reverse`` / ``parity`` -- synthetic sequence tasks as
  next-token prediction with a loss mask on the answer: ``x SEP x``,
  ``x SEP reversed(x)``, ``bits SEP parity``.
"""

from __future__ import annotations

import gzip
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

import numpy as np
import torch

from .base import ArrayData, DataError, NodeGraphData, split_indices

BUNDLED = resources.files(__package__) / "bundled"
CORPUS = BUNDLED / "tiny_tales.txt"
SHAKESPEARE = BUNDLED / "shakespeare.txt"
DIGITS = BUNDLED / "digits.csv.gz"


def digits(val: float, test: float, seed: int) -> ArrayData:
    """The bundled 8x8 digits: 64 pixel counts in 0..16 and the label per CSV row."""
    with DIGITS.open("rb") as raw, gzip.open(raw, "rt") as fh:
        arr = np.loadtxt(fh, delimiter=",", dtype=np.float32)
    x = torch.from_numpy(arr[:, :64] / 16.0)
    y = torch.from_numpy(arr[:, 64].astype(np.int64))
    return ArrayData({"x": x, "y": y}, split_indices(len(y), val, test, seed),
                     {"name": "digits", "num_classes": 10, "features": 64, "image": [1, 8, 8]})


def karate(labelled_per_class: int) -> NodeGraphData:
    import networkx as nx

    g = nx.karate_club_graph()
    n = g.number_of_nodes()
    clubs = sorted({g.nodes[i]["club"] for i in g.nodes})
    y = torch.tensor([clubs.index(g.nodes[i]["club"]) for i in range(n)], dtype=torch.long)
    edges = torch.tensor(list(g.edges()), dtype=torch.long).t()
    edge_index = torch.cat([edges, edges.flip(0)], dim=1)
    train = torch.zeros(n, dtype=torch.bool)
    for c in range(len(clubs)):
        members = sorted((i for i in range(n) if y[i] == c), key=lambda i: (-g.degree(i), i))
        train[members[:labelled_per_class]] = True
    return NodeGraphData(torch.eye(n), edge_index, y, {"train": train, "test": ~train}, len(clubs),
                         {"name": "karate", "classes": clubs})


def corpus_text(path: Traversable = CORPUS) -> str:
    """A bundled text corpus: ``bundled/tiny_tales.txt`` (default) or ``bundled/shakespeare.txt``."""
    if not path.is_file():
        raise DataError(f"the bundled corpus {path} is missing: reinstall nngraph (it ships inside the package)")
    return path.read_text(encoding="utf-8")


def synthetic(task: str, num: int, length: int, symbols: int, val: float, test: float, seed: int) -> ArrayData:
    """Sequence tasks as next-token prediction; ``loss_mask`` marks the answer positions of the targets."""
    gen = torch.Generator().manual_seed(seed + 17)
    if task == "parity":
        bits = torch.randint(0, 2, (num, length), generator=gen)
        sep = 2
        answer = bits.sum(1, keepdim=True) % 2
        tokens = torch.cat([bits, torch.full((num, 1), sep), answer], dim=1)
        vocab = 3
    else:
        x = torch.randint(0, symbols, (num, length), generator=gen)
        sep = symbols
        tokens = torch.cat([x, torch.full((num, 1), sep), x if task == "copy" else x.flip(1)], dim=1)
        vocab = symbols + 1
    mask = torch.zeros(num, tokens.shape[1] - 1, dtype=torch.bool)
    mask[:, length:] = True  # targets after the separator: the answer
    meta: dict[str, Any] = {"name": task, "vocab_size": vocab, "sep": sep, "seq_len": tokens.shape[1] - 1}
    return ArrayData({"tokens": tokens, "loss_mask": mask}, split_indices(num, val, test, seed), meta)
