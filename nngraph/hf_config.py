"""A Hugging Face ``config.json`` as a zoo spec with every size from the config (``nngraph import-hf``).

Each family (an HF ``model_type``, or one layout of it: T5 v1.0 / v1.1, RobertaModel / RobertaForMaskedLM)
names the zoo spec it fills, the ``import-weights`` layout of its checkpoints, how the config's fields
become the spec's vars, and (export-hf) how the vars become config.json fields. Pure Python (no torch):
the generated spec validates anywhere; the weights are converted by the torch back end
(:mod:`nngraph.compilers.torch.hf_import`). A config the spec cannot express (a ``rope_type`` other than
default, linear, llama3 and yarn, a serial GPT-NeoX residual, Qwen2's per-layer sliding window, ...) is
refused with the field and value, never approximated.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .zoo import find_spec


#: HF ``rope_type`` -> the RoPE ``scaling`` of the LLaMA-like specs (``dynamic`` rescales with the running
#: sequence length and ``longrope`` switches tables past it: neither is one fixed set of frequencies)
ROPE_TYPES = {"default": "none", "linear": "linear", "llama3": "llama3", "yarn": "yarn"}


class HFConfigError(ValueError):
    """config.json names a family nngraph does not know, or a setting its spec cannot express."""


class Config:
    """config.json's fields with the checks every family shares."""

    def __init__(self, fields: dict[str, Any]):
        self.fields = fields

    def need(self, key: str) -> Any:
        if self.fields.get(key) is None:
            raise HFConfigError(f"config.json of model_type '{self.fields.get('model_type')}' has no '{key}'")
        return self.fields[key]

    def get(self, key: str, default: Any) -> Any:
        value = self.fields.get(key)
        return default if value is None else value

    def refuse(self, bad: bool, what: str) -> None:
        if bad:
            raise HFConfigError(f"config.json: {what}; the spec cannot express it")

    def rope(self, kinds: tuple[str, ...] = ("default",)) -> dict[str, Any]:
        """``rope_parameters`` (transformers 5) or ``rope_theta`` / ``rope_scaling`` (older files); a
        ``rope_type`` outside ``kinds`` is refused naming the ones this family maps."""
        rope = dict(self.fields.get("rope_parameters") or self.fields.get("rope_scaling") or {})
        kind = rope.get("rope_type", rope.get("type", "default"))
        self.refuse(kind not in kinds, f"rope scaling '{kind}' (import-hf maps {', '.join(kinds)} for "
                                       f"model_type {self.fields.get('model_type')})")
        rope.setdefault("rope_theta", self.get("rope_theta", 10000.0))
        return rope | {"rope_type": kind}

    def rope_vars(self) -> dict[str, Any]:
        """``rope_base`` and the ``rope_*`` scaling vars of the LLaMA-like specs (HF rope_type -> RoPE ``scaling``)."""
        rope = self.rope(tuple(ROPE_TYPES))
        kind = rope["rope_type"]
        out: dict[str, Any] = {"rope_base": float(rope["rope_theta"]), "rope_scaling": ROPE_TYPES[kind]}
        if kind == "default":
            return out
        self.refuse(rope.get("factor") is None, f"rope scaling '{kind}' without a factor")
        out["rope_factor"] = float(rope["factor"])
        if kind in ("llama3", "yarn"):
            original = (rope.get("original_max_position_embeddings")
                        or self.fields.get("original_max_position_embeddings"))
            self.refuse(original is None, f"rope scaling '{kind}' without original_max_position_embeddings")
            out["rope_original_len"] = int(original)
        if kind == "llama3":
            out |= {"rope_low_freq": float(rope["low_freq_factor"]), "rope_high_freq": float(rope["high_freq_factor"])}
        if kind == "yarn":  # the spec's YaRN is HF's with its defaults: mscale from the factor, betas 32 and 1
            for key, default in (("attention_factor", None), ("mscale", None), ("mscale_all_dim", None),
                                 ("beta_fast", 32), ("beta_slow", 1), ("truncate", True)):
                self.refuse(rope.get(key) not in (None, default), f"yarn {key} {rope.get(key)} (the spec's YaRN "
                                                                  f"uses {default})")
        return out

    def single_head_dim(self, d: int, heads: int) -> None:
        hd = self.fields.get("head_dim")
        self.refuse(hd is not None and hd * heads != d, f"head_dim {hd} x {heads} heads != hidden_size {d}")

    def activation(self, key: str, allowed: tuple[str, ...]) -> None:
        act = self.fields.get(key)
        self.refuse(act is not None and act not in allowed, f"{key} '{act}' (the spec uses {' or '.join(allowed)})")


