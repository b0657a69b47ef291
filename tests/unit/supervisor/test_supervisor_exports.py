"""The package is a stdlib-only leaf, and its public surface is what __init__ re-exports
(in the spirit of trio's test_exports.py)."""

from __future__ import annotations

import inspect
import subprocess
import sys

import beamish.supervisor as supervisor
import beamish.supervisor.testing as testing


def test_imports_without_zmq_lmdb_or_the_runtime() -> None:
    code = (
        "import sys\n"
        "for name in ('zmq', 'lmdb', 'psutil', 'msgpack', 'pydantic', 'beamish.runtime', 'beamish.mailbox'):\n"
        "    sys.modules[name] = None\n"
        "import beamish.supervisor, beamish.supervisor.testing\n"
        "import os\n"
        "assert not any(m.startswith(('beamish.runtime', 'beamish.mailbox')) and sys.modules[m] is not None\n"
        "               for m in sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)


def test_all_names_exist_and_are_documented() -> None:
    for module in (supervisor, testing):
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                assert obj.__doc__, f"{module.__name__}.{name} has no docstring"
                for attr, member in vars(obj).items():
                    if not attr.startswith("_") and (inspect.isfunction(member) or isinstance(member, property)):
                        assert member.__doc__, f"{module.__name__}.{name}.{attr} has no docstring"


def test_public_classes_live_in_private_modules() -> None:
    for name in supervisor.__all__:
        obj = getattr(supervisor, name)
        module = getattr(obj, "__module__", "") or ""
        if inspect.isclass(obj) and module.startswith("beamish.supervisor"):
            assert module.split(".")[-1].startswith("_"), f"{name} is defined in public module {module}"


def test_no_private_module_is_reexported_by_accident() -> None:
    assert sorted(supervisor.__all__) == sorted(set(supervisor.__all__))
    public = {n for n in dir(supervisor) if not n.startswith("_")}
    assert public - set(supervisor.__all__) <= {"testing"}
