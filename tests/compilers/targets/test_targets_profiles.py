"""Targets as data: profiles.json parses, every condition a profile states is one the lowering pass
reads, target strings (capability, dtype) and auto-detection (simulated GPU), torch features by version,
and a new device added as a profile alone (no code) lowers attention."""

from __future__ import annotations

import copy

import pytest

from nngraph.compilers import targets
from nngraph.compilers.targets import Detection, TargetError, get_target, load_profiles, torch_features

#: every condition key the lowering rules read (compilers/passes/lowering.py: unmet)
CONDITIONS = {"backend", "dtypes", "min_capability", "max_head_dim", "head_dim_multiple", "causal", "mask", "bias",
              "backward", "dropout", "gqa", "feature", "bias_grad"}
KERNEL_KEYS = CONDITIONS | {"backends", "cost", "block", "compile_s", "lse"}


def test_every_profile_names_its_runtime_and_device_and_uses_only_known_conditions():
    data = load_profiles()
    assert {"cpu", "cuda", "ort-cpu", "ort-cuda"} <= set(data["profiles"])
    for name, prof in data["profiles"].items():
        assert prof["runtime"] in ("torch", "onnxruntime") and prof["device"] in ("cpu", "cuda"), name
        for kernel in ("sdpa", "flex"):
            entry = prof.get(kernel)
            if entry is None:
                continue
            assert set(entry) <= KERNEL_KEYS, (name, kernel, set(entry) - KERNEL_KEYS)
            for backend, cond in entry.get("backends", {}).items():
                assert set(cond) <= CONDITIONS, (name, backend, set(cond) - CONDITIONS)
                assert cond.get("feature") is None or cond["feature"] in data["features"]


@pytest.mark.parametrize("text, profile, cap, dtype", [
    ("cpu", "cpu", None, "float32"),
    ("cpu:bf16", "cpu", None, "bfloat16"),
    ("cuda:sm90:bf16", "cuda", (9, 0), "bfloat16"),
    ("cuda:sm_86:fp16", "cuda", (8, 6), "float16"),
    ("cuda:7.5", "cuda", (7, 5), None),
    ("ort-cpu", "ort-cpu", None, "float32"),
    ("ort-cuda:fp16", "ort-cuda", (8, 0), "float16"),
])
def test_target_strings_give_profile_capability_and_dtype(text, profile, cap, dtype):
    t = get_target(text)
    assert (t.profile, t.capability, t.dtype) == (profile, cap, dtype)
    assert t.runtime == load_profiles()["profiles"][profile]["runtime"]


def test_a_cuda_target_on_this_cpu_machine_is_marked_simulated():
    no_gpu = Detection("2.13.0", False, None, None, False, ("CPUExecutionProvider",))
    t = get_target("cuda:sm80", no_gpu)
    assert t.simulated and "simulated" in t.describe()
    assert not get_target("cpu", no_gpu).simulated


@pytest.mark.parametrize("text, message", [
    ("cdua", "unknown target 'cdua'; did you mean 'cuda'?"),
    ("cpu:sm80", "a compute capability applies to cuda targets only"),
    ("cuda:fast", "unknown option 'fast'"),
])
def test_bad_target_strings_say_what_to_write(text, message):
    with pytest.raises(TargetError, match=message):
        get_target(text)


def test_auto_detects_the_gpu_and_its_capability(monkeypatch):
    h100 = Detection("2.13.0", True, (9, 0), "NVIDIA H100", True, ("CUDAExecutionProvider", "CPUExecutionProvider"))
    monkeypatch.setattr(targets, "detect", lambda: h100)
    t = get_target("auto")
    assert (t.profile, t.capability, t.simulated) == ("cuda", (9, 0), False)
    assert "NVIDIA H100" in t.describe()
    # a bare "cuda" on a GPU machine means that GPU; an explicit capability wins
    assert get_target("cuda").capability == (9, 0)
    assert get_target("cuda:sm80").capability == (8, 0)


def test_auto_is_the_cpu_profile_without_a_gpu(monkeypatch):
    monkeypatch.setattr(targets, "detect", lambda: Detection("2.13.0", False, None, None, False, ()))
    assert get_target("auto").profile == "cpu"


def test_ort_targets_note_a_missing_execution_provider():
    cpu_only = Detection("2.13.0", False, None, None, False, ("CPUExecutionProvider",))
    t = get_target("ort-cuda", cpu_only)
    assert "CUDAExecutionProvider is not available" in t.describe()
    assert not get_target("ort-cpu", cpu_only).simulated


def test_torch_features_follow_the_version():
    assert "flex_attention" not in torch_features("2.4.1") and "sdpa" in torch_features("2.4.1")
    assert {"flex_attention", "sdpa_gqa", "cudnn_attention"} <= torch_features("2.5.0")
    assert torch_features("1.13.0") == frozenset()
    assert {"sdpa", "sdpa_kernel", "flex_attention"} <= get_target("cpu").features  # probed on this torch


def test_a_new_device_is_a_new_profile_not_new_code(monkeypatch, spec_file):
    """An 'npu' profile (flash-like kernel for bf16 only, no flex) added as data is selected by the same rules."""
    from nngraph.compilers.passes.lowering import decide
    from nngraph import load_spec

    data = copy.deepcopy(load_profiles())
    data["profiles"]["npu"] = {
        "doc": "an imaginary accelerator", "runtime": "torch", "device": "cpu", "dtype": "bfloat16",
        "reference": {"cost": {"ns_per_unit": 1.0}},
        "sdpa": {"feature": "sdpa", "backends": {
            "fused": {"backend": "FLASH_ATTENTION", "dtypes": ["bfloat16"], "causal": True, "mask": False, "bias": False},
            "math": {"backend": "MATH"}},
            "cost": {"causal": {"ns_per_unit": 0.1}, "none": {"ns_per_unit": 0.1}}},
    }
    monkeypatch.setattr(targets, "load_profiles", lambda path=None: data)
    graph = load_spec(spec_file("""
        nngraph: 1
        name: t
        inputs: {x: {shape: [batch, seq, 32], dtype: float32}}
        graph:
          - {name: causal, op: attention, in: x, heads: 4, mask: causal}
          - {name: window, op: attention, in: causal, heads: 4, mask: {type: sliding_window, window: 8}}
        outputs: [window]
    """))
    npu = get_target("npu")
    d = decide(graph, graph.nodes["causal"], npu)
    assert d.kernel == "sdpa" and d.tiers[0]["backends"] == ["FLASH_ATTENTION", "MATH"]
    w = decide(graph, graph.nodes["window"], npu)
    sdpa = next(c for c in w.candidates if c.kernel == "sdpa")
    assert w.kernel == "reference"
    assert sdpa.reason.startswith("only the math backend fits (fused: takes no mask tensor")
    assert "profile npu has no flex" in next(c.reason for c in w.candidates if c.kernel == "flex")
    fp32 = decide(graph, graph.nodes["causal"], get_target("npu:fp32"))
    assert fp32.kernel == "reference" and "computes in bfloat16, not float32" in \
        next(c.reason for c in fp32.candidates if c.kernel == "sdpa")
