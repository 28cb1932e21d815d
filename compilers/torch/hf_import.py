"""Import Hugging Face-format weights onto a spec's parameter names (``nngraph import-weights``).

::

    from nngraph.compilers.torch.hf_import import import_weights
    model = import_weights("specs/gpt2_small.yaml", "hf-gpt2", "pytorch_model.bin")   # a loaded model
    # or, for a state dict already in memory:
    tensors, skipped = convert_state_dict(graph, "hf-llama", hf_model.state_dict())

Sources (a state dict of the HF model class, with or without its base-model prefix):

``hf-gpt2``  GPT2LMHeadModel / GPT2Model onto specs/gpt2_small.yaml. GPT-2's ``Conv1D`` stores
             weights [in, out]: ``c_attn`` (the fused q|k|v, the spec's ``attn.qkv``), ``attn.c_proj``
             (``attn.out``), ``mlp.c_fc``, ``mlp.c_proj`` are transposed. Skipped: ``lm_head.weight``
             (tied to ``wte``), the causal-mask buffers ``attn.bias`` / ``attn.masked_bias``.
``hf-bert``  BertForMaskedLM / BertModel / BertForPreTraining onto specs/bert_encoder.yaml. Skipped:
             the pooler ``bert.pooler.*`` and the next-sentence head ``cls.seq_relationship.*`` (the
             spec has neither), ``cls.predictions.decoder.weight`` (tied to the word embeddings),
             ``cls.predictions.decoder.bias`` (the same tensor as ``cls.predictions.bias``), the
             ``position_ids`` / ``token_type_ids`` buffers.
``hf-roberta`` RobertaModel (with its pooler) onto specs/seeds/roberta.yaml: BERT's names under
             ``roberta.`` (or none). The positions are computed in the spec from the padding, so the
             checkpoint's 514-row position table loads as is. Skipped: an ``lm_head`` (the spec has
             none), the ``position_ids`` / ``token_type_ids`` buffers.
``hf-roberta-mlm`` RobertaForMaskedLM onto specs/roberta_mlm.yaml: the same encoder, then ``lm_head.dense``,
             ``lm_head.layer_norm`` and ``lm_head.bias`` (the decoder is tied to the word embeddings).
             Skipped: a pooler, ``lm_head.decoder.*`` (tied), the index buffers.
``hf-llama`` LlamaForCausalLM onto specs/llama_style.yaml. HF stores q/k rows in the rotate-half RoPE
             order, which is the convention of this back end's RoPE, so nothing is permuted. Without
             ``lm_head.weight`` (tied checkpoints) the head gets ``embed_tokens``. Skipped:
             ``rotary_emb.inv_freq`` buffers.
``hf-mistral``, ``hf-qwen2``, ``hf-gemma``: MistralForCausalLM, Qwen2ForCausalLM (q/k/v biases),
             GemmaForCausalLM onto specs/mistral_style.yaml, qwen2_style.yaml, gemma_style.yaml: the
             LLaMA key layout. A tied spec (Qwen2, Gemma) skips ``lm_head.weight`` when it equals
             ``embed_tokens`` (an untied checkpoint is an error naming the tensor).
``hf-gpt-neox`` GPTNeoXForCausalLM (Pythia) onto specs/gpt_neox_style.yaml. NeoX fuses q|k|v per head
             (rows ordered [head, q/k/v, head_dim]); they are split onto the spec's ``q``, ``k``,
             ``v`` (the head count comes from the spec). Skipped: the causal-mask and RoPE buffers.
``hf-t5``    T5ForConditionalGeneration / T5Model (ReLU FFN, tied head) onto
             specs/t5_encoder_decoder.yaml: ``shared`` feeds both the encoder and the decoder
             embedding, and T5's one relative-bias table per stack (in block 0, read by every
             layer) goes to the stack's layer-0 ``rel_bias``, which the spec's other layers read
             (``position_from``), so nothing is copied.
             Skipped: ``encoder.embed_tokens`` / ``decoder.embed_tokens`` / ``lm_head.weight``
             (tied to ``shared``; an untied head is an error: the spec ties and scales it).
``hf-t5-v1.1`` T5 v1.1 / flan-t5 (gated-GELU FFN) onto specs/t5_v1_1.yaml: ``wi_0`` / ``wi_1`` go to
             the gated FFN's ``gate`` / ``up``, ``shared`` to the one token table, ``lm_head`` to the
             spec's own head (a checkpoint without one gets ``shared``, as transformers ties it).

Anything that does not fit raises :class:`ImportWeightsError`, listing the spec's missing
parameters, the checkpoint's unexpected tensors and the shape mismatches (typically: set the
spec's sizes with ``--set`` to the checkpoint's config). Files are read without executing code:
safetensors, or ``torch.load(weights_only=True)``; a directory means every ``*.safetensors`` (else
``*.bin``) file in it (sharded checkpoints).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

import torch

from nngraph import load_spec
from nngraph.ir import Graph

Transform = Callable[[torch.Tensor], torch.Tensor]
Split = Callable[[torch.Tensor, int], tuple[torch.Tensor, ...]]  # (tensor, heads) -> one tensor per target


def _same(t: torch.Tensor) -> torch.Tensor:
    return t


def _transposed(t: torch.Tensor) -> torch.Tensor:
    return t.t().contiguous() if t.dim() == 2 else t


@dataclass(frozen=True)
class Rule:
    """HF key pattern (full match, prefix already removed) -> spec key template(s) and a transform.

    A template ``{all}`` in place of a layer number means every copy of the repeated block.
    """

    pattern: str
    targets: tuple[str, ...]
    transform: Transform = _same
    split: Split | None = None  # one tensor per target instead of the same tensor for each


@dataclass(frozen=True)
class SourceMap:
    """How one source's keys map: prefixes to strip, rules, keys skipped on purpose (regexes)."""

    prefixes: tuple[str, ...]
    rules: tuple[Rule, ...]
    skip: tuple[tuple[str, str], ...]  # (pattern, why)
    fallbacks: tuple[tuple[str, str], ...] = ()  # (spec key, spec key it copies when the checkpoint lacks it)
    # (key, key it must equal, note when it does not): a tied tensor the spec has no place for is skipped
    tied: tuple[tuple[str, str, str], ...] = ()


