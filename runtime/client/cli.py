"""The ``beamish`` command line. Every command takes ``--dir D`` before or after the verb
(default ``$BEAMISH_DIR``, else ``./.beamish``)."""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import gc
import importlib.metadata
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from .._events import KINDS_LIST, SINCE_FORMS, check_kinds, parse_since
from .._paths import NodePaths, default_dir
from .._types import AgentStatus, Event, TreeNode
from .._validation import check_timeout
from ..errors import BeamishError, ConfigError, UpgradeFailed
from ..messaging.spawnargs import check_shutdown
from ..node.eventlog import PAGE_MAX
from . import drain as drain_cli
from . import nodes as nodes_cli

if TYPE_CHECKING:
    from ..cluster.frontdoor import TransportStatus
    from ..cluster.status import ClusterStatus
    from .api import Node

EPILOG = """\
examples:
  beamish node start                       start a node in ./.beamish (background)
  beamish spawn app.agents:Counter --name c1 --args '{"start": 0}'
  beamish call c1 '"incr"'                 prints the reply as JSON
  beamish cast c1 '"incr"'
  beamish ps                               name, pid, status, restarts, mailbox, RSS
  beamish ps --status running --limit 50   filtered and paged by the node
  beamish tree                             the supervision tree
  beamish events --follow                  supervisor reports as they happen
  beamish events --since 1h --kind exited  filtered (--name NAME too); kept across restarts
  beamish top --sort memory                awake agents by RSS, until Ctrl-C
  beamish top --once --sort mailbox        one table, for scripts
  beamish logs c1 -f                       c1's output (print, logging), then as it comes
  beamish stop c1                          orderly stop; its state is kept
  beamish sleep c1                         no process until its next message
  beamish node stop                        stop every agent, then the node
  beamish node drain                       a cluster node: hand its agents off, then stop
  beamish bench --quick                    beamish vs plain threads, side by side
"""


def json_hint(text: str) -> str:
    """Return a hint fitting input ``text`` that is not valid JSON (pure; for error messages)."""
    head = text.strip()[:1]
    if head == "{":
        return ("a JSON object needs double quotes around its keys and strings, e.g. "
                "'{\"start\": 1}'")
    if head == "[":
        return "a JSON array needs double quotes around its strings, e.g. '[\"a\", 1]'"
    if "'" in text:
        return "JSON strings take double quotes, not single ones, e.g. '\"incr\"'"
    return "quote strings, e.g. '\"incr\"' (the single quotes are for the shell)"


