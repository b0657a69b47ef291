"""The node's control commands, one function each, registered in `COMMANDS`.

Each docstring gives the wire request (a CALL envelope whose payload is
``{"op": ..., **args}``), the value of the ``{"ok": true, "value": ...}`` reply, and the
CLI form. Errors come back as ``{"ok": false, "error": {"type", "message", "attrs"}}`` and
are raised again, with their type, by the client.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import psutil

from beamish.supervisor import (ChildKind, ChildSpec, InvalidSpec, RestartType, StartFailed,
                                SupervisorError, SupervisorSpec)

from ._messenger import LIVE_STATUSES
from ._spawnargs import check_shutdown, class_path
from ._store import Txn
from .errors import AgentNotFound, ConfigError, SpawnError

if TYPE_CHECKING:
    from ._node import NodeDaemon


def _child_spec(rec: dict[str, Any]) -> ChildSpec:
    return ChildSpec(rec["name"], ChildKind.AGENT, RestartType(rec["restart"]), rec["shutdown"])


def _add_agent(shell: Any, rec: dict[str, Any]) -> Any:
    """Add an agent to its supervisor: by name for a simple_one_for_one supervisor (its
    children are made from its template), else with the agent's own spec."""
    if shell.spec.strategy == "simple_one_for_one":
        return shell.add_child(rec["name"])
    return shell.add_child(_child_spec(rec))


def ping(node: NodeDaemon) -> dict[str, Any]:
    """``{"op": "ping"}`` -> ``{"pid", "dir", "durability", "uptime"}``. CLI: ``beamish node status``."""
    return {"pid": os.getpid(), "dir": node.paths.dir, "durability": node.durability,
            "uptime": time.time() - node.started_at, "dropped_frames": node.control.dropped
            + node.reports.dropped + node.zygote.dropped, "strict": node.config.node.strict}


def spawn(node: NodeDaemon, cls: str, args: dict[str, Any], name: str | None,
          supervisor: str = "root", restart: str = "permanent", shutdown: Any = 5.0,
          limits: dict[str, Any] | None = None, timeout: float = 30.0) -> dict[str, Any]:
    """``{"op": "spawn", "cls", "args", "name", "supervisor", "restart", "shutdown", "limits"}``
    -> ``{"name", "pid"}`` once the agent's ``init`` ran (or its committed state was loaded).

    A name in use by a live agent is refused; the name of a stopped agent resumes it
    (same state and mailbox). CLI: ``beamish spawn MODULE:CLASS --name N --args JSON``.
    """
    cls = class_path(cls)
    shutdown = check_shutdown(shutdown)
    if restart not in ("permanent", "transient", "temporary"):
        raise ConfigError(f"restart={restart!r}: expected permanent, transient or temporary")
    shell = node.shell(supervisor)
    if shell is None:
        raise SpawnError(name or cls, f"no supervisor named {supervisor!r} (add it with "
                                      "node.add_supervisor first)")
    template = shell.spec.template
    if template is not None:  # simple_one_for_one: every child is made from the template
        restart, shutdown = str(template.restart), template.shutdown
    fresh = False

    def reserve(t: Txn) -> dict[str, Any]:
        nonlocal fresh
        agent_name = name
        rec = t.get_agent(agent_name) if agent_name else None
        if rec is not None and rec["status"] in LIVE_STATUSES | {"failed"}:
            raise SpawnError(agent_name or "", f"the name is in use by a {rec['status']} agent "
                             f"(pid {rec.get('pid')}); pick another name or stop it first")
        if rec is None:
            fresh = True
            agent_id = t.next_counter("agent_id")
            if not agent_name:
                agent_name = f"{cls.rpartition(':')[2].lower()}-{agent_id}"
            rec = {"name": agent_name, "id": agent_id, "incarnation": 0, "restarts": 0,
                   "created": time.time(), "last_failure": None}
        rec.update(cls=cls, args=args, supervisor=supervisor, restart=restart,
                   shutdown=shutdown, limits=limits or {}, status="starting", pid=None,
                   order=t.next_counter("order"), fresh=True)
        t.put_agent(rec)
        return rec
    rec = node.store.write(reserve)
    agent_name = rec["name"]
    node.spawner.next_failure.pop(agent_name, None)
    try:
        _add_agent(shell, rec)
    except (StartFailed, SupervisorError) as exc:
        failure = node.spawner.start_failures.pop(agent_name, None)
        if fresh:
            node.store.write(lambda t: (t.erase_agent_data(rec["id"]), t.delete_agent(agent_name)))
        else:
            node.set_status(agent_name, "stopped")
        detail = (f"{failure.exc_type}: {failure.message}" if failure.exc_type
                  else failure.message) if failure else str(exc)
        raise SpawnError(agent_name, f"it did not start ({detail})", failure) from None
    return {"name": agent_name, "pid": node.spawner.current[agent_name].pid
            if agent_name in node.spawner.current else None}