def _r(pattern: str, *targets: str, transform: Transform = _same, split: Split | None = None) -> Rule:
    return Rule(pattern, targets, transform, split)


_GPT2 = SourceMap(
    prefixes=("transformer.",),
    rules=(
        _r(r"wte\.weight", "wte.weight"), _r(r"wpe\.weight", "wpe.weight"),
        _r(r"ln_f\.(weight|bias)", "ln_f.{1}"),
        _r(r"h\.(\d+)\.(ln_1|ln_2)\.(weight|bias)", "h.{1}.{2}.{3}"),
        _r(r"h\.(\d+)\.attn\.c_attn\.(weight|bias)", "h.{1}.attn.qkv.{2}", transform=_transposed),
        _r(r"h\.(\d+)\.attn\.c_proj\.(weight|bias)", "h.{1}.attn.out.{2}", transform=_transposed),
        _r(r"h\.(\d+)\.mlp\.(c_fc|c_proj)\.(weight|bias)", "h.{1}.mlp.{2}.{3}", transform=_transposed),
    ),
    skip=((r"lm_head\.weight", "tied to wte"), (r"h\.\d+\.attn\.(bias|masked_bias)", "causal-mask buffer")),
)

_BERT_ENCODER = (  # BertModel's embeddings and layers (RobertaModel has the same names)
    _r(r"embeddings\.(word_embeddings|position_embeddings|token_type_embeddings)\.weight", "{1}.weight"),
    _r(r"embeddings\.LayerNorm\.(weight|bias)", "embed_norm.{1}"),
    _r(r"encoder\.layer\.(\d+)\.attention\.self\.query\.(weight|bias)", "encoder.{1}.attention.q.{2}"),
    _r(r"encoder\.layer\.(\d+)\.attention\.self\.key\.(weight|bias)", "encoder.{1}.attention.k.{2}"),
    _r(r"encoder\.layer\.(\d+)\.attention\.self\.value\.(weight|bias)", "encoder.{1}.attention.v.{2}"),
    _r(r"encoder\.layer\.(\d+)\.attention\.output\.dense\.(weight|bias)", "encoder.{1}.attention.out.{2}"),
    _r(r"encoder\.layer\.(\d+)\.attention\.output\.LayerNorm\.(weight|bias)", "encoder.{1}.attn_norm.{2}"),
    _r(r"encoder\.layer\.(\d+)\.intermediate\.dense\.(weight|bias)", "encoder.{1}.ffn.up.{2}"),
    _r(r"encoder\.layer\.(\d+)\.output\.dense\.(weight|bias)", "encoder.{1}.ffn.down.{2}"),
    _r(r"encoder\.layer\.(\d+)\.output\.LayerNorm\.(weight|bias)", "encoder.{1}.out_norm.{2}"),
)