def _llama_like(c: Config) -> dict[str, Any]:
    """LLaMA / Mistral / Qwen2 sizes: GQA heads, FFN width, norm eps, RoPE base, tied head."""
    d, heads = c.need("hidden_size"), c.need("num_attention_heads")
    c.single_head_dim(d, heads)
    c.activation("hidden_act", ("silu",))
    return {"vocab": c.need("vocab_size"), "d_model": d, "heads": heads,
            "kv_heads": c.get("num_key_value_heads", heads), "layers": c.need("num_hidden_layers"),
            "ffn": c.need("intermediate_size"), "eps": float(c.need("rms_norm_eps")),
            "tie": "embed_tokens" if c.get("tie_word_embeddings", False) else None} | c.rope_vars()


def _llama(c: Config) -> dict[str, Any]:
    return _llama_like(c) | {"attn_bias": bool(c.get("attention_bias", False)), "mlp_bias": bool(c.get("mlp_bias", False))}


def _mistral(c: Config) -> dict[str, Any]:
    """Mistral: a causal window of ``sliding_window`` keys (null: every key, i.e. max_position_embeddings)."""
    return _llama_like(c) | {"window": c.get("sliding_window", c.need("max_position_embeddings"))}


def _qwen2(c: Config) -> dict[str, Any]:
    c.refuse(bool(c.get("use_sliding_window", False)), "use_sliding_window true (windows on some layers only)")
    return _llama_like(c)


def _gemma(c: Config) -> dict[str, Any]:
    heads = c.need("num_attention_heads")
    c.activation("hidden_act", ("gelu_pytorch_tanh", "gelu_tanh"))
    c.activation("hidden_activation", ("gelu_pytorch_tanh", "gelu_tanh"))
    c.refuse(not c.get("tie_word_embeddings", True), "tie_word_embeddings false (Gemma ties its head)")
    return {"vocab": c.need("vocab_size"), "d_model": c.need("hidden_size"), "heads": heads,
            "kv_heads": c.get("num_key_value_heads", heads), "head_dim": c.need("head_dim"),
            "ffn": c.need("intermediate_size"), "layers": c.need("num_hidden_layers"),
            "rope_base": float(c.rope()["rope_theta"]), "eps": float(c.need("rms_norm_eps"))}


def _gpt_neox(c: Config) -> dict[str, Any]:
    """GPT-NeoX / Pythia: the rotated fraction from ``partial_rotary_factor`` (or the older ``rotary_pct``)."""
    c.refuse(not c.get("use_parallel_residual", True), "use_parallel_residual false (a serial residual)")
    c.refuse(not c.get("attention_bias", True), "attention_bias false")
    c.activation("hidden_act", ("gelu",))
    rope = c.rope()
    return {"vocab": c.need("vocab_size"), "d_model": c.need("hidden_size"), "heads": c.need("num_attention_heads"),
            "ffn": c.need("intermediate_size"), "layers": c.need("num_hidden_layers"),
            "rotary_fraction": float(rope.get("partial_rotary_factor", c.get("rotary_pct", 1.0))),
            "rope_base": float(rope["rope_theta"]), "eps": float(c.need("layer_norm_eps")),
            "tie": "embed_in" if c.get("tie_word_embeddings", False) else None}


