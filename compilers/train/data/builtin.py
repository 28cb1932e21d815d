"""Built-in datasets, all offline.

* ``digits`` -- scikit-learn's 1,797 8x8 handwritten digits (UCI optdigits test
  set), features scaled to [0, 1]; read straight from the CSV that ships inside
  scikit-learn (no ``import sklearn``: that costs seconds).
* ``karate`` -- Zachary's karate club (networkx): 34 nodes, identity features,
  2 classes (the club each member joined); ``labelled_per_class`` nodes of each
  class, those of highest degree (the leaders first), are labelled, the rest
  are the test split.
* ``text`` -- ``data/tiny_tales.txt``, a generated English corpus (see
  ``data/make_corpus.py``).
* ``shakespeare`` -- ``data/shakespeare.txt``, real public-domain text: the
  first 111,592 characters (61 distinct) of the Tiny Shakespeare corpus
  (``data/README.md``).
* ``copy`` / ``reverse`` / ``parity`` -- synthetic sequence tasks as
  next-token prediction with a loss mask on the answer: ``x SEP x``,
  ``x SEP reversed(x)``, ``bits SEP parity``.
"""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .base import ArrayData, DataError, NodeGraphData, split_indices

CORPUS = Path(__file__).resolve().parents[3] / "data" / "tiny_tales.txt"
SHAKESPEARE = CORPUS.with_name("shakespeare.txt")


def digits(val: float, test: float, seed: int) -> ArrayData:
    spec = importlib.util.find_spec("sklearn")
    path = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz" if spec and spec.origin else None
    if path is not None and path.is_file():
        with gzip.open(path, "rt") as fh:
            arr = np.loadtxt(fh, delimiter=",", dtype=np.float32)
    else:  # pragma: no cover - a scikit-learn without the bundled CSV
        try:
            from sklearn.datasets import load_digits
        except ImportError:
            raise DataError("the digits dataset needs scikit-learn (pip install scikit-learn)") from None
        d = load_digits()
        arr = np.concatenate([d.data, d.target[:, None]], axis=1).astype(np.float32)
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


def corpus_text(path: Path = CORPUS) -> str:
    """A bundled text corpus: ``data/tiny_tales.txt`` (default) or ``data/shakespeare.txt``."""
    if not path.is_file():
        how = "regenerate it with python data/make_corpus.py" if path == CORPUS else "it ships with the repository"
        raise DataError(f"the bundled corpus {path} is missing; {how}")
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