_BERT = SourceMap(
    prefixes=("bert.",),
    rules=_BERT_ENCODER + (
        _r(r"cls\.predictions\.transform\.dense\.(weight|bias)", "mlm_dense.{1}"),
        _r(r"cls\.predictions\.transform\.LayerNorm\.(weight|bias)", "mlm_norm.{1}"),
        _r(r"cls\.predictions\.bias", "mlm_decoder.bias"),
    ),
    skip=((r"pooler\..*", "BERT pooler: the spec has no pooler"),
          (r"cls\.seq_relationship\..*", "next-sentence head: the spec has none"),
          (r"cls\.predictions\.decoder\.weight", "tied to word_embeddings"),
          (r"cls\.predictions\.decoder\.bias", "same tensor as cls.predictions.bias"),
          (r"embeddings\.(position_ids|token_type_ids)", "index buffer")),
)

_LLAMA = SourceMap(
    prefixes=("model.",),
    rules=(
        _r(r"embed_tokens\.weight", "embed_tokens.weight"), _r(r"norm\.weight", "norm.weight"),
        _r(r"lm_head\.weight", "lm_head.weight"),
        _r(r"layers\.(\d+)\.self_attn\.(q|k|v)_proj\.(weight|bias)", "layers.{1}.self_attn.{2}.{3}"),
        _r(r"layers\.(\d+)\.self_attn\.o_proj\.(weight|bias)", "layers.{1}.self_attn.out.{2}"),
        _r(r"layers\.(\d+)\.mlp\.(gate|up|down)_proj\.(weight|bias)", "layers.{1}.mlp.{2}.{3}"),
        _r(r"layers\.(\d+)\.(input_layernorm|post_attention_layernorm)\.weight", "layers.{1}.{2}.weight"),
    ),
    skip=((r"layers\.\d+\.self_attn\.rotary_emb\.inv_freq|rotary_emb\.inv_freq", "RoPE buffer (recomputed)"),),
    fallbacks=(("lm_head.weight", "embed_tokens.weight"),),
    tied=(("lm_head.weight", "embed_tokens.weight",
           "lm_head.weight differs from embed_tokens (an untied head); the spec ties its head to embed_tokens"),),
)


def _neox_qkv(t: torch.Tensor, heads: int) -> tuple[torch.Tensor, ...]:
    """NeoX's fused rows [head, (q, k, v), head_dim] -> q, k, v rows [head, head_dim] each."""
    per_head = t.reshape(heads, 3, -1, *t.shape[1:])
    return tuple(per_head[:, i].reshape(-1, *t.shape[1:]).contiguous() for i in range(3))


