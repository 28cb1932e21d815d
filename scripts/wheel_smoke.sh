#!/usr/bin/env bash
# The wheel as a user gets it: build it, install it into fresh venvs (the light core, then [all]), and use it from a
# folder outside the repository that holds a user's own cli.py and compilers/ (they must not take over nngraph).
# Prints each environment's size and validate's time. Usage: bash scripts/wheel_smoke.sh [WORKDIR]
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
WORK=${1:-$(mktemp -d)}
PY=${PYTHON:-python3}
mkdir -p "$WORK"
cd "$WORK"
say() { printf '== %s\n' "$*"; }

say "build the wheel"
# from a copy without the checkout's build/ folder: setuptools copies new files into build/lib but never deletes
# the ones a change removed, so a wheel built in place can ship a deleted module (a stale pass rule did)
mkdir -p src
tar -C "$REPO" --exclude=./.git --exclude=./.venv --exclude=./build --exclude=./out --exclude='*.egg-info' \
    --exclude=__pycache__ -cf - . | tar -C src -xf -
"$PY" -m pip wheel -qq --no-deps --no-build-isolation -w dist ./src >/dev/null
WHEEL=$(ls dist/nngraph-*.whl)
"$PY" - "$WHEEL" <<'PY'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
tops = sorted({n.split("/")[0] for n in names})
assert all(t == "nngraph" or t.startswith("nngraph-") for t in tops), f"top-level entries besides nngraph: {tops}"
for must in ("nngraph/py.typed", "nngraph/compilers/targets/profiles.json", "nngraph/specs/mlp.yaml",
             "nngraph/compilers/train/data/bundled/shakespeare.txt", "nngraph/compilers/train/data/bundled/digits.csv.gz",
             "nngraph/library/transformer.yaml", "nngraph/view_assets/cytoscape.min.js",
             "nngraph/view_assets/cytoscape-dagre.min.js", "nngraph/view_assets/view.html",
             "nngraph/view_assets/LICENSE"):
    assert must in names, f"{must} is not in the wheel"
assert any(n.endswith("/licenses/LICENSE") for n in names), "no LICENSE in the wheel's metadata"
print(f"wheel: {len(names)} files, top level: {tops}")
PY

# a user's project folder with generic names of its own
mkdir -p user/compilers
echo 'raise SystemExit("the user cli.py ran instead of nngraph")' > user/cli.py
echo 'raise ImportError("the user compilers/ was imported instead of nngraph.compilers")' > user/compilers/__init__.py
cd user

say "core install (the front end only)"
# venvs without pip/setuptools (27 MB of scaffolding nngraph does not need): the outer pip installs into them
"$PY" -m venv --without-pip ../core
"$PY" -m pip --python ../core/bin/python install -qq -c "$REPO/requirements.lock" "../$WHEEL"
CORE_MB=$(du -sm ../core | cut -f1)
../core/bin/nngraph --version
../core/bin/nngraph zoo copy gpt_char >/dev/null
../core/bin/python -m nngraph validate gpt_char.yaml
VALIDATE_S=$(../core/bin/python -c "
import subprocess, time
t = time.perf_counter(); subprocess.run(['../core/bin/nngraph', 'validate', '-q', 'gpt_char.yaml'], check=True)
print(f'{time.perf_counter() - t:.2f}')")
../core/bin/nngraph schema -o schema.json >/dev/null
../core/bin/nngraph inspect gpt_char.yaml | tail -n 1
../core/bin/nngraph graph gpt_char.yaml -o g.mmd >/dev/null
# nngraph view inlines the JS it reads from the installed package's data (importlib.resources), not the repository's
../core/bin/nngraph view gpt_char.yaml -o view.html
../core/bin/python - "$REPO" <<'PY'
import sys
from importlib import resources
from pathlib import Path

import nngraph

assets = Path(str(resources.files("nngraph").joinpath("view_assets")))
assert Path("../core").resolve() in assets.resolve().parents, f"view assets read from {assets}, not the install"
assert Path(sys.argv[1]).resolve() not in Path(nngraph.__file__).resolve().parents, nngraph.__file__
page = Path("view.html").read_text(encoding="utf-8")
for name in ("cytoscape.min.js", "cytoscape-dagre.min.js"):
    head = (assets / name).read_text(encoding="utf-8")[:2000]
    assert head in page, f"{name} is not inlined in the page"
assert "The Cytoscape Consortium" in (assets / "LICENSE").read_text(encoding="utf-8")
assert "Chris Pettitt" in (assets / "LICENSE").read_text(encoding="utf-8")
print(f"view: {len(page) // 1024} KiB page from {assets}")
PY
if ../core/bin/nngraph compile gpt_char.yaml 2>err.txt; then echo "compile ran without torch?"; exit 1; fi
grep -q "pip install 'nngraph\[torch\]'" err.txt || { cat err.txt; echo "no extra advice"; exit 1; }
! grep -q Traceback err.txt || { cat err.txt; exit 1; }
echo "compile without torch: $(cat err.txt)"

say "full install ([all])"
"$PY" -m venv --without-pip ../full
"$PY" -m pip --python ../full/bin/python install -qq -c "$REPO/requirements.lock" "../$WHEEL[all]"
FULL_MB=$(du -sm ../full | cut -f1)
NN=../full/bin/nngraph
$NN compile gpt_char.yaml --target cpu --explain --set layers=1 | tail -n 4
$NN train gpt_char.yaml --data shakespeare --set vocab=61 --set layers=1 --steps 3 --out run -q
$NN export gpt_char.yaml --set vocab=61 --set layers=1 --weights run -o gpt.onnx | tail -n 2
../full/bin/python -c "import numpy as np; np.save('tokens.npy', np.array([[1, 2, 3, 4]], dtype=np.int64))"
$NN infer gpt.onnx -i tokens=tokens.npy -o out.npz | tail -n 2
../full/bin/python -c "import numpy as np; d = np.load('out.npz'); print('infer outputs:', {k: v.shape for k, v in d.items()})"

say "sizes"
printf 'core environment: %s MB\nfull environment: %s MB\nvalidate (core, one spec, wall): %s s\n' "$CORE_MB" "$FULL_MB" "$VALIDATE_S"
echo "wheel smoke test passed"
