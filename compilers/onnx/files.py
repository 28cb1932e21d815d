"""Writing an exported model: one file, or a model file plus an external data file for large weights.

Protobuf cannot serialize a message over 2 GiB, so a model whose weights exceed
:data:`EXTERNAL_DATA_THRESHOLD` keeps its tensors in ``<output>.data`` beside the model file (ONNX's
external data, one file, tensors of 1 KB and more). Both files are written into a temporary folder
beside the output, checked (``onnx.checker`` by path, full check) and verified there, then moved into
place with ``os.replace``; ``nngraph infer`` (nngraph.compilers.onnx.runner) refuses a model whose data file is
missing, naming it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: above this many bytes of weights the file keeps them in a separate data file (protobuf's limit is 2 GiB)
EXTERNAL_DATA_THRESHOLD = 2**31 - 2**27


class ModelFiles:
    """Writing the model: one serialized file, or (weights above ``threshold`` bytes, or ``external`` True) a
    model file plus ``<name>.data`` with the tensors. Both are written into a temporary folder beside the
    output, checked and verified there, then moved into place -- the data file first, then the model file
    (``os.replace`` each: a reader never sees a half-written file, and a model file only appears once its
    data file is complete)."""

    def __init__(self, model: Any, output: Any, external: bool | None, threshold: int | None):
        weights = sum(t.ByteSize() for t in model.graph.initializer)
        limit = EXTERNAL_DATA_THRESHOLD if threshold is None else int(threshold)
        self.model, self.output = model, Path(output) if output else None
        self.external = bool(external) if external is not None else weights > limit
        self.data_name = ((self.output.name if self.output else "model.onnx") + ".data") if self.external else None
        self.tmp = None
        self.size = 0
        if self.external:
            from .metadata import set_metadata

            set_metadata(model, {"external_data": self.data_name})

    def check(self) -> Any:
        """Check the model (onnx.checker, full); returns what a session loads: bytes, or the temporary file path."""
        import onnx

        if not self.external:
            onnx.checker.check_model(self.model, full_check=True)
            self.blob = self.model.SerializeToString()
            self.size = len(self.blob)
            return self.blob
        import tempfile

        folder = self.output.parent if self.output else None
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
        self.tmp = tempfile.TemporaryDirectory(dir=folder, prefix=".nngraph-export-")
        self.tmp_model = Path(self.tmp.name) / (self.output.name if self.output else "model.onnx")
        onnx.save_model(self.model, str(self.tmp_model), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=self.data_name, size_threshold=1024)
        data = Path(self.tmp.name) / self.data_name
        data.touch()  # onnx writes no data file when every tensor is under 1 KB; the metadata still names one
        data.chmod(self.tmp_model.stat().st_mode & 0o777)   # as readable as the model file
        onnx.checker.check_model(str(self.tmp_model), full_check=True)
        self.size = self.tmp_model.stat().st_size + (Path(self.tmp.name) / self.data_name).stat().st_size
        return str(self.tmp_model)

    def commit(self) -> None:
        import os

        from nngraph.io import write_bytes_atomic
        from nngraph.outputs import check_target

        if not self.external:
            write_bytes_atomic(self.output, self.blob)
            return
        data = self.output.with_name(self.data_name)
        check_target(data)
        check_target(self.output)
        os.replace(Path(self.tmp.name) / self.data_name, data)
        os.replace(self.tmp_model, self.output)

    def close(self) -> None:
        if self.tmp is not None:
            self.tmp.cleanup()
            self.tmp = None