_GPT_NEOX = SourceMap(
    prefixes=("gpt_neox.",),
    rules=(
        _r(r"embed_in\.weight", "embed_in.weight"), _r(r"(embed_out|lm_head)\.weight", "lm_head.weight"),
        _r(r"final_layer_norm\.(weight|bias)", "final_layer_norm.{1}"),
        _r(r"layers\.(\d+)\.(input_layernorm|post_attention_layernorm)\.(weight|bias)", "layers.{1}.{2}.{3}"),
        _r(r"layers\.(\d+)\.attention\.query_key_value\.(weight|bias)", "layers.{1}.attention.q.{2}",
           "layers.{1}.attention.k.{2}", "layers.{1}.attention.v.{2}", split=_neox_qkv),
        _r(r"layers\.(\d+)\.attention\.dense\.(weight|bias)", "layers.{1}.attention.out.{2}"),
        _r(r"layers\.(\d+)\.mlp\.dense_h_to_4h\.(weight|bias)", "layers.{1}.mlp.up.{2}"),
        _r(r"layers\.(\d+)\.mlp\.dense_4h_to_h\.(weight|bias)", "layers.{1}.mlp.down.{2}"),
    ),
    skip=((r"layers\.\d+\.attention\.(bias|masked_bias|rotary_emb\.inv_freq)|rotary_emb\.inv_freq",
           "causal-mask or RoPE buffer (recomputed)"),),
)


def _t5_stack(stack: str, cross: bool, gated: bool = False) -> tuple[Rule, ...]:
    """One T5 stack's rules; ``gated``: v1.1's FFN (wi_0, wi_1 onto gated_mlp's gate, up)."""
    spec = stack  # the spec's repeated blocks are named "encoder" / "decoder"
    ff = 2 if cross else 1
    ffn = ([_r(rf"{stack}\.block\.(\d+)\.layer\.{ff}\.DenseReluDense\.wi_0\.weight", f"{spec}.{{1}}.ff.gate.weight"),
            _r(rf"{stack}\.block\.(\d+)\.layer\.{ff}\.DenseReluDense\.wi_1\.weight", f"{spec}.{{1}}.ff.up.weight")]
           if gated else
           [_r(rf"{stack}\.block\.(\d+)\.layer\.{ff}\.DenseReluDense\.wi\.weight", f"{spec}.{{1}}.ff.up.weight")])
    rules = ffn + [
        _r(rf"{stack}\.block\.(\d+)\.layer\.0\.SelfAttention\.(q|k|v)\.weight", f"{spec}.{{1}}.self_attn.{{2}}.weight"),
        _r(rf"{stack}\.block\.(\d+)\.layer\.0\.SelfAttention\.o\.weight", f"{spec}.{{1}}.self_attn.out.weight"),
        _r(rf"{stack}\.block\.0\.layer\.0\.SelfAttention\.relative_attention_bias\.weight",
           f"{spec}.0.self_attn.rel_bias.weight"),  # one table per stack, read by every layer
        _r(rf"{stack}\.block\.(\d+)\.layer\.0\.layer_norm\.weight", f"{spec}.{{1}}.ln_self.weight"),
        _r(rf"{stack}\.block\.(\d+)\.layer\.{ff}\.DenseReluDense\.wo\.weight", f"{spec}.{{1}}.ff.down.weight"),
        _r(rf"{stack}\.block\.(\d+)\.layer\.{ff}\.layer_norm\.weight", f"{spec}.{{1}}.ln_ff.weight"),
        _r(rf"{stack}\.final_layer_norm\.weight", f"{stack}_norm.weight"),
    ]
    if cross:
        rules += [
            _r(r"decoder\.block\.(\d+)\.layer\.1\.EncDecAttention\.(q|k|v)\.weight", "decoder.{1}.cross_attn.{2}.weight"),
            _r(r"decoder\.block\.(\d+)\.layer\.1\.EncDecAttention\.o\.weight", "decoder.{1}.cross_attn.out.weight"),
            _r(r"decoder\.block\.(\d+)\.layer\.1\.layer_norm\.weight", "decoder.{1}.ln_cross.weight"),
        ]
    return tuple(rules)