def _json_arg(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(
            f"not valid JSON ({exc.msg} at column {exc.colno}): {text!r}; {json_hint(text)}"
        ) from None


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan  # refused by the check, with the flag's own message


def _positive(flag: str) -> Callable[[str], float]:
    """An argparse type: a finite number > 0 (`check_timeout`'s rule), named ``flag`` in
    its error."""
    def parse(text: str) -> float:
        try:
            return check_timeout(_number(text), flag)
        except ConfigError:
            raise argparse.ArgumentTypeError(f"{flag} {text!r}: expected a number > 0") from None
    return parse


def _shutdown_arg(text: str) -> float | str:
    """An argparse type: a child's shutdown (`check_shutdown`'s rule)."""
    try:
        return check_shutdown(text if text in ("brutal_kill", "infinity") else _number(text))
    except ConfigError:
        raise argparse.ArgumentTypeError(
            f"--shutdown {text!r}: expected seconds >= 0, brutal_kill or infinity") from None


def _version() -> str:
    try:
        return importlib.metadata.version("beamish")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser (exposed for tests and docs). Every argument has help text."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dir", default=argparse.SUPPRESS,
                        help="node dir (default $BEAMISH_DIR, else ./.beamish)")
    common.add_argument("--connect", default=argparse.SUPPRESS, metavar="tcp://HOST:PORT",
                        help="talk to a remote node's TCP front door instead of --dir "
                             "(default $BEAMISH_CONNECT; docs/remote.md)")
    common.add_argument("--keys", default=argparse.SUPPRESS, metavar="DIR",
                        help="with --connect: this client's keys dir (default $BEAMISH_KEYS)")
    common.add_argument("--server-key", default=argparse.SUPPRESS, metavar="NAME",
                        help="with --connect: which node key of DIR/authorized/ to trust "
                             "(default $BEAMISH_SERVER_KEY, else the only one there)")
    parser = argparse.ArgumentParser(
        prog="beamish", parents=[common], epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="beamish: a BEAM-like runtime for Python AI agents. Each agent runs in "
                    "its own process, supervised OTP-style, with its state in LMDB.")
    parser.add_argument("--version", action="version", version=f"beamish {_version()}",
                        help="print the installed version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                help="what to do (`beamish COMMAND --help` for each)")

    node = sub.add_parser("node", help="start, stop or inspect the node daemon",
                          parents=[common])
    node_sub = node.add_subparsers(dest="node_command", metavar="ACTION", required=True,
                                   help="start, stop or status")
    start = node_sub.add_parser("start", parents=[common], help="start a node on the dir")
    start.add_argument("--config", metavar="FILE",
                       help="a beamish.toml declaring the initial tree (default: none)")
    start.add_argument("--foreground", action="store_true",
                       help="run in this process (logs to stderr) instead of in the background")
    start.add_argument("--durability", choices=["process", "fsync", "memory"],
                       help="override the config's durability (default process)")
    start.add_argument("--strict", action="store_true",
                       help="stop the node when the root's restart intensity is exceeded, "
                            "and refuse to start when an agent of the tree fails to start")
    start.add_argument("--ready-fd", type=int, help=argparse.SUPPRESS)
    node_sub.add_parser("stop", parents=[common], help="stop every agent, then the node")
    drain_cli.add_parser(node_sub, common)
    node_sub.add_parser("status", parents=[common], help="is a node running here?").add_argument(
        "--json", action="store_true", help="machine-readable output")

    sp = sub.add_parser("spawn", parents=[common], help="start an agent")
    sp.add_argument("cls", metavar="MODULE:CLASS",
                    help="the agent class, importable by the node (e.g. app.agents:Counter)")
    sp.add_argument("--name", help="a unique agent name (default: the class name and a number)")
    sp.add_argument("--args", type=_json_arg, default={}, metavar="JSON",
                    help="a JSON object passed to init (default {})")
    sp.add_argument("--supervisor", default="root",
                    help="the supervisor to start it under (default root)")
    sp.add_argument("--restart", choices=["permanent", "transient", "temporary"],
                    default="permanent", help="when to restart it (default permanent)")
    sp.add_argument("--shutdown", type=_shutdown_arg, default=5.0, metavar="S",
                    help="seconds to wait for an orderly stop, brutal_kill or infinity "
                         "(default 5)")
    sp.add_argument("--memory-mb", type=_positive("--memory-mb"), metavar="MB",
                    help="kill it past this resident memory, in MiB (default: no limit)")
    sp.add_argument("--handler-timeout", type=_positive("--handler-timeout"), metavar="S",
                    help="kill it when one message takes longer, in seconds "
                         "(default: no limit)")
    sp.add_argument("--cpu-seconds", type=_positive("--cpu-seconds"), metavar="S",
                    help="kill it past this CPU time per incarnation, in seconds "
                         "(default: no limit)")
    sp.add_argument("--idle-timeout", type=_positive("--idle-timeout"), metavar="S",
                    help="put it to sleep after S seconds without a message; its next "
                         "message wakes it (default: never)")
    sp.add_argument("--lazy", action="store_true",
                    help="register it asleep: its process starts on its first message")
    sp.add_argument("--durability", choices=["replicated"],
                    help="replicated: its state and mailbox in the cluster's PostgreSQL, run "
                         "by the owner of its name's shard (a node in a cluster)")
    sp.add_argument("--node", metavar="NODE",
                    help="in a cluster: the node it lives on (its LMDB there), whichever "
                         "node this command talks to (default: that node)")

    call = sub.add_parser("call", parents=[common], help="call an agent; prints the reply")
    call.add_argument("name", metavar="NAME", help="the agent to call")
    call.add_argument("msg", type=_json_arg, metavar="JSON",
                      help="the message, as JSON (a string needs quotes: '\"incr\"')")
    call.add_argument("--timeout", type=_positive("--timeout"), default=5.0, metavar="S",
                      help="seconds to wait for the reply (default 5)")
    cast = sub.add_parser("cast", parents=[common], help="cast to an agent")
    cast.add_argument("name", metavar="NAME", help="the agent to cast to")
    cast.add_argument("msg", type=_json_arg, metavar="JSON",
                      help="the message, as JSON (a string needs quotes: '\"incr\"')")
    for verb, text in (("stop", "stop an agent in order (state kept)"),
                       ("delete", "stop an agent and erase its state"),
                       ("sleep", "put an agent to sleep (its next message wakes it)"),
                       ("restart", "restart a failed agent or supervisor (refused while it runs)"),
                       ("dead-letters", "show the casts an agent skipped"),
                       ("info", "show one agent")):
        p = sub.add_parser(verb, parents=[common], help=text)
        p.add_argument("name", metavar="NAME",
                       help="the supervisor or agent" if verb == "restart" else "the agent")
        if verb in ("dead-letters", "info"):
            p.add_argument("--json", action="store_true", help="machine-readable output")
        if verb == "dead-letters":
            p.add_argument("--resend", type=int, metavar="SEQ",
                           help="put dead letter SEQ back at the end of the mailbox")
    upgrade = sub.add_parser("upgrade", parents=[common],
                             help="move running agents onto their modules' current code")
    upgrade.add_argument("modules", nargs="*", metavar="MODULE",
                         help="only the agents of these modules (default: every agent)")
    upgrade.add_argument("--config", metavar="FILE",
                         help="also apply the changes of this config file's [[agent]] "
                              "entries (args, limits, restart, shutdown, idle_timeout)")
    upgrade.add_argument("--json", action="store_true", help="machine-readable output")
    upgrade.add_argument("--timeout", type=_positive("--timeout"), default=600.0,
                         metavar="S", help="seconds to wait for the rollout (default 600)")
    for verb, text in (("ps", "list agents"), ("tree", "show the supervision tree"),
                       ("events", "show supervisor events")):
        p = sub.add_parser(verb, parents=[common], help=text)
        p.add_argument("--json", action="store_true", help="machine-readable output")
        if verb == "ps":
            p.add_argument("--status", choices=[s.value for s in AgentStatus],
                           help="only the agents with this status")
            p.add_argument("--supervisor", metavar="NAME",
                           help="only the agents of this supervisor (not of its sub-supervisors)")
            p.add_argument("--after", metavar="NAME",
                           help="start after this name (the next page; agents are listed "
                                "in name order)")
        if verb in ("ps", "tree"):
            default = PS_LIMIT if verb == "ps" else TREE_LIMIT
            p.add_argument("--limit", type=_count_arg, default=default, metavar="N",
                           help=f"show at most N agents{' per supervisor' if verb == 'tree' else ''}"
                                f" (default {default}; 0: all)")
            p.add_argument("--all", action="store_true", help="show every agent (--limit 0)")
        if verb == "events":
            p.add_argument("--follow", "-f", action="store_true",
                           help="wait for new events until Ctrl-C or the node stops")
            p.add_argument("--since", type=_since_arg, metavar="T",
                           help=f"only the events at or after T: {SINCE_FORMS}")
            p.add_argument("--name", metavar="NAME",
                           help="only the events about this agent or supervisor")
            p.add_argument("--kind", type=_kind_arg, action="append", metavar="KIND",
                           help="only the events of this kind (repeat it, or separate kinds "
                                f"by commas, for several): {KINDS_LIST}")
            p.add_argument("--after", type=_count_arg, default=0, metavar="SEQ",
                           help="only the events after this seq (see --json; default 0)")
            p.add_argument("--limit", type=_count_arg, default=0, metavar="N",
                           help="show at most N events, the earliest that match (default "
                                "0: all; not with --follow)")
    top = sub.add_parser(
        "top", parents=[common], help="watch the awake agents: CPU, memory, mailbox, restarts",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="The awake agents (those with a process; sleeping ones are counted on\n"
                    "the first line), sorted, refreshing until Ctrl-C. CPU% and MSG/S are\n"
                    "rates since the previous refresh; MEAN ms is the handlers' mean\n"
                    "latency since the node started; HANDLED and RESTARTS are over each\n"
                    "agent's life. The same figures for Prometheus: [node] metrics in the\n"
                    "config file (docs/metrics.md).",
        epilog="examples:\n  beamish top                          by CPU, every 2 s\n"
               "  beamish top --sort mailbox -n 20     the 20 deepest mailboxes\n"
               "  beamish top --once --interval 1      one table (CPU over 1 s), then exit")
    top.add_argument("--sort", choices=["cpu", "memory", "mailbox", "restarts"], default="cpu",
                     help="the column to sort by, largest first (default cpu; memory is RSS)")
    top.add_argument("--interval", type=_positive("--interval"), default=2.0, metavar="S",
                     help="seconds between refreshes, and the window of CPU%% and MSG/S "
                          "(default 2)")
    top.add_argument("--once", action="store_true",
                     help="print one table and exit (two readings --interval apart, for "
                          "the rates): for scripts")
    top.add_argument("--limit", "-n", type=_count_arg, default=TOP_LIMIT, metavar="N",
                     help=f"show at most N agents (default {TOP_LIMIT}; 0: all)")
    dash = sub.add_parser(
        "dashboard", parents=[common], help="serve the live web view of a running node",
        description="Serve the web view (tree, agents, events, dead letters, logs) of the "
                    "node running on --dir, until Ctrl-C (docs/dashboard.md). The node can "
                    "serve it itself: [node] dashboard in its config file.")
    dash.add_argument("--bind", default="127.0.0.1:8470", metavar="HOST:PORT",
                      help="where to listen (default 127.0.0.1:8470, loopback only)")
    dash.add_argument("--token", metavar="T",
                      help="the token every request must carry (at least 16 characters; "
                           "default: made up; the printed link carries it)")
    lg = sub.add_parser("logs", parents=[common],
                        help="show an agent's log (its stdout, stderr and logging records)")
    lg.add_argument("name", metavar="NAME", help="the agent")
    lg.add_argument("-n", "--lines", type=_count_arg, default=100, metavar="N",
                    help="show the last N lines (default 100)")
    lg.add_argument("-f", "--follow", action="store_true",
                    help="then print new lines as they are written, across restarts and "
                         "rotations, until Ctrl-C")
    sv = sub.add_parser("add-supervisor", parents=[common], help="add a supervisor")
    sv.add_argument("name", metavar="NAME", help="a unique supervisor name")
    sv.add_argument("--strategy", default="one_for_one",
                    choices=["one_for_one", "one_for_all", "rest_for_one", "simple_one_for_one"],
                    help="what a child's failure restarts (default one_for_one)")
    sv.add_argument("--max-restarts", type=int, default=3, metavar="N",
                    help="restart intensity: it gives up after more than N restarts within "
                         "--max-seconds (default 3)")
    sv.add_argument("--max-seconds", type=_positive("--max-seconds"), default=5.0,
                    metavar="S", help="the intensity window, in seconds (default 5)")
    sv.add_argument("--parent", default="root",
                    help="the supervisor to start it under (default root)")
    sv.add_argument("--restart", choices=["permanent", "transient", "temporary"],
                    default="permanent",
                    help="its own restart type under its parent (default permanent)")
    sv.add_argument("--backoff", type=_positive("--backoff"), nargs=2, metavar=("MIN", "MAX"),
                    help="delay restarts exponentially from MIN to MAX seconds, with jitter "
                         "(default: restart at once)")
    sv.add_argument("--child-restart", choices=["permanent", "transient", "temporary"],
                    default="permanent",
                    help="simple_one_for_one: every child's restart type (default permanent)")
    sv.add_argument("--child-shutdown", type=_shutdown_arg, default=5.0, metavar="S",
                    help="simple_one_for_one: every child's shutdown, seconds, brutal_kill "
                         "or infinity (default 5)")
    nodes_cli.add_parser(sub)
    keys = sub.add_parser("keys", help="CURVE keys for TCP: generate a pair, authorize a key")
    keys_sub = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True,
                                   help="generate or authorize")
    gen = keys_sub.add_parser("generate", help="write DIR/secret.key and DIR/public.key; "
                                               "print the public key")
    gen.add_argument("keys_dir", metavar="DIR", help="the keys dir (created 0700)")
    auth = keys_sub.add_parser("authorize", help="add a public key to DIR/authorized/ (a "
                                                 "node admits those; a client trusts those)")
    auth.add_argument("keys_dir", metavar="DIR", help="the keys dir")
    auth.add_argument("key", metavar="PUBKEY",
                      help="a 40-character Z85 public key (one starting with '-' after "
                           "`--`), or the path of a public.key file")
    auth.add_argument("--name", help="its file's name in DIR/authorized/ (default: from "
                                     "the key's hash)")
    bench = sub.add_parser("bench", help="run the isolation benchmarks (beamish vs threads); "
                                         "it runs its own nodes in temp dirs (no --dir)")
    bench.add_argument("--quick", action="store_true", help="a short run (under 2 minutes)")
    bench.add_argument("--out", metavar="DIR",
                       help="results dir (default benchmarks/results/<time>)")
    bench.add_argument("--peers", action="store_true",
                       help="also run the same rows on Thespian, Pykka and Ray (when "
                            "installed: pip install 'beamish[peers]')")
    return parser