def _require(node: NodeDaemon, name: str) -> dict[str, Any]:
    rec = node.store.read(lambda t: t.get_agent(name))
    if rec is None:
        raise AgentNotFound(name)
    return rec


def stop(node: NodeDaemon, name: str) -> dict[str, Any]:
    """``{"op": "stop", "name"}`` -> ``{"name", "status": "stopped"}``: an orderly stop
    (``terminate("normal")``, then exit within its shutdown time). The agent leaves the tree;
    its state and mailbox stay, so a later spawn under the name resumes it.
    CLI: ``beamish stop NAME``."""
    rec = _require(node, name)
    shell = node.shell(rec["supervisor"])
    if rec["status"] in LIVE_STATUSES | {"failed"} and shell is not None:
        node.spawner.stop_reasons[name] = "normal"
        try:
            shell.remove_child(name)
        except SupervisorError:
            pass  # not a child any more (failed, or exited meanwhile): nothing to stop
        node.spawner.stop_reasons.pop(name, None)
    node.set_status(name, "stopped")
    node.emit("stopped", name, rec["supervisor"], "normal")
    return {"name": name, "status": "stopped"}


def delete(node: NodeDaemon, name: str) -> dict[str, Any]:
    """``{"op": "delete", "name"}`` -> ``{"name", "deleted": true}``: stop it if running and
    erase its state, mailbox and dead letters. CLI: ``beamish delete NAME``."""
    rec = _require(node, name)
    stop(node, name)
    node.store.write(lambda t: (t.erase_agent_data(rec["id"]), t.delete_agent(name)))
    node.emit("deleted", name, rec["supervisor"], "")
    return {"name": name, "deleted": True}


def _proc_stats(pid: int | None) -> tuple[int, float]:
    if not pid:
        return 0, 0.0
    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            times = proc.cpu_times()
            return int(proc.memory_info().rss), float(times.user + times.system)
    except psutil.Error:
        return 0, 0.0


def _info_of(node: NodeDaemon, rec: dict[str, Any]) -> dict[str, Any]:
    depth, processed = node.store.read(lambda t: (t.depth(rec["id"]), t.processed(rec["id"])))
    pid = rec.get("pid") if rec["status"] == "running" else None
    rss, cpu = _proc_stats(pid)
    return {"name": rec["name"], "pid": pid, "status": rec["status"],
            "restarts": int(rec.get("restarts", 0)), "mailbox_depth": depth,
            "processed": processed, "rss_bytes": rss, "cpu_seconds": cpu,
            "last_failure": rec.get("last_failure"), "supervisor": rec["supervisor"],
            "cls": rec["cls"]}


def info(node: NodeDaemon, name: str) -> dict[str, Any]:
    """``{"op": "info", "name"}`` -> the fields of `AgentInfo`. CLI: ``beamish ps`` (all)."""
    return _info_of(node, _require(node, name))


def ps(node: NodeDaemon) -> list[dict[str, Any]]:
    """``{"op": "ps"}`` -> a list of `AgentInfo` fields, in start order. CLI: ``beamish ps``."""
    recs = sorted(node.store.read(lambda t: t.agents()), key=lambda r: r.get("order", 0))
    return [_info_of(node, r) for r in recs]