_T5 = SourceMap(
    prefixes=(),
    rules=(_r(r"shared\.weight", "encoder_embed.weight", "decoder_embed.weight"),
           *_t5_stack("encoder", False), *_t5_stack("decoder", True)),
    skip=((r"(encoder|decoder)\.embed_tokens\.weight", "tied to shared"),),
    fallbacks=(("encoder_embed.weight", "decoder_embed.weight"), ("decoder_embed.weight", "encoder_embed.weight")),
    tied=(("lm_head.weight", "shared.weight", "lm_head.weight differs from shared.weight (an untied T5 head); the "
           "spec ties its head to the decoder embedding and scales by d_model^-0.5"),),
)

_T5_V1_1 = SourceMap(  # one shared table (the spec's decoder embedding is tied to the encoder's), its own head
    prefixes=(),
    rules=(_r(r"shared\.weight", "encoder_embed.weight"), _r(r"lm_head\.weight", "lm_head.weight"),
           *_t5_stack("encoder", False, gated=True), *_t5_stack("decoder", True, gated=True)),
    skip=_T5.skip,
    fallbacks=(("lm_head.weight", "encoder_embed.weight"),),  # a checkpoint whose head is tied to shared
)

_ROBERTA = SourceMap(
    prefixes=("roberta.",),
    rules=_BERT_ENCODER + (_r(r"pooler\.dense\.(weight|bias)", "pooler_dense.{1}"),),
    skip=((r"lm_head\..*", "MLM head: the spec has none"),
          (r"embeddings\.(position_ids|token_type_ids)", "index buffer")),
)

_ROBERTA_MLM = SourceMap(  # RobertaForMaskedLM: the encoder, then RobertaLMHead (decoder tied, bias its own)
    prefixes=("roberta.",),
    rules=_BERT_ENCODER + (_r(r"lm_head\.dense\.(weight|bias)", "lm_dense.{1}"),
                           _r(r"lm_head\.layer_norm\.(weight|bias)", "lm_norm.{1}"),
                           _r(r"lm_head\.bias", "lm_decoder.bias")),
    skip=((r"pooler\..*", "RoBERTa pooler: the MLM spec has none"),
          (r"lm_head\.decoder\.weight", "tied to word_embeddings"),
          (r"lm_head\.decoder\.bias", "same tensor as lm_head.bias"),
          (r"embeddings\.(position_ids|token_type_ids)", "index buffer")),
)

#: source name -> key map; the LLaMA layout serves Mistral, Qwen2 (its q/k/v biases match the same rules), Gemma
MAPPINGS: dict[str, SourceMap] = {"hf-gpt2": _GPT2, "hf-bert": _BERT, "hf-roberta": _ROBERTA,
                                  "hf-roberta-mlm": _ROBERTA_MLM, "hf-llama": _LLAMA,
                                  "hf-mistral": _LLAMA, "hf-qwen2": _LLAMA, "hf-gemma": _LLAMA,
                                  "hf-gpt-neox": _GPT_NEOX, "hf-t5": _T5, "hf-t5-v1.1": _T5_V1_1}
SOURCES = tuple(MAPPINGS)


