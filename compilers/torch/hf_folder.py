"""``nngraph import-hf``: a Hugging Face model folder (or Hub id) -> a spec generated from its config + weights.

::

    nngraph import-hf ./my-llama -o out/          # out/llama_style.yaml + out/weights.safetensors
    nngraph import-hf Qwen/Qwen2-0.5B -o out/     # the Hub where reachable, else the local HF cache

The spec is the family's zoo spec with every var from config.json (:mod:`nngraph.hf_config`); the
weights are the checkpoint (safetensors, shards, or ``.bin`` read with ``weights_only``) mapped onto
its parameter names by :mod:`.hf_import` and checked to load strictly.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from nngraph.hf_config import HFConfigError, read_config, spec_text

Echo = Callable[..., None]
WEIGHTS = "weights.safetensors"
_HUB_FILES = ["config.json", "*.safetensors", "*.safetensors.index.json", "pytorch_model*.bin"]


def model_folder(name: str) -> tuple[Path, str]:
    """(local folder, how it was found) for a folder path or a Hub id ``org/name``.

    A Hub id is fetched where the Hub is reachable and taken from the local cache otherwise; with
    ``HF_HUB_OFFLINE`` set only the cache is read (no download ever starts)."""
    if Path(name).is_dir():
        return Path(name), "folder"
    if name.count("/") != 1 or Path(name).exists():
        raise HFConfigError(f"'{name}' is neither a model folder nor a Hub id (org/name)")
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise HFConfigError(f"'{name}' is not a folder, and a Hub id needs huggingface_hub: "
                            "pip install 'nngraph[hf]'") from None

    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    if not offline:
        try:
            return Path(snapshot_download(name, allow_patterns=_HUB_FILES)), "Hub"
        except Exception:  # unreachable Hub, unknown id, no rights: the cache may still have it
            pass
    try:
        return Path(snapshot_download(name, allow_patterns=_HUB_FILES, local_files_only=True)), "local HF cache"
    except Exception as err:
        where = "the Hub is not consulted (HF_HUB_OFFLINE)" if offline else "the Hub did not provide it"
        raise HFConfigError(f"Hub id '{name}': not in the local Hugging Face cache and {where} "
                            f"({type(err).__name__})") from None


def import_hf_command(name: str, out: Path, echo: Echo) -> int:
    """Write ``out/<spec>.yaml`` (sizes from config.json) and ``out/weights.safetensors``; 1 on a clear error."""
    from nngraph.spec import load_spec

    from . import build_module
    from .hf_import import ImportWeightsError, load_hf_state_dict, read_state_dict
    from .weights import save_weights

    spec_path = None
    try:
        folder, found = model_folder(name)
        config = read_config(folder)
        text, family = spec_text(config, name)
        state = read_state_dict(folder)
        spec_path, weights = out / f"{family.spec}.yaml", out / WEIGHTS
        for path in (spec_path, weights):
            if path.exists():
                spec_path = None  # not ours to remove
                raise HFConfigError(f"'{path}' exists; remove it or give -o another folder")
        out.mkdir(parents=True, exist_ok=True)
        spec_path.write_text(text, encoding="utf-8")
        graph = load_spec(spec_path)
        module = build_module(graph)
        converted = load_hf_state_dict(module, graph, family.source, state)
    except (HFConfigError, ImportWeightsError, ValueError, OSError) as err:
        if spec_path is not None:
            spec_path.unlink(missing_ok=True)  # no spec without its weights
        echo(f"error: {err}", err=True)
        return 1
    save_weights(module, graph, weights)
    echo(f"read {folder} ({found}): model_type {config['model_type']} -> specs/{family.spec}.yaml, "
         f"{graph.total_params:,} parameters")
    for key, why in converted.skipped:
        echo(f"  skipped {key}: {why}")
    echo(f"wrote {spec_path} and {weights}")
    return 0
