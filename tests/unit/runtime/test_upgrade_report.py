"""UpgradeReport: its wire form reads back the same, and the CLI's lines say what moved,
what failed and why, and what was left."""

from __future__ import annotations

from beamish.runtime import UpgradeFailed, UpgradeImportError, UpgradeReport
from beamish.runtime._upgrades import AgentMoved, AgentNotMoved, AgentSkipped, ImportFailure
from beamish.runtime.errors import error_from_wire

REPORT = UpgradeReport(("app",), (AgentMoved("a", "root", 1, 2),),
                       (AgentNotMoved("b", "workers", "ValueError: no", True),),
                       (AgentSkipped("c", "not moved: the upgrade stopped at agent 'b'"),))


def test_the_wire_form_reads_back_the_same():
    assert UpgradeReport.from_wire(REPORT.to_wire()) == REPORT
    empty = UpgradeReport()
    assert UpgradeReport.from_wire(empty.to_wire()) == empty and empty.ok


def test_the_lines_say_what_moved_failed_and_was_skipped():
    assert REPORT.lines() == [
        "moved    a (root) version 1 -> 2",
        "FAILED   b (workers): ValueError: no; back on its old code, state untouched",
        "skipped  c: not moved: the upgrade stopped at agent 'b'",
        "upgrade stopped: 1 moved, 1 failed, 1 skipped"]
    assert not REPORT.ok


def test_the_errors_name_the_agent_or_the_module():
    failed = UpgradeFailed(REPORT)
    assert "agent 'b': ValueError: no" in str(failed) and failed.report is REPORT
    imp = UpgradeImportError(UpgradeReport(import_failures=(
        ImportFailure("app.agents", "SyntaxError: invalid syntax (agents.py, line 3)"),)))
    assert (imp.module, imp.error) == ("app.agents",
                                      "SyntaxError: invalid syntax (agents.py, line 3)")
    assert str(imp).startswith("module 'app.agents' fails to import: SyntaxError")
    assert isinstance(imp, UpgradeFailed)
    # Sent as an error reply, it comes back with its type and plain attributes.
    back = error_from_wire({"type": "UpgradeImportError", "message": str(imp),
                            "attrs": {"module": imp.module, "error": imp.error}})
    assert isinstance(back, UpgradeImportError) and back.module == "app.agents"