PS_LIMIT = 1000
"""How many agents ``beamish ps`` lists by default (a final line says how many more)."""
TREE_LIMIT = 100
"""How many agents of each supervisor ``beamish tree`` lists by default."""
TOP_LIMIT = 50
"""How many agents ``beamish top`` shows by default."""


def _since_arg(text: str) -> datetime.datetime:
    """An argparse type: ``--since`` (`parse_since`), as a local time."""
    try:
        return datetime.datetime.fromtimestamp(parse_since(text, time.time()))
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc).replace("since=", "--since ", 1)) from None


def _kind_arg(text: str) -> list[str]:
    """An argparse type: ``--kind`` (`check_kinds`): one kind, or several by commas."""
    try:
        kinds = check_kinds(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc).replace("kind=", "--kind ", 1)) from None
    return sorted(k.value for k in kinds or ())


def _count_arg(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a count, 0 or more (0: all)")
    return value


def more_line(more: int, after: str | None, filters: Sequence[str], limit: int | None = None
              ) -> str:
    """The line ``beamish ps`` ends a page with when ``more`` agents were left out (pure):
    how many, and the commands that show them (``filters``: the filter options given, to
    repeat; ``limit``: a page size given, kept for the next page)."""
    again = " ".join(["beamish ps", *filters])
    size = f" --limit {limit}" if limit else ""
    return (f"... {more:,} more agent{'s' if more != 1 else ''} not shown: "
            f"`{again}{size} --after {after}` for the next page, `{again} --all` for all")


def _ps_filters(args: argparse.Namespace) -> list[str]:
    argv = []
    if args.status:
        argv += ["--status", args.status]
    if args.supervisor:
        argv += ["--supervisor", args.supervisor]
    return argv


def _fmt_bytes(n: int) -> str:
    return f"{n / 1048576:.1f} MiB" if n else "-"


def _print_table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _print_tree(node: TreeNode, indent: str = "") -> None:
    if node["kind"] == "supervisor":
        print(f"{indent}{node['name']} [supervisor {node.get('strategy', '')}] "
              f"{node.get('status', '')} restarts={node.get('restarts', 0)} "
              f"child_restarts={node.get('child_restarts', 0)}")
        for child in node.get("children", []):
            _print_tree(child, indent + "  ")
        if node.get("more"):
            print(f"{indent}  {hidden_line(node.get('more', 0), node.get('more_by_status', {}))}")
    else:
        pid = node.get("pid") or "-"
        print(f"{indent}{node['name']} ({node.get('cls', '')}) pid={pid} "
              f"status={node['status']} restarts={node.get('restarts', 0)}")


def hidden_line(more: int, by_status: dict[str, int]) -> str:
    """The line ``beamish tree`` prints for the agents of a supervisor it left out (pure)."""
    counts = ", ".join(f"{n:,} {status}" for status, n in sorted(by_status.items()))
    return (f"... {more:,} more agent{'s' if more != 1 else ''} ({counts}); "
            "`beamish tree --all` shows them")


def _run(args: argparse.Namespace) -> int:
    from .api import start_node
    from .remote import keys_command
    d = getattr(args, "dir", None) or default_dir()
    if args.command == "keys":
        return keys_command(args)
    connect = _connector(args)
    if args.command == "node":
        if args.node_command == "start":
            if args.foreground:
                return _foreground(args, d)
            node = start_node(d, config=args.config, durability=args.durability,
                              strict=args.strict or None)
            print(f"node started on {node.dir} (pid {node.pid}); log: {node.paths.log}")
            door = node.transport()
            if door is not None:
                print(f"listening on {door.listen} (CURVE), public key {door.public_key}")
            for line in node.start_report.lines():
                print(f"beamish: warning: {line}", file=sys.stderr)
            if node.start_report.failures:
                print("beamish: (`beamish node start --strict` refuses to start with agents "
                      "that fail)", file=sys.stderr)
            node.close()
            return 0
        if args.node_command == "drain":
            target = connect(d)
            return drain_cli.run(target.drain, target.dir, args)
        if args.node_command == "stop":
            node = connect(d)
            pid = node.pid
            node.shutdown()
            print(f"node on {node.dir} (pid {pid}) stopped")
            return 0
        node = connect(d)
        try:
            st, door, member = node.status(), node.transport(), node.cluster()
        finally:
            node.close()
        if args.json:
            print(json.dumps({**dataclasses.asdict(st), "transport": door and
                              dataclasses.asdict(door),
                              "cluster": member and member.to_wire()}))
            return 0
        dr = st.dropped_frames
        print(f"node running on {st.dir} (pid {st.pid}, durability {st.durability}, "
              f"up {st.uptime:.0f} s, {st.awake} agent(s) awake); invalid frames dropped: "
              f"{dr.total} (control {dr.control}, reports {dr.reports}, ready {dr.ready}, "
              f"agents {dr.agents})")
        if door is not None:
            print(transport_line(door))
        if member is not None:
            print(cluster_line(member))
        return 0
    if args.command == "nodes":
        return nodes_cli.run(args)
    if args.command == "bench":
        from beamish.benchmarks.__main__ import main as bench_main
        argv = (["--quick"] if args.quick else []) + (["--out", args.out] if args.out else [])
        argv += ["--peers"] if args.peers else []
        return bench_main(argv)
    node = connect(d)
    try:
        return _client_command(node, args)
    finally:
        node.close()


def _connector(args: argparse.Namespace) -> Callable[[str], Node]:
    """How this command connects: to the node on a dir, or with ``--connect`` (or
    ``$BEAMISH_CONNECT``) to a remote node's front door."""
    from .api import connect
    address = getattr(args, "connect", None) or os.environ.get("BEAMISH_CONNECT")
    if not address:
        return connect
    if args.command in ("bench",) or getattr(args, "node_command", None) == "start":
        raise ConfigError(f"`beamish {args.command}` runs here: --connect does not apply")
    keys, server = getattr(args, "keys", None), getattr(args, "server_key", None)
    return lambda _dir: connect(address, keys=keys, server_key=server)


def cluster_line(member: ClusterStatus) -> str:
    """``beamish node status``'s line about the node's cluster (pure)."""
    lease = ("FENCED: no lease it may act on (its replicated agents are stopped)"
             if member.fenced else f"lease held (ttl {member.lease_ttl:g} s)")
    joined = "not joined yet" if member.incarnation is None \
        else f"incarnation {member.incarnation}"
    return (f"cluster {member.cluster!r} as node {member.node!r} ({joined}): {lease}; "
            f"{len(member.shards)} shard(s) owned, {member.replicated} replicated "
            "agent(s) running here")


def transport_line(door: TransportStatus) -> str:
    """``beamish node status``'s line about the TCP front door (pure)."""
    return (f"listening on {door.listen} (CURVE; public key {door.public_key}; "
            f"{door.authorized} key(s) authorized): {door.connections} connection(s), "
            f"{door.refused} refused (key not authorized {door.refused_auth}, not CURVE "
            f"{door.refused_protocol}), {door.requests} request(s), {door.dropped} invalid, "
            f"{door.undeliverable} answer(s) undeliverable")


def _client_command(node: Node, args: argparse.Namespace) -> int:
    cmd = args.command
    if cmd == "spawn":
        from .._types import Limits
        limits = Limits(memory_mb=args.memory_mb, handler_timeout=args.handler_timeout,
                        cpu_seconds=args.cpu_seconds)
        ref = node.spawn(args.cls, args=args.args, name=args.name, supervisor=args.supervisor,
                         restart=args.restart, shutdown=args.shutdown, limits=limits,
                         idle_timeout=args.idle_timeout, lazy=args.lazy,
                         durability=args.durability, node=args.node)
        if args.lazy:
            print(f"spawned {ref.name} (sleeping: its first message starts it)")
        else:
            info = ref.info()
            if info.node is None:
                print(f"spawned {ref.name} (pid {info.pid})")
            else:  # a replicated agent: its pid is on its node's machine, if it runs here
                pid = "" if info.pid is None else f"pid {info.pid}, "
                print(f"spawned {ref.name} ({pid}on node {info.node})")
    elif cmd == "call":
        print(json.dumps(node.call(args.name, args.msg, timeout=args.timeout), default=repr))
    elif cmd == "cast":
        node.cast(args.name, args.msg)
    elif cmd == "stop":
        node.stop(args.name)
        print(f"stopped {args.name} (its state is kept; spawn the name again to resume it)")
    elif cmd == "upgrade":
        return _upgrade(node, args)
    elif cmd == "sleep":
        node.sleep(args.name)
        print(f"{args.name} sleeps (its next message wakes it)")
    elif cmd == "delete":
        node.delete(args.name)
        print(f"deleted {args.name}")
    elif cmd == "restart":
        node.restart(args.name)
        print(f"restarted {args.name}")
    elif cmd == "add-supervisor":
        node.add_supervisor(args.name, strategy=args.strategy, max_restarts=args.max_restarts,
                            max_seconds=args.max_seconds, parent=args.parent,
                            restart=args.restart,
                            backoff=tuple(args.backoff) if args.backoff else None,
                            child_restart=args.child_restart,
                            child_shutdown=args.child_shutdown)
        print(f"added supervisor {args.name} under {args.parent}")
    elif cmd == "info":
        info = node.info(args.name)
        print(json.dumps(info.to_wire(), indent=None if args.json else 2, default=repr))
    elif cmd == "ps":
        page = node.ps_page(args.status, args.supervisor,
                            None if args.all or not args.limit else args.limit, args.after)
        infos = page.rows
        if args.json:
            print(json.dumps([i.to_wire() for i in infos]))
        else:
            node_col = any(i.node for i in infos)  # replicated agents: the node running each
            _print_table([[i.name, i.pid or "-", i.status, i.restarts, i.mailbox_depth,
                           i.processed, _fmt_bytes(i.rss_bytes), i.supervisor,
                           *([i.node or "-"] if node_col else [])] for i in infos],
                         ["NAME", "PID", "STATUS", "RESTARTS", "MAILBOX", "PROCESSED", "RSS",
                          "SUPERVISOR", *(["NODE"] if node_col else [])])
        if page.more:  # never truncated silently: with --json the note goes to stderr
            print(more_line(page.more, page.after, _ps_filters(args),
                            args.limit if args.limit != PS_LIMIT else None),
                  file=sys.stderr if args.json else sys.stdout)
        if page.unavailable is not None:  # a partial list: said, and exit code 1
            print(f"beamish: only this node's own agents are listed: the cluster's "
                  f"replicated agents could not be read ({page.unavailable}); retry once "
                  "its PostgreSQL is back", file=sys.stderr)
            return 1
    elif cmd == "tree":
        tree = node.tree(None if args.all or not args.limit else args.limit)
        print(json.dumps(tree)) if args.json else _print_tree(tree)
    elif cmd == "dashboard":
        from .dashboard import serve_dashboard
        return serve_dashboard(node, args.bind, args.token)
    elif cmd == "top":
        from .top import run_top
        return run_top(node, args.sort, args.interval, args.once, args.limit or None)
    elif cmd == "events":
        for ev in _events_of(node, args):
            if args.json:
                print(json.dumps(vars(ev)), flush=True)
            else:
                stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ev.time))
                print(f"{stamp} {ev.kind:<13} {ev.name} ({ev.supervisor}) {ev.reason}".rstrip(),
                      flush=True)
    elif cmd == "logs":
        for line in node.logs(args.name, args.lines, follow=args.follow):
            print(line, flush=args.follow)
    elif cmd == "dead-letters" and args.resend is not None:
        new = node.resend_dead_letter(args.name, args.resend)
        print(f"dead letter #{args.resend} of {args.name} re-sent as message #{new}")
    elif cmd == "dead-letters":
        entries = node.dead_letters(args.name)
        if args.json:
            print(json.dumps([{**e, "failure": e["failure"].to_dict() if e["failure"] else None}
                              for e in entries], default=repr))
        else:
            for e in entries:
                f = e["failure"]
                why = f"  ({f.kind}: {f.exc_type or f.message}, attempt {f.attempt})" if f else ""
                print(f"#{e['seq']} {json.dumps(e['msg'], default=repr)}{why}")
            if not entries:
                print(f"no dead letters for {args.name}")
    return 0