def tree(node: NodeDaemon) -> dict[str, Any]:
    """``{"op": "tree"}`` -> nested ``{"name", "kind", "strategy", "status", "restarts",
    "child_restarts", "children"}`` for each supervisor (``restarts``: how many times it
    was itself restarted, 0 for the root; ``child_restarts``: the sum of its direct
    children's), with each agent's pid, status and restarts. CLI: ``beamish tree``."""
    recs = {r["name"]: r for r in node.store.read(lambda t: t.agents())}

    def walk(snap: Any, status: str, restarts: int) -> dict[str, Any]:
        children = []
        for child in snap.children:
            if child.kind is ChildKind.SUPERVISOR:
                sub = child.supervisor  # None before its first start
                children.append(walk(sub, str(child.status), child.restarts) if sub is not None else
                                {"name": child.id, "kind": "supervisor", "strategy": "",
                                 "status": str(child.status), "restarts": child.restarts,
                                 "child_restarts": 0, "children": []})
            else:
                rec = recs.get(child.id, {})
                children.append({"name": child.id, "kind": "agent", "status": str(child.status),
                                 "restarts": int(rec.get("restarts", child.restarts)),
                                 "pid": rec.get("pid"), "cls": rec.get("cls", "")})
        return {"name": snap.id, "kind": "supervisor", "strategy": str(snap.strategy),
                "status": status, "restarts": restarts,
                "child_restarts": sum(c["restarts"] for c in children), "children": children}
    root = node.root.snapshot()
    return walk(root, "running" if root.running else "stopped", 0)


def events(node: NodeDaemon, since: int = 0, wait: float = 0.0) -> list[dict[str, Any]]:
    """``{"op": "events", "since": seq, "wait": s}`` -> events with ``seq > since``, waiting up
    to ``wait`` seconds for one. CLI: ``beamish events [--follow]``."""
    deadline = time.monotonic() + min(max(wait, 0.0), 30.0)
    with node.event_cond:
        while True:
            found = [e for e in node.events if e["seq"] > since]
            remaining = deadline - time.monotonic()
            if found or remaining <= 0:
                return found
            node.event_cond.wait(remaining)


def dead_letters(node: NodeDaemon, name: str) -> list[dict[str, Any]]:
    """``{"op": "dead_letters", "name"}`` -> ``[{"seq", "kind", "msg", "failure", "time"}]``.
    CLI: ``beamish dead-letters NAME``."""
    from beamish.mailbox import unpack
    rec = _require(node, name)
    entries = node.store.read(lambda t: t.dead(rec["id"]))
    return [{"seq": seq, "kind": e["message"]["k"], "msg": unpack(e["message"]["p"]),
             "failure": e["failure"], "time": e.get("time")} for seq, e in entries]


def resend_dead_letter(node: NodeDaemon, name: str, seq: int) -> dict[str, Any]:
    """``{"op": "resend_dead_letter", "name", "seq"}`` -> ``{"name", "seq"}`` (the new seq):
    move dead letter ``seq`` back to the end of the agent's mailbox, in one transaction.
    CLI: ``beamish dead-letters NAME --resend SEQ``."""
    rec = _require(node, name)
    if rec["status"] not in LIVE_STATUSES:
        raise AgentNotFound(name, f"it is {rec['status']}; spawn or restart it first")

    def txn(t: Txn) -> int | None:
        entry = next((e for s_, e in t.dead(rec["id"]) if s_ == seq), None)
        if entry is None:
            return None
        t.delete_dead(rec["id"], seq)
        return t.append(rec["id"], entry["message"])
    new_seq = node.store.write(txn)
    if new_seq is None:
        raise ConfigError(f"agent {name!r} has no dead letter #{seq} "
                          f"(see `beamish dead-letters {name}`)")
    from beamish.mailbox import Kind, encode_ring
    node.ring(node.paths.agent_inbox(rec["id"]), encode_ring(Kind.RING, new_seq.to_bytes(8, "big")))
    node.emit("resent", name, rec["supervisor"], f"dead letter #{seq} as #{new_seq}")
    return {"name": name, "seq": new_seq}


