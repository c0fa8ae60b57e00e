"""The catalogue of host models (``models/hosts/*.yaml``) and guest flavours (``models/flavours.yaml``), each file
read once per version (path, size, modification time): host models through the scenario loader (so a catalogue
model is checked exactly as a scenario's include), flavours as scenario-v1 guest keys. Used by
``planner.analysis.variants`` (what-if studies), the fleet generator and the CLI's sizing commands."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import yaml

from planner.model.scenario import HostModel

REPO = Path(__file__).resolve().parents[2]
MODELS_DIR = REPO / "models" / "hosts"
FLAVOURS_FILE = REPO / "models" / "flavours.yaml"

_CATALOGUE: dict[tuple, Any] = {}  # (what, path, mtime_ns, size) -> what was read (one read per file version)


def _file_version(path: Path) -> tuple[str, int, int]:
    info = path.stat()
    return str(path.resolve()), info.st_mtime_ns, info.st_size


def read_flavours(path: str | os.PathLike | None = None) -> dict[str, dict[str, Any]]:
    """The flavour catalogue (default ``models/flavours.yaml``): flavour name -> scenario-v1 guest keys (all but
    ``name``), in file order. ``{"name": NAME, **flavour}`` is a guest item of a scenario file. The file is read
    once per version (size and modification time); each call returns a fresh copy."""
    file = Path(path or FLAVOURS_FILE)
    key = ("flavours", *_file_version(file))
    if key not in _CATALOGUE:
        from planner.files.safeio import read_input_text

        _CATALOGUE[key] = _flavours(file, yaml.safe_load(read_input_text(str(file), 1 << 20)))
    return copy.deepcopy(_CATALOGUE[key])


def _flavours(file: Path, data: object) -> dict[str, dict[str, Any]]:
    """The ``flavours:`` mapping of the catalogue, each flavour's keys judged as a scenario guest's
    (``planner.io.schema.GuestSpec``, ``name`` aside). Raises ``ValueError`` naming the file, the key and the
    flavour: ``models/flavours.yaml: flavours.small.vcpu: unknown key ...``."""
    from planner.io.schema import GuestSpec, check_mapping

    flavours = data.get("flavours") if isinstance(data, dict) else None
    if not isinstance(flavours, dict):
        raise ValueError(f"{file}: flavours: expected a mapping of flavour name -> guest keys")
    problems = []
    for name, spec in flavours.items():
        if isinstance(spec, dict) and "name" in spec:
            problems.append(f"{file}: flavours.{name}.name: a flavour has no name key (the guest is named apart)")
            continue
        result = check_mapping(GuestSpec, spec, required=())
        problems += [f"{file}: flavours.{'.'.join(map(str, (name, *loc)))}: {message}"
                     for loc, message in result.problems]
    if problems:
        raise ValueError("\n".join(problems))
    return {str(name): dict(spec) for name, spec in flavours.items()}


def available_models() -> list[str]:
    """Names of the catalogue's host models (file stems of ``models/hosts/*.yaml``), sorted."""
    return sorted(p.stem for p in MODELS_DIR.glob("*.yaml"))


def catalogue_model(name: str, *, model_name: str | None = None) -> HostModel:
    """The host model ``models/hosts/NAME.yaml``, read and checked by the scenario loader. ``model_name`` names it
    (default: NAME)."""
    from planner.io.loader import load_scenario_text

    path = MODELS_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(f"unknown host model '{name}' (catalogue: {', '.join(available_models())})")
    key = model_name or name
    version = ("model", key, *_file_version(path))
    if version not in _CATALOGUE:  # read and checked once per file version (a HostModel is frozen: shared)
        text = (f"version: 1\nname: catalogue\nhost_models:\n  {key}: {{include: {str(path)!r}}}\n"
                f"hosts: [{{name: probe, model: {key}}}]\nguests: []\n")
        _CATALOGUE[version] = load_scenario_text(text, filename=f"<catalogue {name}>",
                                                 base_dir=str(MODELS_DIR)).host_models[key]
    return _CATALOGUE[version]