def _events_of(node: Node, args: argparse.Namespace) -> Iterator[Event]:
    """The events ``beamish events`` shows, page by page as the node sends them."""
    filters: dict[str, Any] = {"since": args.since, "name": args.name,
                               "kind": sorted({k for ks in args.kind for k in ks})
                               if args.kind else None}
    if args.follow:
        if args.limit:
            raise ConfigError("--limit does not go with --follow (a follower shows every "
                              "new event); use one or the other")
        yield from node.events(follow=True, after=args.after, **filters)
        return
    after, shown = args.after, 0
    while True:
        size = PAGE_MAX if not args.limit else min(PAGE_MAX, args.limit - shown)
        page = node.events_page(after=after, limit=size, **filters)
        yield from page.events
        shown += len(page.events)
        if not page.more or (args.limit and shown >= args.limit):
            return
        after = page.after


def _foreground(args: argparse.Namespace, d: str) -> int:
    from ..node.config import NodeConfig, load_config
    from ..node.daemon import run_daemon
    from .logs import last_lines
    config = load_config(args.config) if args.config else NodeConfig()
    node_overrides: dict[str, str | bool] = {}
    if args.durability:
        node_overrides["durability"] = args.durability
    if args.strict:
        node_overrides["strict"] = True
    if node_overrides:
        config = config.model_copy(update={"node": config.node.model_copy(update=node_overrides)})
    sys_path = [p for p in os.environ.get("BEAMISH_SYS_PATH", "").split(os.pathsep) if p]
    if not sys_path:
        sys_path = [os.path.abspath(p) if p else os.getcwd() for p in sys.path]
    code = run_daemon(NodePaths.of(d), config, sys_path, args.ready_fd, last_lines)
    # The node has closed what it opened. Its objects are frozen so that the interpreter's
    # teardown does not collect them all: a collection over every module's objects that
    # each `Node.shutdown` waited for (0.3-1 s on a loaded machine, ~20 ms frozen).
    gc.freeze()
    return code


def _upgrade(node: Node, args: argparse.Namespace) -> int:
    """``beamish upgrade``: print the report (exit 1 if the rollout stopped)."""
    try:
        report, err = node.upgrade(args.modules, args.config, timeout=args.timeout), None
    except UpgradeFailed as exc:
        report, err = exc.report, exc
    if args.json:
        print(json.dumps({"ok": report.ok, **report.to_wire()}))
    else:
        print("\n".join(report.lines()))
    if err is not None:
        print(f"beamish: {err}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the ``beamish`` command; return its exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "bench" and hasattr(args, "dir"):
        parser.error("bench runs its own nodes in temporary dirs; --dir does not apply to it "
                     "(use --out DIR for where its results go)")
    try:
        return _run(args)
    except ConfigError as exc:
        print(f"beamish: {exc}", file=sys.stderr)
        if getattr(args, "ready_fd", None) is not None:
            os.write(args.ready_fd, f"ConfigError\t{exc}\n".encode())
        return 2
    except BeamishError as exc:
        print(f"beamish: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `beamish ps | head`: the reader has what it wanted
        # Point stdout at /dev/null so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