class ImportWeightsError(ValueError):
    """The checkpoint does not fit the spec: what is missing, unexpected or mis-shaped."""

    def __init__(self, source: str, spec: str, missing: list[str], unexpected: list[str],
                 mismatched: list[tuple[str, str, tuple[int, ...], tuple[int, ...]]], notes: list[str] | None = None,
                 limit: int = 12):
        self.missing, self.unexpected, self.mismatched = missing, unexpected, mismatched

        def some(items: list[str]) -> str:
            shown = items[:limit]
            more = f"\n    ... and {len(items) - limit} more" if len(items) > limit else ""
            return "".join(f"\n    {s}" for s in shown) + more

        parts = [f"{source} checkpoint does not fit spec '{spec}'"]
        if missing:
            parts.append(f"  missing (spec parameters the checkpoint does not provide): {len(missing)}{some(missing)}")
        if unexpected:
            parts.append(f"  unexpected (checkpoint tensors with no place in the spec): {len(unexpected)}{some(unexpected)}")
        if mismatched:
            parts.append(f"  shape mismatch: {len(mismatched)}" + some(
                [f"{hf} -> {key}: spec {list(want)}, checkpoint {list(got)}" for hf, key, want, got in mismatched]))
        parts += [f"  note: {n}" for n in notes or []]
        if missing or mismatched:
            parts.append("  hint: match the spec's sizes to the checkpoint's config with --set (e.g. layers=, d_model=, heads=, vocab=)")
        super().__init__("\n".join(parts))


@dataclass
class Converted:
    """A converted state dict (spec names) and the checkpoint keys skipped on purpose (key, why)."""

    tensors: dict[str, torch.Tensor]
    skipped: list[tuple[str, str]] = field(default_factory=list)


def _strip(key: str, prefixes: tuple[str, ...]) -> str:
    for p in prefixes:
        if key.startswith(p):
            return key[len(p):]
    return key


def _copies(template: str, expected: Mapping[str, tuple[int, ...]]) -> list[str]:
    """Spec keys of a template with ``{all}`` (every repeated copy present in the spec)."""
    pattern = re.compile(re.escape(template).replace(re.escape("{all}"), r"\d+"))
    return sorted((k for k in expected if pattern.fullmatch(k)), key=lambda k: [int(p) if p.isdigit() else p
                                                                                    for p in k.split(".")])


def _targets(rule: Rule, key: str, match: re.Match, expected: Mapping[str, tuple[int, ...]]) -> list[str]:
    """The spec keys a rule sends ``key`` to (``{all}`` expanded to every repeated copy)."""
    groups = (key,) + match.groups()
    targets: list[str] = []
    for template in rule.targets:
        name = template.format(*groups, all="{all}")
        targets += _copies(name, expected) if "{all}" in name else [name]
    return targets


def _values(rule: Rule, tensor: torch.Tensor, targets: list[str], heads: int | None) -> list[torch.Tensor]:
    """One tensor per target: the rule's split (which needs the head count), else the same transformed tensor."""
    if rule.split is None:
        return [rule.transform(tensor)] * len(targets)
    if heads is None:
        raise ValueError(f"'{rule.pattern}' splits per head: pass the spec's head count")
    return list(rule.split(tensor, heads))


def _tied(m: SourceMap, key: str, tensor: torch.Tensor, stripped: Mapping[str, torch.Tensor]) -> tuple[str, str] | None:
    """(partner, note) when ``key`` is a tied tensor of the source; the note is empty when it equals its partner."""
    for tied, partner, note in m.tied:
        if key == tied:
            other = stripped.get(partner)
            same = other is not None and other.shape == tensor.shape and torch.equal(other, tensor)
            return partner, "" if same else note
    return None