def restart(node: NodeDaemon, name: str) -> dict[str, Any]:
    """``{"op": "restart", "name"}`` -> ``{"name", "status"}``: restart an agent or supervisor
    marked failed. CLI: ``beamish restart NAME``."""
    rec = node.store.read(lambda t: t.get_agent(name))
    if rec is None:
        raise AgentNotFound(name)
    shell = node.shell(rec["supervisor"])
    if shell is None:
        raise AgentNotFound(name, f"its supervisor {rec['supervisor']!r} is gone")
    try:
        shell.restart_child(name)
    except StartFailed as exc:
        raise SpawnError(name, f"it did not start ({exc})") from None
    except SupervisorError:
        node.store.write(lambda t: t.put_agent({**rec, "status": "starting", "fresh": True}))
        try:
            _add_agent(shell, rec)
        except (StartFailed, SupervisorError) as exc:
            node.set_status(name, rec["status"])
            raise SpawnError(name, f"it did not start ({exc})") from None
    return {"name": name, "status": "running"}


def _sup_spec(rec: dict[str, Any]) -> ChildSpec:
    # Strings go in as given: the specs validate them and name the field in the error.
    template = None
    if rec["strategy"] == "simple_one_for_one":
        t = rec.get("template") or {}
        template = ChildSpec("template", ChildKind.AGENT, t.get("restart", "permanent"),
                             t.get("shutdown", 5.0))
    spec = SupervisorSpec(rec["name"], rec["strategy"], rec["max_restarts"], rec["max_seconds"],
                          backoff=tuple(rec["backoff"]) if rec.get("backoff") else None,
                          template=template)
    return ChildSpec.for_supervisor(spec, rec.get("restart", "permanent"))


def add_supervisor(node: NodeDaemon, name: str, strategy: str = "one_for_one",
                   max_restarts: int = 3, max_seconds: float = 5.0, parent: str = "root",
                   restart: str = "permanent", backoff: list[float] | None = None,
                   child_restart: str = "permanent", child_shutdown: Any = 5.0
                   ) -> dict[str, Any]:
    """``{"op": "add_supervisor", "name", "strategy", "max_restarts", "max_seconds", "parent",
    "restart", "backoff", "child_restart", "child_shutdown"}`` -> ``{"name"}``: a nested
    supervisor, persisted with the tree. For ``simple_one_for_one``, ``child_restart`` and
    ``child_shutdown`` are the template every agent spawned into it gets.
    CLI: ``beamish add-supervisor NAME --strategy S --parent P``."""
    rec = {"name": name, "strategy": strategy, "max_restarts": max_restarts,
           "max_seconds": max_seconds, "parent": parent, "restart": restart,
           "backoff": backoff, "status": "running",
           "template": {"restart": child_restart, "shutdown": check_shutdown(child_shutdown)}}
    try:
        spec = _sup_spec(rec)
    except (InvalidSpec, ValueError) as exc:
        raise ConfigError(f"supervisor {name!r}: {exc}") from None
    shell = node.shell(parent)
    if shell is None:
        raise ConfigError(f"parent={parent!r}: no such supervisor (root or one added before)")
    if node.shell(name) is not None or node.store.read(lambda t: t.get_agent(name)):
        raise ConfigError(f"name={name!r}: already used by a supervisor or an agent")

    def txn(t: Txn) -> None:
        t.put_sup({**rec, "order": t.next_counter("order")})
    node.store.write(txn)
    try:
        shell.add_child(spec)
    except (StartFailed, SupervisorError) as exc:
        node.store.write(lambda t: t.delete_sup(name))
        raise ConfigError(f"supervisor {name!r} did not start: {exc}") from None
    return {"name": name}


def add_config_entries(node: NodeDaemon, config: Any) -> None:
    """Persist the config file's supervisors and agents that the store does not hold yet
    (a restarted node keeps what it had: the store wins over the file)."""
    def txn(t: Txn) -> None:
        for sup in config.supervisor:
            if t.get_sup(sup.name) is None:
                t.put_sup({"name": sup.name, "strategy": sup.strategy,
                           "max_restarts": sup.max_restarts, "max_seconds": sup.max_seconds,
                           "parent": sup.parent, "restart": sup.restart,
                           "backoff": list(sup.backoff) if sup.backoff else None,
                           "template": {"restart": sup.child_restart,
                                        "shutdown": sup.child_shutdown},
                           "status": "running", "order": t.next_counter("order")})
        for agent in config.agent:
            if t.get_agent(agent.name) is None:
                t.put_agent({"name": agent.name, "id": t.next_counter("agent_id"),
                             "incarnation": 0, "restarts": 0, "created": time.time(),
                             "last_failure": None, "cls": agent.cls, "args": agent.args,
                             "supervisor": agent.supervisor, "restart": agent.restart,
                             "shutdown": agent.shutdown, "limits": agent.limits.model_dump(),
                             "status": "starting", "pid": None, "fresh": True,
                             "order": t.next_counter("order")})
    node.store.write(txn)


