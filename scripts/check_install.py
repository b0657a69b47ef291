"""Import every module of an installed beamish, from outside the checkout.

`make check-install` runs this in a fresh venv after a non-editable `pip install .`: a
package missing from pyproject's list shows up here as a ModuleNotFoundError naming a
`beamish.` module. Only the optional extras (psycopg for the cluster, matplotlib for the
benchmark charts, rich for the CLI's colours, the peers) may be absent; the target then
installs the cluster extra and runs this again with `--require psycopg`."""

from __future__ import annotations

import importlib
import pkgutil
import sys

OPTIONAL = {"psycopg", "psycopg_binary", "matplotlib", "rich", "thespian", "pykka", "ray"}


def main(argv: list[str]) -> int:
    """Import everything; `--require NAME` makes NAME's absence an error (after an extra)."""
    required = {argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--require"}
    imported, skipped, broken = 0, [], []
    for top in ("beamish.runtime", "beamish.supervisor", "beamish.mailbox",
                "beamish.benchmarks"):
        package = importlib.import_module(top)
        if "site-packages" not in (package.__file__ or ""):
            broken.append(f"{top} imported from {package.__file__}, not the install")
        for info in pkgutil.walk_packages(package.__path__, top + "."):
            if info.name.endswith(".__main__"):
                continue  # importing it would run the command line
            try:
                importlib.import_module(info.name)
                imported += 1
            except ModuleNotFoundError as exc:
                root = (exc.name or "").split(".")[0]
                if root in OPTIONAL - required:
                    skipped.append(f"{info.name} (needs {root})")
                else:
                    broken.append(f"{info.name}: {exc}")
    for line in skipped:
        print("skipped, optional extra not installed:", line)
    for line in broken:
        print("BROKEN:", line, file=sys.stderr)
    print(f"non-editable install: {imported} modules imported, {len(skipped)} skipped")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