def _gpt2(c: Config) -> dict[str, Any]:
    d = c.need("n_embd")
    c.refuse(c.get("n_inner", 4 * d) != 4 * d, f"n_inner {c.get('n_inner', 0)} (the spec's MLP is 4 x n_embd)")
    c.refuse(c.get("layer_norm_epsilon", 1e-5) != 1e-5, "layer_norm_epsilon other than 1e-5")
    c.activation("activation_function", ("gelu_new",))
    return {"vocab": c.need("vocab_size"), "d_model": d, "heads": c.need("n_head"), "layers": c.need("n_layer"),
            "ctx": c.need("n_positions"), "dropout": float(c.get("resid_pdrop", 0.1))}


def _bert(c: Config) -> dict[str, Any]:
    c.activation("hidden_act", ("gelu",))
    c.refuse(c.get("position_embedding_type", "absolute") != "absolute", "position_embedding_type not absolute")
    return {"vocab": c.need("vocab_size"), "type_vocab": c.get("type_vocab_size", 2), "d_model": c.need("hidden_size"),
            "heads": c.need("num_attention_heads"), "layers": c.need("num_hidden_layers"),
            "ffn": c.need("intermediate_size"), "max_len": c.need("max_position_embeddings"),
            "dropout": float(c.get("hidden_dropout_prob", 0.1)), "eps": float(c.need("layer_norm_eps"))}


def _t5_sizes(c: Config) -> dict[str, Any]:
    """The sizes both T5 layouts share (one depth for encoder and decoder)."""
    layers = c.need("num_layers")
    c.refuse(c.get("num_decoder_layers", layers) != layers, "num_decoder_layers != num_layers")
    return {"vocab": c.need("vocab_size"), "d_model": c.need("d_model"), "heads": c.need("num_heads"),
            "d_kv": c.need("d_kv"), "d_ff": c.need("d_ff"), "layers": layers,
            "buckets": c.get("relative_attention_num_buckets", 32),
            "max_distance": c.get("relative_attention_max_distance", 128),
            "dropout": float(c.get("dropout_rate", 0.1)), "eps": float(c.get("layer_norm_epsilon", 1e-6))}


def _t5_scaled(c: Config) -> bool:
    """Whether the head reads d_model^-0.5-scaled states: ``scale_decoder_outputs`` (transformers 5), else
    ``tie_word_embeddings`` not false (older files: v1.1 checkpoints untie and do not scale)."""
    flag = c.fields.get("scale_decoder_outputs")
    return bool(flag) if flag is not None else c.fields.get("tie_word_embeddings") is not False


def _t5(c: Config) -> dict[str, Any]:
    """T5 v1.0: ReLU FFN, head tied to the token table and fed d_model^-0.5-scaled states."""
    proj = c.get("feed_forward_proj", "relu")
    c.refuse(proj != "relu", f"feed_forward_proj '{proj}' (the T5 v1.0 spec's FFN is ReLU; v1.1 is gated-...)")
    c.refuse(not _t5_scaled(c), "an unscaled LM head on a ReLU FFN (neither T5 v1.0 nor v1.1)")
    return _t5_sizes(c) | {"shared_embed": True}


#: T5 v1.1 ``feed_forward_proj`` -> gated_mlp activation (transformers turns gated-gelu into gelu_new, tanh GELU)
T5_GATED = {"gated-gelu": "gelu_tanh", "gated-gelu_new": "gelu_tanh", "gated-gelu_pytorch_tanh": "gelu_tanh",
            "gated-silu": "silu", "gated-relu": "relu"}


def _t5_v1_1(c: Config) -> dict[str, Any]:
    """T5 v1.1 / flan-t5: a gated FFN, one token table, an own head (scaled only when the config says so)."""
    proj = c.get("feed_forward_proj", "")
    c.refuse(proj not in T5_GATED, f"feed_forward_proj '{proj}' (T5 v1.1 maps {', '.join(T5_GATED)})")
    return _t5_sizes(c) | {"activation": T5_GATED[proj], "scale_head": _t5_scaled(c)}


