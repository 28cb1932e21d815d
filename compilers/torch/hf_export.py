"""``nngraph export-hf SPEC|RUN_DIR -o FOLDER``: a spec of a known family as a Hugging Face model folder.

::

    nngraph export-hf out/llama_style.yaml --weights out/weights.safetensors -o hf/   # config.json + model.safetensors
    nngraph export-hf runs/my-run -o hf/                                              # + the run's tokenizer.json

The family and config.json come from :mod:`nngraph.hf_config` / :mod:`nngraph.hf_export` (the spec must
be the family's zoo spec at its vars; otherwise the error names the first node that does not fit).
The tensors are :mod:`.hf_import`'s mapping run backwards over the keys of the transformers model
built from that config on the meta device (transposes undone, GPT-NeoX's q, k, v re-fused per head;
a tied head is left to ``tie_word_embeddings``), so ``from_pretrained(FOLDER)`` loads every tensor.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from nngraph.hf_config import Family

from .hf_import import MAPPINGS, Rule, _strip, _targets, _transposed

Echo = Callable[..., None]


def _neox_fuse(parts: list[torch.Tensor], heads: int) -> torch.Tensor:
    """q, k, v rows [head, head_dim] -> NeoX's fused rows [head, (q, k, v), head_dim] (inverse of the split)."""
    per_head = [p.reshape(heads, -1, *p.shape[1:]) for p in parts]
    return torch.stack(per_head, dim=1).reshape(-1, *parts[0].shape[1:]).contiguous()


def _inverse(rule: Rule, names: list[str], parts: list[torch.Tensor], heads: int) -> torch.Tensor:
    """The HF tensor of ``parts`` (the spec tensors ``names`` one HF tensor fed): re-fused, transposed back,
    or the one value several spec tensors hold (T5's ``shared``, copied onto both embeddings by the import)."""
    if rule.split is not None:
        return _neox_fuse(parts, heads)
    if any(not torch.equal(p, parts[0]) for p in parts[1:]):
        raise ValueError(f"{' and '.join(names)} differ, but the Hugging Face layout has one tensor for them "
                         f"('{rule.pattern}')")
    return _transposed(parts[0]) if rule.transform is _transposed else parts[0]


def hf_tensors(ours: Mapping[str, torch.Tensor], family: Family, hf_shapes: Mapping[str, tuple[int, ...]],
               heads: int) -> dict[str, torch.Tensor]:
    """The HF state dict (``hf_shapes``: key -> shape of the transformers model) from the spec's tensors ``ours``."""
    m = MAPPINGS[family.source]
    shapes = {k: tuple(v.shape) for k, v in ours.items()}
    out: dict[str, torch.Tensor] = {}
    for hf_key, shape in hf_shapes.items():
        key = _strip(hf_key, m.prefixes)
        if any(re.fullmatch(p, key) for p, _ in m.skip):
            continue
        rule, match = next(((r, mt) for r in m.rules if (mt := re.fullmatch(r.pattern, key))), (None, None))
        present = [t for t in (_targets(rule, key, match, shapes) if rule else []) if t in ours]
        if not present:
            if any(key == tied for tied, _, _ in m.tied):
                continue  # a tied head: transformers ties it from config.json's tie_word_embeddings
            raise ValueError(f"the spec has no tensor for {hf_key} {list(shape)}")
        tensor = _inverse(rule, present, [ours[t] for t in present], heads)
        if tuple(tensor.shape) != tuple(shape):
            raise ValueError(f"{present[0]} {list(tensor.shape)} does not fit {hf_key} {list(shape)}")
        out[hf_key] = tensor.detach().contiguous().cpu()
    return out


def _hf_model_shapes(config: dict[str, Any], family: Family) -> tuple[Any, dict[str, tuple[int, ...]]]:
    """(transformers config, key -> shape of its model built on the meta device)."""
    import transformers

    fields = {k: v for k, v in config.items() if k not in ("model_type", "architectures")}
    cfg = transformers.AutoConfig.for_model(config["model_type"], **fields)
    cfg.architectures = [family.architecture]
    with torch.device("meta"):
        model = getattr(transformers, family.architecture)(cfg)
    return cfg, {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _keep_tie_flag(path: Path, config: dict[str, Any]) -> None:
    """Write the family's ``tie_word_embeddings`` back: transformers 5 saves T5's as true whatever it was given
    (it keeps "unscaled head" in its own ``scale_decoder_outputs``), which older versions would read as tied."""
    fields = json.loads(path.read_text(encoding="utf-8"))
    if "tie_word_embeddings" in config and fields.get("tie_word_embeddings") != config["tie_word_embeddings"]:
        path.write_text(json.dumps(fields | {"tie_word_embeddings": config["tie_word_embeddings"]}, indent=2) + "\n",
                        encoding="utf-8")


def export_hf_command(model: Path, out: Path, weights: Path | None, overrides: list[str], echo: Echo) -> int:
    """Write ``out/config.json`` and ``out/model.safetensors`` (+ a run's tokenizer.json); 1 on a clear error."""
    from safetensors.torch import save_file

    from nngraph.hf_export import HFExportError, match_family
    from nngraph.run_folder import is_run_folder, model_source

    from . import build_module
    from .hf_import import _heads
    from .state import StateDictError, load_state_dict, state_dict_for
    from .weights import WeightsError, load_weights

    try:
        graph, _, weights = model_source(model, overrides, weights)
        name, family, config = match_family(graph)
        module = build_module(graph)
        if weights is not None:
            load_state_dict(module, load_weights(weights).tensors)
        cfg, shapes = _hf_model_shapes(config, family)
        tensors = hf_tensors(state_dict_for(module), family, shapes, _heads(graph) or 0)
    except ImportError as err:
        echo(f"error: export-hf builds the transformers model to lay out its tensors: {err}; "
             "pip install 'nngraph[hf]'", err=True)
        return 1
    except (HFExportError, WeightsError, StateDictError, ValueError, OSError) as err:
        echo(f"error: {err}", err=True)
        return 1
    out.mkdir(parents=True, exist_ok=True)
    cfg.save_pretrained(out)
    _keep_tie_flag(out / "config.json", config)
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    tokenizer = Path(model) / "tokenizer.json"
    if is_run_folder(model) and tokenizer.is_file():
        shutil.copyfile(tokenizer, out / "tokenizer.json")
    echo(f"{graph.name} fits {name} ({family.architecture}): wrote {out}/config.json and "
         f"{out}/model.safetensors ({len(tensors)} tensors{', weights ' + str(weights) if weights else ', initial weights'})")
    return 0