def convert_state_dict(expected: Mapping[str, tuple[int, ...]], source: str, state: Mapping[str, torch.Tensor],
                       spec_name: str = "spec", heads: int | None = None) -> Converted:
    """Map an HF-format ``state`` onto the spec keys ``expected`` (key -> shape); raises :class:`ImportWeightsError`.

    ``heads``: the spec's attention head count, for sources whose fused tensors split per head (GPT-NeoX)."""
    if source not in MAPPINGS:
        raise ValueError(f"unknown weight source '{source}' (known: {', '.join(SOURCES)})")
    m = MAPPINGS[source]
    stripped = {_strip(k, m.prefixes): v for k, v in state.items()}
    out: dict[str, torch.Tensor] = {}
    skipped: list[tuple[str, str]] = []
    unexpected: list[str] = []
    mismatched: list[tuple[str, str, tuple[int, ...], tuple[int, ...]]] = []
    notes: list[str] = []
    for hf_key, tensor in state.items():
        key = _strip(hf_key, m.prefixes)
        why = next((w for p, w in m.skip if re.fullmatch(p, key)), None)
        if why is not None:
            skipped.append((hf_key, why))
            continue
        rule, match = next(((r, mt) for r in m.rules if (mt := re.fullmatch(r.pattern, key))), (None, None))
        targets = _targets(rule, key, match, expected) if rule else []
        placed = [(t, v) for t, v in zip(targets, _values(rule, tensor, targets, heads) if rule else []) if t in expected]
        for target, value in placed:
            if tuple(value.shape) != tuple(expected[target]):
                mismatched.append((hf_key, target, tuple(expected[target]), tuple(value.shape)))
            else:
                out[target] = value
        if placed:
            continue
        tied = _tied(m, key, tensor, stripped)
        if tied and not tied[1]:
            skipped.append((hf_key, f"tied to {tied[0].removesuffix('.weight')}"))
            continue
        unexpected.append(hf_key)
        notes += [tied[1]] if tied else []
    for key, fallback in m.fallbacks:
        if key in expected and key not in out and fallback in out and tuple(out[fallback].shape) == tuple(expected[key]):
            out[key] = out[fallback]
    bad = {k for _, k, _, _ in mismatched}
    missing = [k for k in expected if k not in out and k not in bad]
    if missing or unexpected or mismatched:
        raise ImportWeightsError(source, spec_name, missing, unexpected, mismatched, notes)
    return Converted(out, skipped)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A checkpoint's tensors, read without executing code (safetensors or ``torch.load(weights_only=True)``)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.safetensors")) or sorted(path.glob("*.bin"))
        if not files:
            raise FileNotFoundError(f"no *.safetensors or *.bin files in '{path}'")
        out: dict[str, torch.Tensor] = {}
        for f in files:
            out.update(read_state_dict(f))
        return out
    from .weights import load_torch_file, read_safetensors

    blob = read_safetensors(path, "checkpoint")[0] if path.suffix == ".safetensors" else load_torch_file(path, "checkpoint")
    if isinstance(blob, dict) and isinstance(blob.get("state_dict"), dict):
        blob = blob["state_dict"]
    if not isinstance(blob, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in blob.items()):
        raise ValueError(f"'{path}' is not a state dict (a mapping of names to tensors)")
    return dict(blob)


def expected_shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    """Spec key -> shape of a compiled model's parameters (each shared/tied tensor once)."""
    from .state import state_dict_for

    return {k: tuple(v.shape) for k, v in state_dict_for(module).items()}


def _heads(graph: Graph) -> int | None:
    """The spec's attention head count when every attention node has the same one."""
    counts = {n.params["heads"] for n in graph.nodes.values() if n.op == "attention"}
    return counts.pop() if len(counts) == 1 else None


def load_hf_state_dict(module: torch.nn.Module, graph: Graph, source: str,
                       state: Mapping[str, torch.Tensor]) -> Converted:
    """Convert ``state`` and load it into a compiled ``module`` (strict); returns what was converted/skipped."""
    from .state import load_state_dict

    own = module.state_dict()
    conv = convert_state_dict(expected_shapes(module), source, state, graph.name, _heads(graph))
    with torch.no_grad():
        load_state_dict(module, {k: v.to(dtype=own[k].dtype) for k, v in conv.tensors.items()})
    return conv


def import_weights(spec: str | Path | Graph, source: str, checkpoint: str | Path | Mapping[str, torch.Tensor],
                   overrides: list[str] | None = None, seed: int = 0):
    """Compile ``spec`` and load an HF-format checkpoint (file, directory, or state dict) into it."""
    from . import build_module

    graph = spec if isinstance(spec, Graph) else load_spec(spec, overrides or [])
    module = build_module(graph, seed=seed)
    state = checkpoint if isinstance(checkpoint, Mapping) else read_state_dict(checkpoint)
    load_hf_state_dict(module, graph, source, state)
    return module.eval()