def _roberta(c: Config) -> dict[str, Any]:
    """RoBERTa: BERT's encoder, one token type, positions counted from pad + 1 in the graph."""
    c.activation("hidden_act", ("gelu",))
    c.refuse(c.get("position_embedding_type", "absolute") != "absolute", "position_embedding_type not absolute")
    c.refuse(c.get("type_vocab_size", 1) != 1, f"type_vocab_size {c.get('type_vocab_size', 1)} (RoBERTa has 1)")
    return {"vocab": c.need("vocab_size"), "pad": c.get("pad_token_id", 1), "d_model": c.need("hidden_size"),
            "heads": c.need("num_attention_heads"), "layers": c.need("num_hidden_layers"),
            "ffn": c.need("intermediate_size"), "max_len": c.need("max_position_embeddings"),
            "dropout": float(c.get("hidden_dropout_prob", 0.1)), "eps": float(c.need("layer_norm_eps"))}


@dataclass(frozen=True)
class Family:
    """One HF layout: the zoo spec it fills, its checkpoint layout, its config -> vars.

    A ``model_type`` with several layouts (T5 v1.0 and v1.1) has one family per layout, each with
    ``fits(config)``: the first family of the model_type that fits the config is used."""

    spec: str
    source: str
    vars: Callable[[Config], dict[str, Any]]
    config: Callable[[dict[str, Any]], dict[str, Any]] | None = None  # vars -> config.json fields (export-hf)
    architecture: str = ""  # the transformers class export-hf writes into config.json
    model_type: str = ""  # config.json's model_type: the FAMILIES key unless set
    fits: Callable[[dict[str, Any]], bool] = lambda config: True


def _rope_config(v: dict[str, Any]) -> dict[str, Any]:
    """``rope_theta`` and, when scaled, ``rope_scaling`` (read by transformers 4 and 5) from the rope_* vars."""
    kind = {ours: theirs for theirs, ours in ROPE_TYPES.items()}.get(v["rope_scaling"])
    if kind is None:
        raise HFConfigError(f"RoPE scaling '{v['rope_scaling']}' has no Hugging Face rope_type "
                            f"(export-hf writes {', '.join(ROPE_TYPES)})")
    if kind == "default":
        return {"rope_theta": v["rope_base"]}
    scaling: dict[str, Any] = {"rope_type": kind, "factor": v["rope_factor"]}
    if kind in ("llama3", "yarn"):
        scaling["original_max_position_embeddings"] = v["rope_original_len"]
    if kind == "llama3":
        scaling |= {"low_freq_factor": v["rope_low_freq"], "high_freq_factor": v["rope_high_freq"]}
    extra = {"max_position_embeddings": int(v["rope_original_len"] * v["rope_factor"])} if kind == "yarn" else {}
    return {"rope_theta": v["rope_base"], "rope_scaling": scaling} | extra