def start_persisted(node: NodeDaemon) -> None:
    """Start the persisted tree in start order: supervisors, and every agent that was live
    (stopped, exited and failed agents stay as they were)."""
    sups, agents = node.store.read(lambda t: (t.sups(), t.agents()))
    items = [("sup", r) for r in sups] + [("agent", r) for r in agents]
    for kind, rec in sorted(items, key=lambda item: item[1].get("order", 0)):
        if kind == "sup":
            parent = node.shell(rec["parent"])
            if parent is None:
                continue
            try:
                parent.add_child(_sup_spec(rec))
            except (StartFailed, SupervisorError) as exc:
                node.emit("failed", rec["name"], rec["parent"], f"did not start: {exc}")
            continue
        if rec["status"] not in LIVE_STATUSES:
            continue
        shell = node.shell(rec["supervisor"])
        if shell is None:
            node.set_status(rec["name"], "failed")
            continue
        node.store.write(lambda t, r=rec: t.put_agent({**r, "fresh": True}))
        try:
            _add_agent(shell, rec)
        except (StartFailed, SupervisorError) as exc:
            node.set_status(rec["name"], "failed")
            node.emit("failed", rec["name"], rec["supervisor"], f"did not start: {exc}")


def shutdown(node: NodeDaemon) -> dict[str, Any]:
    """``{"op": "shutdown"}`` -> ``{"pid"}`` at once; the node then stops every agent in reverse
    start order and exits (the client waits for the pid). CLI: ``beamish node stop``."""
    node.stopping.set()
    return {"pid": os.getpid()}


def _live(node: NodeDaemon, name: str, inc: int | None = None) -> Any:
    incn = node.spawner.current.get(name)
    if incn is None or not incn.ready.done() or (inc is not None and incn.inc != inc):
        return None
    return incn


def monitor(node: NodeDaemon, watcher: str, inc: int, target: str) -> dict[str, Any]:
    """``{"op": "monitor", "watcher", "inc", "target"}`` -> ``{"target", "live"}``: the
    watcher's ``handle_info`` gets ``Down(target, reason)`` when that agent's process exits
    (at once, with reason "noproc", if it is not running). From ``self.ctx.monitor``."""
    me = _live(node, watcher, inc)
    if me is None:
        raise AgentNotFound(watcher, "the monitoring agent itself is not running")
    other = _live(node, target)
    if other is None:
        from ._links import NOPROC, down_message
        node.deliver_info(me, down_message(target, NOPROC))
        return {"target": target, "live": False}
    node.links.monitor(me, other)
    return {"target": target, "live": True}


def link(node: NodeDaemon, watcher: str, inc: int, target: str) -> dict[str, Any]:
    """``{"op": "link", "watcher", "inc", "target"}`` -> ``{"target"}``: link the two agents'
    processes both ways. An abnormal exit of one kills the other, unless it sets
    ``trap_exits = True``: then it gets ``Exit(name, reason)`` in ``handle_info``. Normal
    exits do not propagate. From ``self.ctx.link``; a target not running raises
    `AgentNotFound` (where Erlang would send exit ``noproc``)."""
    me = _live(node, watcher, inc)
    if me is None:
        raise AgentNotFound(watcher, "the linking agent itself is not running")
    other = _live(node, target)
    if other is None:
        raise AgentNotFound(target, "cannot link to it")
    node.links.link(me, other)
    return {"target": target}


COMMANDS: dict[str, Callable[..., Any]] = {
    "monitor": monitor, "link": link, "resend_dead_letter": resend_dead_letter,
    "ping": ping, "spawn": spawn, "stop": stop, "delete": delete, "info": info, "ps": ps,
    "tree": tree, "events": events, "dead_letters": dead_letters, "restart": restart,
    "shutdown": shutdown, "add_supervisor": add_supervisor,
}
