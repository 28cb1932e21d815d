"""Where the repository's folders go in the installed package (everything lives under ``nngraph``).

==================  ==========================  =========================================
repository          installed as                what
==================  ==========================  =========================================
``nngraph/``        ``nngraph``                 the torch-free front end and the CLI
``compilers/``      ``nngraph.compilers``       the back ends (torch, onnx, passes, train)
``specs/``          ``nngraph/specs/`` (data)     the model zoo (``nngraph zoo list|copy``)
==================  ==========================  =========================================

Everything else (metadata, extras) is in pyproject.toml.
"""

from setuptools import find_namespace_packages, setup

SKIP = ["*__pycache__*"]


def packages_under(folder: str, name: str) -> list[str]:
    """Every folder under ``folder`` (data folders too) as a package named under ``name``."""
    found = find_namespace_packages(folder, exclude=SKIP)
    return [name, *(f"{name}.{p}" for p in found)]


setup(
    packages=[*packages_under("nngraph", "nngraph"), *packages_under("compilers", "nngraph.compilers"),
              *packages_under("specs", "nngraph.specs")],
    package_dir={"nngraph": "nngraph", "nngraph.compilers": "compilers", "nngraph.specs": "specs"},
    package_data={
        "nngraph": ["py.typed"],
        "nngraph.view_assets": ["*.js", "*.html", "LICENSE"],
        "nngraph.library": ["*.yaml"],
        "nngraph.compilers.targets": ["profiles.json"],
        "nngraph.compilers.train.data.bundled": ["*.txt", "*.gz", "*.md"],
        "nngraph.specs": ["*.yaml"],
        "nngraph.specs.seeds": ["*.yaml"],
    },
)