def _llama_like_config(v: dict[str, Any]) -> dict[str, Any]:
    return {"vocab_size": v["vocab"], "hidden_size": v["d_model"], "num_attention_heads": v["heads"],
            "num_key_value_heads": v["kv_heads"], "num_hidden_layers": v["layers"], "intermediate_size": v["ffn"],
            "rms_norm_eps": v["eps"], "tie_word_embeddings": v["tie"] is not None,
            "head_dim": v["d_model"] // v["heads"], "hidden_act": "silu"} | _rope_config(v)


def _gemma_config(v: dict[str, Any]) -> dict[str, Any]:
    return {"vocab_size": v["vocab"], "hidden_size": v["d_model"], "num_attention_heads": v["heads"],
            "num_key_value_heads": v["kv_heads"], "head_dim": v["head_dim"], "intermediate_size": v["ffn"],
            "num_hidden_layers": v["layers"], "rope_theta": v["rope_base"], "rms_norm_eps": v["eps"],
            "hidden_act": "gelu_pytorch_tanh", "hidden_activation": "gelu_pytorch_tanh", "tie_word_embeddings": True}


def _gpt_neox_config(v: dict[str, Any]) -> dict[str, Any]:
    return {"vocab_size": v["vocab"], "hidden_size": v["d_model"], "num_attention_heads": v["heads"],
            "intermediate_size": v["ffn"], "num_hidden_layers": v["layers"], "rotary_pct": v["rotary_fraction"],
            "rope_theta": v["rope_base"], "layer_norm_eps": v["eps"], "use_parallel_residual": True,
            "attention_bias": True, "hidden_act": "gelu", "tie_word_embeddings": v["tie"] is not None}


def _gpt2_config(v: dict[str, Any]) -> dict[str, Any]:
    return {"vocab_size": v["vocab"], "n_embd": v["d_model"], "n_head": v["heads"], "n_layer": v["layers"],
            "n_positions": v["ctx"], "activation_function": "gelu_new", "resid_pdrop": v["dropout"],
            "embd_pdrop": v["dropout"], "attn_pdrop": v["dropout"], "tie_word_embeddings": True}


def _bert_config(v: dict[str, Any]) -> dict[str, Any]:
    return {"vocab_size": v["vocab"], "type_vocab_size": v["type_vocab"], "hidden_size": v["d_model"],
            "num_attention_heads": v["heads"], "num_hidden_layers": v["layers"], "intermediate_size": v["ffn"],
            "max_position_embeddings": v["max_len"], "hidden_dropout_prob": v["dropout"],
            "attention_probs_dropout_prob": v["dropout"], "layer_norm_eps": v["eps"], "hidden_act": "gelu"}


def _t5_config(v: dict[str, Any]) -> dict[str, Any]:
    return {"vocab_size": v["vocab"], "d_model": v["d_model"], "num_heads": v["heads"], "d_kv": v["d_kv"],
            "d_ff": v["d_ff"], "num_layers": v["layers"], "num_decoder_layers": v["layers"],
            "relative_attention_num_buckets": v["buckets"], "relative_attention_max_distance": v["max_distance"],
            "dropout_rate": v["dropout"], "layer_norm_epsilon": v["eps"], "feed_forward_proj": "relu",
            "tie_word_embeddings": True}


def _t5_v1_1_config(v: dict[str, Any]) -> dict[str, Any]:
    proj = next((k for k, act in T5_GATED.items() if act == v["activation"]), None)
    if proj is None:
        raise HFConfigError(f"T5 v1.1 FFN activation '{v['activation']}' has no feed_forward_proj "
                            f"(export-hf writes {', '.join(sorted(set(T5_GATED.values())))})")
    # tie_word_embeddings false is how every transformers version reads "the head is not scaled"
    return _t5_config(v) | {"feed_forward_proj": proj, "tie_word_embeddings": bool(v["scale_head"])}


def _roberta_config(v: dict[str, Any]) -> dict[str, Any]:
    return {"vocab_size": v["vocab"], "pad_token_id": v["pad"], "type_vocab_size": 1, "hidden_size": v["d_model"],
            "num_attention_heads": v["heads"], "num_hidden_layers": v["layers"], "intermediate_size": v["ffn"],
            "max_position_embeddings": v["max_len"], "hidden_dropout_prob": v["dropout"],
            "attention_probs_dropout_prob": v["dropout"], "layer_norm_eps": v["eps"], "hidden_act": "gelu"}


FAMILIES: dict[str, Family] = {
    "gpt2": Family("gpt2_small", "hf-gpt2", _gpt2, _gpt2_config, "GPT2LMHeadModel"),
    "bert": Family("bert_encoder", "hf-bert", _bert, _bert_config, "BertForMaskedLM"),
    "roberta": Family("roberta", "hf-roberta", _roberta, _roberta_config, "RobertaModel",
                      fits=lambda config: "RobertaModel" in (config.get("architectures") or [])),
    "roberta_mlm": Family("roberta_mlm", "hf-roberta-mlm", _roberta, _roberta_config, "RobertaForMaskedLM", "roberta"),
    "llama": Family("llama_style", "hf-llama", _llama, lambda v: _llama_like_config(v) | {
        "attention_bias": v["attn_bias"], "mlp_bias": v["mlp_bias"]}, "LlamaForCausalLM"),
    "mistral": Family("mistral_style", "hf-mistral", _mistral, lambda v: _llama_like_config(v) | {
        "sliding_window": v["window"]}, "MistralForCausalLM"),
    "qwen2": Family("qwen2_style", "hf-qwen2", _qwen2, _llama_like_config, "Qwen2ForCausalLM"),
    "gemma": Family("gemma_style", "hf-gemma", _gemma, _gemma_config, "GemmaForCausalLM"),
    "gpt_neox": Family("gpt_neox_style", "hf-gpt-neox", _gpt_neox, _gpt_neox_config, "GPTNeoXForCausalLM"),
    "t5": Family("t5_encoder_decoder", "hf-t5", _t5, _t5_config, "T5ForConditionalGeneration",
                 fits=lambda config: not str(config.get("feed_forward_proj", "relu")).startswith("gated-")),
    "t5_v1_1": Family("t5_v1_1", "hf-t5-v1.1", _t5_v1_1, _t5_v1_1_config, "T5ForConditionalGeneration", "t5"),
}


def model_type_of(name: str) -> str:
    """The config.json ``model_type`` of the family called ``name``."""
    return FAMILIES[name].model_type or name


def family_of(config: dict[str, Any]) -> Family:
    """The family of a config's ``model_type`` (the first of its layouts that fits the config); an unknown
    model_type is an error listing the known ones."""
    kind = config.get("model_type")
    layouts = [f for name, f in FAMILIES.items() if model_type_of(name) == kind]
    if not layouts:
        known = dict.fromkeys(model_type_of(name) for name in FAMILIES)
        raise HFConfigError(f"config.json has model_type {kind!r}; import-hf knows {', '.join(known)}")
    return next((f for f in layouts if f.fits(config)), layouts[-1])


def read_config(folder: Path) -> dict[str, Any]:
    """``folder/config.json`` as a dict (a clear error when it is missing or not JSON)."""
    path = Path(folder) / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HFConfigError(f"no config.json in '{folder}' (a Hugging Face model folder has one)") from None
    except json.JSONDecodeError as err:
        raise HFConfigError(f"{path}:{err.lineno}:{err.colno}: not JSON: {err.msg}") from None
    if not isinstance(config, dict):
        raise HFConfigError(f"{path}: not a JSON object")
    return config


def _yaml_value(value: Any) -> str:
    """A flow-YAML scalar: floats always with a dot or exponent sign YAML 1.1 and 1.2 both read as float."""
    if isinstance(value, float):
        text = repr(value)
        return text if "." in text or "inf" in text or "nan" in text else text.replace("e", ".0e", 1)
    return json.dumps(value)


def spec_text(config: dict[str, Any], origin: str) -> tuple[str, Family]:
    """The family's zoo spec with its ``vars:`` block replaced by the config's values, and the family.

    ``origin`` (the folder or Hub id) goes into a header comment saying where the sizes came from."""
    import yaml

    family = family_of(config)
    values = family.vars(Config(config))
    text = find_spec(family.spec).text
    own = yaml.safe_load(text)["vars"]
    assert set(values) <= set(own), f"specs/{family.spec}.yaml lacks vars {sorted(set(values) - set(own))}"
    block = "vars: {" + ", ".join(f"{k}: {_yaml_value(v)}" for k, v in (own | values).items()) + "}\n"
    text, n = re.subn(r"^vars:.*?(?=^\S)", lambda _: block, text, count=1, flags=re.M | re.S)
    assert n == 1, f"specs/{family.spec}.yaml has no vars: block"
    # the zoo spec's expect: holds its published sizes' counts, which the config's sizes do not share
    text = re.sub(r"^expect:.*?(?=^\S|\Z)", "", text, count=1, flags=re.M | re.S)
    header = (f"# Generated by `nngraph import-hf` from {origin} (model_type {config['model_type']}): "
              f"specs/{family.spec}.yaml with every var from its config.json.\n")
    return header + text, family
