"""Hardware targets: profiles as data (``profiles.json``), target strings, and detection (``auto``).

A :class:`Target` is one profile of ``profiles.json`` made concrete: the runtime (``torch`` or
``onnxruntime``), device, CUDA compute capability, compute dtype, ONNX Runtime providers and the
torch features present. The lowering pass (:mod:`nngraph.compilers.passes`) reads the kernels a target
offers and their conditions from ``target.data`` — it has no per-device branches, so a new device
is a new profile entry.

Target strings (``nngraph compile --target T``)::

    cpu                  PyTorch on the CPU (profile default dtype: float32)
    cpu:bf16             ... computing in bfloat16
    cuda                 PyTorch on a GPU; capability sm80 unless given, dtype = the graph's
    cuda:sm90:bf16       capability 9.0, bfloat16     (also cuda:sm_86, cuda:8.6, cuda:fp16)
    ort-cpu, ort-cuda    ONNX Runtime with the CPU / CUDA execution provider
    auto                 detect: cuda (with the device's capability) if torch sees a GPU, else cpu

    FILE.json            a profile file written by ``nngraph calibrate -o FILE.json``: its base profile
                         (cpu) with the roofline measured on this machine

Simulated targets (``cuda:sm80`` on a machine without a GPU) are fine for *selection* and
``--explain``; their kernels run only where the device exists.
"""

from __future__ import annotations

import functools
import importlib
import json
import re
from importlib import resources
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .profile_file import is_profile_file, load_profile_file

PROFILES_FILE = resources.files(__package__) / "profiles.json"  # package data: found in a wheel too

_DTYPE_ALIASES = {"fp32": "float32", "float32": "float32", "f32": "float32", "fp16": "float16", "float16": "float16",
                  "half": "float16", "f16": "float16", "bf16": "bfloat16", "bfloat16": "bfloat16",
                  "fp64": "float64", "float64": "float64", "double": "float64"}
MODES = ("inference", "training")


class TargetError(ValueError):
    """A target string or profile that cannot be used (the message says what to write instead)."""


@functools.lru_cache(maxsize=1)
def load_profiles(path: str | None = None) -> dict[str, Any]:
    """The parsed ``profiles.json`` (features, kernels, profiles)."""
    data = json.loads((Path(path) if path else PROFILES_FILE).read_text(encoding="utf-8"))
    for key in ("features", "kernels", "profiles"):
        if not isinstance(data.get(key), dict):
            raise TargetError(f"{path or PROFILES_FILE}: '{key}' must be a mapping")
    for name, prof in data["profiles"].items():
        if prof.get("runtime") not in ("torch", "onnxruntime"):
            raise TargetError(f"profile '{name}': runtime must be torch or onnxruntime, got {prof.get('runtime')!r}")
    return data


def profile_names() -> list[str]:
    """Every profile name (what ``--target`` accepts, besides ``auto``)."""
    return list(load_profiles()["profiles"])


# ----- torch features --------------------------------------------------------
def version_tuple(version: str) -> tuple[int, ...]:
    """``"2.13.0+cpu"`` -> ``(2, 13, 0)``."""
    parts = re.findall(r"\d+", version.split("+")[0])
    return tuple(int(p) for p in parts[:3])


def _probe(path: str) -> bool:
    module, _, attrs = path.partition(":")
    try:
        obj: Any = importlib.import_module(module)
    except ImportError:
        return False
    for attr in filter(None, attrs.split(".")):
        if not hasattr(obj, attr):
            return False
        obj = getattr(obj, attr)
    return True


@functools.lru_cache(maxsize=None)
def torch_features(torch_version: str | None = None) -> frozenset[str]:
    """Features of the running torch (or of ``torch_version``, from versions alone, for simulation)."""
    feats = load_profiles()["features"]
    if torch_version is None:
        try:
            import torch
        except ImportError:
            return frozenset()
        torch_version = torch.__version__
        probe = True
    else:
        probe = False
    have = version_tuple(torch_version)
    out = set()
    for name, spec in feats.items():
        if have < version_tuple(spec.get("min_torch", "0")):
            continue
        if probe and spec.get("probe") and not _probe(spec["probe"]):
            continue
        out.add(name)
    return frozenset(out)


# ----- the target ------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    """A concrete target: a profile plus capability, dtype, providers and torch features."""

    name: str                                  # as written (normalized), e.g. "cuda:sm90:bf16"
    profile: str                               # key in profiles.json
    runtime: str                               # "torch" | "onnxruntime"
    device: str                                # "cpu" | "cuda"
    capability: tuple[int, int] | None = None
    dtype: str | None = None                   # compute dtype; None = the graph's own dtype
    providers: tuple[str, ...] = ()
    features: frozenset[str] = frozenset()
    torch_version: str | None = None
    simulated: bool = False                    # the device is not present on this machine
    notes: tuple[str, ...] = ()
    data: dict[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)

    def kernel(self, name: str) -> dict[str, Any] | None:
        """The profile's data for kernel ``name`` (e.g. ``"sdpa"``, ``"flex"``), or None if the profile lacks it."""
        entry = self.data.get(name)
        return entry if isinstance(entry, dict) else None

    def has(self, feature: str | None) -> bool:
        """Whether the torch feature is present (None: no feature needed)."""
        return feature is None or feature in self.features

    def expected_calls(self, mode: str) -> int:
        """Calls over which a one-time compile cost is amortized (profile data, per mode)."""
        return int(self.data.get("expected_calls", {}).get(mode, 100))

    def compute_dtype(self, graph_dtype: str) -> str:
        """The dtype kernels compute in: the target's, else the graph's."""
        return self.dtype or graph_dtype

    def describe(self) -> str:
        """One line: ``cuda (sm90, bfloat16, torch 2.13.0; simulated: no GPU here)``."""
        bits = []
        if self.capability:
            bits.append(f"sm{self.capability[0]}{self.capability[1]}")
        bits.append(self.dtype or "graph dtype")
        if self.providers:
            bits.append("providers " + ", ".join(self.providers))
        if self.torch_version:
            bits.append(f"torch {self.torch_version}")
        text = f"{self.profile} ({', '.join(bits)})"
        notes = list(self.notes) + (["simulated: the device is not present here"] if self.simulated else [])
        return text + ("; " + "; ".join(notes) if notes else "")


