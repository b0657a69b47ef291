"""The upgrade's import check (node/upgrade.py): how its answer is read (a table, pure),
and the check itself in a real fresh interpreter, whatever the modules print."""

from __future__ import annotations

import pytest

from beamish.runtime._upgrades import ImportFailure
from beamish.runtime.node.upgrade import check_imports, read_check_answer


@pytest.mark.parametrize(("raw", "answer"), [
    (b"[]", []),
    (b'[["m", "ImportError: no"]]', [("m", "ImportError: no")]),
    (b'[["m:A", "AttributeError: x"], ["n", "E: y"]]', [("m:A", "AttributeError: x"),
                                                        ("n", "E: y")]),
    (b"", None),                          # it ended before answering
    (b'[["m", "ImportError: no"]', None),  # cut short
    (b"chatty: goodbye", None),           # not an answer
    (b'{"m": "x"}', None),                # not a list
    (b'[["m"]]', None),                   # not pairs
    (b'[["m", 1]]', None),                # not strings
    (b"\xff\xfe", None),                  # not text
])
def test_the_check_answer_is_a_whole_list_of_pairs_of_strings_or_none(raw, answer):
    assert read_check_answer(raw) == answer


CHATTY = """\
import atexit, sys, threading
print("chatty: importing")
atexit.register(print, "chatty: goodbye")
threading.Thread(target=lambda: print("chatty: from a thread at exit")).start()
{tail}
class A:
    pass
"""


@pytest.mark.parametrize(("tail", "failures"), [
    ("", []),
    ("raise RuntimeError('no config')",
     [ImportFailure("chatty_mod", "RuntimeError: no config")]),
])
def test_what_a_module_prints_at_import_or_exit_does_not_reach_the_answer(
        tmp_path, tail, failures):
    (tmp_path / "chatty_mod.py").write_text(CHATTY.format(tail=tail))
    assert check_imports([str(tmp_path)], ["chatty_mod:A"]) == failures


def test_a_check_that_ends_before_answering_is_one_failure_naming_every_module(tmp_path):
    (tmp_path / "quits.py").write_text("import os\nos._exit(3)\n")
    assert check_imports([str(tmp_path)], ["quits", "other"]) == [ImportFailure(
        "quits, other", "importing them ended the process (exit code 3)")]
