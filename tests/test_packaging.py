"""A non-editable `pip install .` ships every package: pyproject lists its packages by
hand (the `beamish` namespace is built from three top-level folders), so a new folder
with an __init__.py must be added there, and this test says which one was forgotten.
`make check-install` (run by CI) then installs for real and imports every module."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _declared() -> tuple[dict[str, str], set[str]]:
    with open(REPO / "pyproject.toml", "rb") as fh:
        setuptools = tomllib.load(fh)["tool"]["setuptools"]
    return setuptools["package-dir"], set(setuptools["packages"])


def test_every_package_folder_is_in_pyproject():
    package_dir, packages = _declared()
    on_disk = set()
    for dotted, folder in package_dir.items():
        for init in (REPO / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO / folder)
            on_disk.add(".".join([dotted, *rel.parts]))
    missing = sorted(on_disk - packages)
    assert not missing, f"add to [tool.setuptools] packages in pyproject.toml: {missing}"
    assert not sorted(packages - on_disk), "pyproject lists packages that are not folders"