def _capability(token: str) -> tuple[int, int] | None:
    m = re.fullmatch(r"(?:sm_?)?(\d)(\d)|(\d+)\.(\d+)", token)
    if not m:
        return None
    a, b = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
    return int(a), int(b)


def _running_torch() -> str | None:
    try:
        import torch
    except ImportError:
        return None
    return torch.__version__


@dataclass(frozen=True)
class Detection:
    """What this machine offers: torch version, CUDA device and capability, ONNX Runtime providers."""

    torch_version: str | None
    cuda: bool
    capability: tuple[int, int] | None
    device_name: str | None
    bf16: bool
    ort_providers: tuple[str, ...]


def detect() -> Detection:
    """Probe the running torch (CUDA device, capability) and onnxruntime (providers)."""
    version, cuda, cap, name, bf16 = _running_torch(), False, None, None, False
    if version is not None:
        import torch

        cuda = bool(torch.cuda.is_available())
        if cuda:
            cap = tuple(torch.cuda.get_device_capability(0))  # type: ignore[assignment]
            name = torch.cuda.get_device_name(0)
            bf16 = bool(torch.cuda.is_bf16_supported())
    try:
        import onnxruntime

        providers = tuple(onnxruntime.get_available_providers())
    except ImportError:
        providers = ()
    return Detection(version, cuda, cap, name, bf16, providers)


def get_target(spec: "str | Target" = "auto", detection: Detection | None = None) -> Target:
    """The :class:`Target` for a target string (see the module doc); raises :class:`TargetError`."""
    if isinstance(spec, Target):
        return spec
    text = str(spec).strip().lower()
    profiles = load_profiles()["profiles"]
    head, *opts = text.split(":")
    det = detection
    notes: list[str] = []
    if is_profile_file(text):  # a calibrated profile file: its base profile with the file's roofline
        head, data = load_profile_file(str(spec).strip(), profiles)
        profiles, opts = {**profiles, head: data}, []
        notes.append(f"roofline from {str(spec).strip()}")
    if head == "auto":
        det = det or detect()
        head = "cuda" if det.cuda else "cpu"
        if det.cuda and not opts:
            opts = [f"sm{det.capability[0]}{det.capability[1]}"] if det.capability else []
        notes.append(f"auto: detected {det.device_name or head}")
    if head not in profiles:
        from nngraph.errors import did_you_mean

        guess = did_you_mean(head, list(profiles) + ["auto"])
        raise TargetError(f"unknown target '{spec}'" + (f"; {guess}" if guess else "") +
                          f" (known: {', '.join(list(profiles) + ['auto'])})")
    prof = profiles[head]
    cap = tuple(prof["capability"]) if prof.get("capability") else None
    dtype = prof.get("dtype")
    cap_given = False
    for opt in opts:
        if opt in _DTYPE_ALIASES:
            dtype = _DTYPE_ALIASES[opt]
        elif _capability(opt) is not None:
            if prof["device"] != "cuda":
                raise TargetError(f"target '{spec}': a compute capability applies to cuda targets only")
            cap, cap_given = _capability(opt), True
        else:
            raise TargetError(f"target '{spec}': unknown option '{opt}' (write a dtype such as fp16, bf16, fp32, "
                              "or a capability such as sm80, sm_90, 8.6)")
    version = _running_torch()
    features = torch_features() if version else frozenset()
    simulated = False
    if prof["device"] == "cuda":
        det = det or detect()
        simulated = not det.cuda
        if det.cuda and det.capability and not cap_given:
            cap = det.capability  # "cuda" without a capability on a GPU machine means this GPU
    providers = tuple(prof.get("providers", ()))
    if prof["runtime"] == "onnxruntime":
        det = det or detect()
        missing = [p for p in providers[:1] if p not in det.ort_providers]
        if missing:
            notes.append(f"{missing[0]} is not available in this onnxruntime")
            simulated = True
    norm = ":".join([head] + ([f"sm{cap[0]}{cap[1]}"] if cap and prof["device"] == "cuda" else []) +
                    ([dtype] if dtype else []))
    return Target(name=norm, profile=head, runtime=prof["runtime"], device=prof["device"], capability=cap, dtype=dtype,
                  providers=providers, features=features, torch_version=version, simulated=simulated,
                  notes=tuple(notes), data=prof)


__all__ = ["Detection", "MODES", "Target", "TargetError", "detect", "get_target", "load_profiles", "profile_names",
           "torch_features", "version_tuple"]
