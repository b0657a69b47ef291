"""The isolation scenarios: noisy neighbour, CPU-bound work, the fault matrix, ``kill -9``.

Each runs on beamish and on the plain-threads runtime in the same run. Where a fault ends
the threads runtime's whole process (``os._exit``, SIGSEGV, SIGKILL), that is measured in a
subprocess running the threads runtime (`._threads_child`), never assumed.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

import psutil

from . import agents
from ._kernel import kernel_threads_cpu, kernel_threads_snapshot
from ._stats import latency_summary, median

CALL_TIMEOUT_S = 30.0
SURVIVORS = 3
NOISY_TARGET = 1.5  # target: noisy p99 within 1.5x idle p99 (beamish)
CPU_TARGET = 1.8  # target: CPU-bound throughput, 2 agents, at least 1.8x threads


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- noisy neighbour ------------------------------------------------------------------------------
def _sample(call: Any, max_n: int, max_s: float) -> list[int]:
    out: list[int] = []
    clock = time.perf_counter_ns
    end = clock() + int(max_s * 1e9)
    i = 0
    while i < max_n and clock() < end:
        msg = {"seq": i, "text": "ping"}
        t0 = clock()
        call(msg, CALL_TIMEOUT_S)
        out.append(clock() - t0)
        i += 1
    return out


def noisy_neighbour(h: Any, sizes: Any) -> dict[str, Any]:
    """Echo p50/p99 idle, then while another agent spins the CPU in pure Python."""
    rts = {"beamish": h.node, "threads": h.threads}
    refs: dict[str, tuple[Any, Any]] = {}
    for key, rt in rts.items():
        refs[key] = (rt.spawn(agents.ECHO, name=h.name("necho")),
                     rt.spawn(agents.SPINNER, name=h.name("spin")))
    h.beamish_agents += 2
    spin_s = sizes.noisy_spin_s
    out: dict[str, Any] = {"spin_seconds": spin_s}
    for key, (echo, spinner) in refs.items():
        call = echo.call
        for _ in range(sizes.call_warmup):
            call("warm", CALL_TIMEOUT_S)
        idle = _sample(call, sizes.noisy_samples, spin_s)
        cpu0 = h.node.info(spinner.name).cpu_seconds if key == "beamish" else None
        spinner.cast({"spin": spin_s})
        time.sleep(0.2)  # the spinner has picked its cast up
        t0 = time.perf_counter()
        noisy = _sample(call, sizes.noisy_samples, spin_s - 0.5)
        window = time.perf_counter() - t0
        spinner.call("ping", spin_s + CALL_TIMEOUT_S)  # waits for the spin to end
        entry: dict[str, Any] = {"idle": latency_summary(idle), "noisy": latency_summary(noisy),
                                 "noisy_window_s": window}
        if cpu0 is not None:
            cpu1 = h.node.info(spinner.name).cpu_seconds
            if cpu0 is not None and cpu1 is not None:
                entry["spinner_cpu_seconds"] = cpu1 - cpu0
        entry["p99_noisy_over_idle"] = entry["noisy"]["p99_us"] / entry["idle"]["p99_us"]
        entry["p50_noisy_over_idle"] = entry["noisy"]["p50_us"] / entry["idle"]["p50_us"]
        out[key] = entry
        _log(f"[noisy] {key:8s} idle p50 {entry['idle']['p50_us']:8.1f} p99 "
             f"{entry['idle']['p99_us']:8.1f} µs | spinning p50 {entry['noisy']['p50_us']:8.1f} "
             f"p99 {entry['noisy']['p99_us']:9.1f} µs (n={entry['noisy']['n']}) | p99 ×"
             f"{entry['p99_noisy_over_idle']:.2f}")
    out["threads_noisy_p99_over_beamish"] = (out["threads"]["noisy"]["p99_us"]
                                             / out["beamish"]["noisy"]["p99_us"])
    ratio = out["beamish"]["p99_noisy_over_idle"]
    out["target"] = {"what": f"beamish echo p99 with a spinning neighbour within "
                             f"{NOISY_TARGET:g}× its idle p99", "figure": ratio,
                     "limit": NOISY_TARGET, "met": ratio <= NOISY_TARGET}
    return out


# -- CPU-bound work -------------------------------------------------------------------------------
def _calibrate(work: int) -> float:
    """Seconds one work unit takes in this process (best of 3)."""
    best = math.inf
    for _ in range(3):
        t0 = time.perf_counter()
        agents.busy_loop(work)
        best = min(best, time.perf_counter() - t0)
    return best


def kill_leftovers(procs: Any, scenario: str, leftovers: list[dict[str, Any]]) -> None:
    """SIGKILL every process of ``procs`` still alive after a scenario's nodes stopped,
    and record it in ``leftovers`` (the report lists them: there should be none)."""
    for p in procs:
        if _alive(p):
            leftovers.append({"pid": p.pid, "cmdline": scenario})
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass  # it went in the meantime: what we wanted


def cpu_bound(h: Any, sizes: Any) -> dict[str, Any]:
    """N agents each doing pure-Python work: total work units per second."""
    n, work = sizes.cpu_agents, sizes.cpu_work
    unit_s = _calibrate(work)
    per_agent = max(10, math.ceil(sizes.cpu_target_s / unit_s))
    rts = {"beamish": h.node, "threads": h.threads}
    names: dict[str, list[str]] = {}
    for key, rt in rts.items():
        names[key] = [rt.spawn(agents.WORKER, name=h.name("work")).name for _ in range(n)]
    h.beamish_agents += n
    out: dict[str, Any] = {"agents": n, "work_per_unit": work,
                           "units_per_agent_per_round": per_agent,
                           "one_core_units_per_s": 1.0 / unit_s,
                           "how": "cast every unit to the agents round-robin, then call each for "
                                  "its count; time from the first cast to the last count; one "
                                  "untimed warm-up unit per agent first",
                           "loadavg_before": list(os.getloadavg())}
    rounds: dict[str, list[float]] = {k: [] for k in rts}
    keys = list(rts)
    kernel = kernel_threads_snapshot()
    for key in keys:  # warm-up, not timed: first messages, imports, caches
        rt, ns = rts[key], names[key]
        for x in ns:
            rt.cast(x, {"work": work})
        for x in ns:
            rt.call(x, "count", 600.0)
    for rep in range(sizes.cpu_repeats):
        shift = rep % len(keys)
        for key in keys[shift:] + keys[:shift]:
            rt, ns = rts[key], names[key]
            before = sum(rt.call(x, "count", CALL_TIMEOUT_S) for x in ns)
            t0 = time.perf_counter()
            for _ in range(per_agent):
                for x in ns:
                    rt.cast(x, {"work": work})
            after = sum(rt.call(x, "count", 600.0) for x in ns)
            seconds = time.perf_counter() - t0
            if after - before != per_agent * n:
                raise AssertionError(f"{key}: {per_agent * n} units sent, {after - before} done")
            rounds[key].append(per_agent * n / seconds)
    # Kernel threads that compete for the cores (on some VMs DAMON's kdamond takes a
    # good part of one after many processes came and went): said, not subtracted.
    out["kernel_threads_cpu"] = kernel_threads_cpu(kernel)
    for key, rates in rounds.items():
        out[key] = {"units_per_s": median(rates), "rounds_units_per_s": rates,
                    "speedup_over_one_core": median(rates) * unit_s}
        _log(f"[cpu] {key:8s} {n} agents: {median(rates):8.1f} units/s "
             f"({median(rates) * unit_s:.2f}× one core in this process)")
    out["beamish_over_threads"] = ratio = (out["beamish"]["units_per_s"]
                                           / out["threads"]["units_per_s"])
    rounds_ratio = [b / t for b, t in zip(rounds["beamish"], rounds["threads"], strict=True)]
    out["rounds_beamish_over_threads"] = rounds_ratio
    out["target"] = {"what": f"CPU-bound throughput with {n} agents at least "
                             f"{CPU_TARGET:g}× threads", "figure": ratio, "limit": CPU_TARGET,
                     "met": ratio >= CPU_TARGET}
    return out


# -- the fault matrix -----------------------------------------------------------------------------
# fault -> (the call that triggers it on beamish, limits on beamish)
FAULTS: dict[str, tuple[str | None, dict[str, float] | None]] = {
    "exception": ("raise", None),
    "os_exit": ("exit", None),
    "sigsegv": ("segv", None),
    "sigkill": (None, None),  # SIGKILL from outside, by this process
    "memory_bomb": ("bomb", {"memory_mb": 200}),
    "infinite_loop": ("spin", {"handler_timeout": 0.5}),
}


class _SurvivorLoad:
    """A background thread calling the survivor agents round-robin, recording every call."""

    def __init__(self, rt: Any, names: list[str], timeout: float = 5.0) -> None:
        self.rt, self.names, self.timeout = rt, names, timeout
        self.calls: list[tuple[float, int, str | None]] = []  # (start, ns, error type)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="survivors")

    def _run(self) -> None:
        clock = time.perf_counter_ns
        i = 0
        while not self._stop.is_set():
            name = self.names[i % len(self.names)]
            t0 = clock()
            err = None
            try:
                self.rt.call(name, {"seq": i}, self.timeout)
            except Exception as exc:  # noqa: BLE001 - counted
                err = type(exc).__name__
            self.calls.append((t0 / 1e9, clock() - t0, err))
            i += 1

    def __enter__(self) -> _SurvivorLoad:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(self.timeout + 5)

    def summary(self, start: float, end: float) -> dict[str, Any]:
        during = [c for c in self.calls if start <= c[0] <= end]
        before = [c for c in self.calls if c[0] < start]
        errors: dict[str, int] = {}
        for c in self.calls:
            if c[2]:
                errors[c[2]] = errors.get(c[2], 0) + 1
        return {"calls": len(self.calls), "failed": sum(errors.values()), "errors": errors,
                "before": latency_summary([c[1] for c in before]),
                "during": latency_summary([c[1] for c in during])}


def fault_trial(rt: Any, fault: str, trigger: Any, *, limits: Any = None, casts: int = 50,
                casts_during: int = 10, emit: Any = None, kill: Any = None,
                name_prefix: str = "", on_spawn: Any = None) -> dict[str, Any]:
    """One fault against one faulty agent while survivors are being called.

    ``trigger`` is the call that makes the agent fail (None: ``kill(pid)`` from outside).
    ``emit(event_dict)`` reports progress (the threads child prints it, so that a parent
    still knows how far it got if the whole process dies).

    ``recovery_ms`` runs from the last moment the faulty agent was alive (its last stamp
    before the fault, see `agents.Faulty`; for SIGKILL the kill) until it answered the
    next call: the restart itself, whatever detected the fault (a limit's poll, a
    handler timeout) and however many retries of the fatal message came before.
    """
    emit = emit or (lambda ev: None)
    stamp_fd, stamp_path = tempfile.mkstemp(prefix="bm-stamp-", dir="/tmp")
    os.close(stamp_fd)
    try:
        return _fault_trial(rt, fault, trigger, limits, casts, casts_during, emit, kill,
                            name_prefix, on_spawn, agents.new_stamp(stamp_path))
    finally:
        os.unlink(stamp_path)


def _fault_trial(rt: Any, fault: str, trigger: Any, limits: Any, casts: int,
                 casts_during: int, emit: Any, kill: Any, name_prefix: str, on_spawn: Any,
                 stamp: str) -> dict[str, Any]:
    if trigger is not None:
        trigger = ({**trigger, "stamp": stamp} if isinstance(trigger, dict)
                   else {"fault": trigger, "stamp": stamp})
    survivors = [rt.spawn(agents.ECHO, name=f"{name_prefix}surv{i}").name
                 for i in range(SURVIVORS)]
    kw = {"limits": limits} if limits is not None else {}
    faulty = rt.spawn(agents.FAULTY, name=f"{name_prefix}faulty", **kw).name
    if on_spawn:
        on_spawn(SURVIVORS + 1)
    for _ in range(casts):
        rt.cast(faulty, "incr")
    before = rt.call(faulty, "count", CALL_TIMEOUT_S)
    if before != casts:
        raise AssertionError(f"{casts} casts acknowledged, count {before}")
    emit({"event": "acked", "before": before})
    res: dict[str, Any] = {"acked_before": before}
    with _SurvivorLoad(rt, survivors) as load:
        time.sleep(0.3)  # a baseline for the survivors' latency
        fault_result: dict[str, Any] = {}

        def inject() -> None:
            t0 = time.perf_counter()
            try:
                fault_result["reply"] = rt.call(faulty, trigger, 120.0)
            except Exception as exc:  # noqa: BLE001 - what the caller saw is the figure
                fault_result["error"] = type(exc).__name__
                failure = getattr(exc, "failure", None)
                if failure is not None:
                    fault_result["failure_kind"] = failure.kind
                    fault_result["attempts"] = failure.attempt
            fault_result["seconds"] = time.perf_counter() - t0
            fault_result["returned_at"] = time.perf_counter()

        emit({"event": "injecting"})
        t_inject = time.perf_counter()
        injector = None
        t_killed = None
        if trigger is None:
            pid = rt.call(faulty, "pid", CALL_TIMEOUT_S)
            t_inject = time.perf_counter()
            t_killed = time.monotonic()
            kill(pid)
            fault_result["returned_at"] = time.perf_counter()
        else:
            injector = threading.Thread(target=inject, daemon=True)
            injector.start()
            time.sleep(0.01)
        acked_during = 0
        cast_errors: dict[str, int] = {}
        for _ in range(casts_during):
            try:
                rt.cast(faulty, "incr")
                acked_during += 1
            except Exception as exc:  # noqa: BLE001 - counted
                cast_errors[type(exc).__name__] = cast_errors.get(type(exc).__name__, 0) + 1
        # The next call is made now, while the fault is under way: it waits in the mailbox
        # behind the fault and the casts, and its reply is timed as it arrives, on a thread
        # of its own. Made after the fault call's error had come back, it also timed that
        # error's trip back to this process and the hand-offs between its threads.
        following: dict[str, Any] = {}

        def follow() -> None:
            try:
                following["answer"] = rt.call(faulty, "count", 150.0)
                following["at"] = (time.perf_counter(), time.monotonic())
            except Exception as exc:  # noqa: BLE001 - then the loop below calls again
                following["error"] = type(exc).__name__
        follower = threading.Thread(target=follow, daemon=True)
        follower.start()
        if injector is not None:
            injector.join(150.0)
        follower.join(160.0)
        t_ret = fault_result.get("returned_at", time.perf_counter())
        answer, t_answer, errors_before_answer = None, None, 0
        if "at" in following:
            answer, (t_answer, t_answer_mono) = following["answer"], following["at"]
        deadline = time.perf_counter() + 60.0
        while t_answer is None and time.perf_counter() < deadline:
            try:
                answer = rt.call(faulty, "count", 30.0)
                t_answer = time.perf_counter()
                t_answer_mono = time.monotonic()
                break
            except Exception:  # noqa: BLE001 - not back yet
                errors_before_answer += 1
                time.sleep(0.005)
        time.sleep(0.2)
        t_end = time.perf_counter()
    acked = before + acked_during
    t_dead = t_killed if t_killed is not None else agents.read_stamp(stamp)
    recovery = ((t_answer_mono - t_dead) * 1000 if t_answer is not None and t_dead is not None
                else None)
    if recovery is not None and hasattr(rt, "events"):  # beamish: its node's events
        assert t_dead is not None
        wall = time.time() - time.monotonic()
        res["phases_ms"] = restart_phases(rt.events(name=faulty), t_dead + wall,
                                          t_answer_mono + wall)
    res.update({
        "fault_call": {k: v for k, v in fault_result.items() if k != "returned_at"},
        "acked_during_fault": acked_during, "cast_errors_during_fault": cast_errors,
        "answered_again": t_answer is not None,
        "recovery_ms": recovery,
        "after_fault_call_ms": (t_answer - t_ret) * 1000 if t_answer else None,
        "agents": [*survivors, faulty],
        "downtime_ms": (t_answer - t_inject) * 1000 if t_answer else None,
        "count_after": answer,
        "state_kept": answer is not None and answer >= before,
        "messages_lost": (max(0, acked - answer) if answer is not None else acked),
        "calls_failed_before_answer": errors_before_answer,
        "survivors": load.summary(t_inject, t_answer or t_end),
    })
    emit({"event": "result", "result": res})
    return res


RESTART_TARGET_MS = 20.0  # target: each faulty agent answering again within 20 ms at p50
PHASES = ("exited", "restarted", "answered")


def restart_phases(events: list[Any], dead: float, answered: float) -> dict[str, float] | None:
    """*back in*, split by the node's events of the faulty agent (``time.time()`` clock;
    ``dead`` and ``answered`` on it too): from its death to its last ``exited`` event
    (the process's exit, its reap, the node's classification), from there to the
    ``restarted`` event that followed (the supervisor's decision, the fork, init or recover
    until the new process reported ready), and from there to the answer (ms). None when
    the events do not show one death and one restart in that span."""
    span = [e for e in events if dead - 0.001 <= e.time <= answered]
    exited = [e for e in span if e.kind == "exited"]
    if not exited:
        return None
    restarted = [e for e in span if e.kind == "restarted" and e.time >= exited[-1].time]
    if not restarted:
        return None
    t_exit, t_restart = exited[-1].time, restarted[0].time
    return {"exited": (t_exit - dead) * 1000, "restarted": (t_restart - t_exit) * 1000,
            "answered": (answered - t_restart) * 1000}


def _beamish_faults(h: Any, sizes: Any) -> dict[str, Any]:
    from beamish.runtime import Limits
    out: dict[str, Any] = {}
    for fault, (trigger, limits) in FAULTS.items():
        trials = []
        for _ in range(sizes.fault_trials):
            res = fault_trial(h.node, fault, trigger,
                              limits=Limits(**limits) if limits else None,
                              casts=sizes.fault_casts, name_prefix=h.name(f"f-{fault}") + "-",
                              kill=lambda pid: os.kill(pid, signal.SIGKILL))
            for name in res.pop("agents"):
                h.node.delete(name)  # the next trial finds a node of the same size
            trials.append(res)
        entry = _aggregate(trials)
        if limits:
            entry["limits"] = limits
        out[fault] = entry
        _log(f"[faults] beamish {fault:13s} survivors failed {entry['survivors']['failed']}"
             f"/{entry['survivors']['calls']}, back in p50 {_ms(entry['recovery_ms'])} "
             f"(trials {', '.join(_ms(t['recovery_ms']) for t in trials)}; down p50 "
             f"{_ms(entry['downtime_ms'])}), state kept {entry['state_kept']}, "
             f"lost {entry['messages_lost']}")
    return out


def _aggregate(trials: list[dict[str, Any]]) -> dict[str, Any]:
    """One fault's trials: medians of the times, totals of failures and losses."""
    def med(key: str) -> float | None:
        vals = [t[key] for t in trials if t.get(key) is not None]
        return median(vals) if len(vals) == len(trials) else None
    surv = [t["survivors"] for t in trials]
    return {
        "trials": trials, "n_trials": len(trials),
        "recovery_ms": med("recovery_ms"),
        "recovery_ms_trials": [t["recovery_ms"] for t in trials],
        "downtime_ms": med("downtime_ms"), "after_fault_call_ms": med("after_fault_call_ms"),
        "answered_again": all(t["answered_again"] for t in trials),
        "state_kept": all(t["state_kept"] for t in trials),
        "messages_lost": sum(t["messages_lost"] for t in trials),
        "phases_ms": _phase_medians(trials),
        "survivors": {"failed": sum(x["failed"] for x in surv),
                      "calls": sum(x["calls"] for x in surv),
                      "during": {"p99_us": median([x["during"]["p99_us"] for x in surv])}},
    }


def _phase_medians(trials: list[dict[str, Any]]) -> dict[str, float] | None:
    """The median of each phase of `restart_phases` over the trials that have them."""
    split = [t["phases_ms"] for t in trials if t.get("phases_ms")]
    if not split:
        return None
    return {p: median([x[p] for x in split]) for p in PHASES} | {"trials": len(split)}


def restart_target(beamish: dict[str, Any]) -> dict[str, Any]:
    """The restart target from the beamish fault results: every fault's p50 of
    *back in* within 20 ms; also the overall p50 over every trial."""
    per = {f: r["recovery_ms"] for f, r in beamish.items()}
    every = [v for r in beamish.values() for v in r["recovery_ms_trials"] if v is not None]
    never = sum(1 for r in beamish.values() for v in r["recovery_ms_trials"] if v is None)
    met = never == 0 and all(v is not None and v <= RESTART_TARGET_MS for v in per.values())
    clean = all(r["survivors"]["failed"] == 0 and r["messages_lost"] == 0 and r["state_kept"]
                for r in beamish.values())
    return {"target_ms": RESTART_TARGET_MS, "p50_ms_per_fault": per,
            "p50_ms_overall": median(every), "trials": len(every) + never,
            "never_answered": never, "met": met, "containment_met": clean}


def _ms(v: float | None) -> str:
    return "never" if v is None else f"{v:.1f} ms"


# The threads runtime's version of each fault, run in a subprocess (`._threads_child`).
THREAD_TRIGGERS: dict[str, Any] = {
    "exception": "raise", "os_exit": "exit", "sigsegv": "segv", "sigkill": None,
    "memory_bomb": "bomb", "infinite_loop": "bounded-spin",
}


def _child_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", f"{__package__}._threads_child", *args]


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p or os.getcwd() for p in sys.path)
    return env


def run_child(args: list[str], on_event: Any = None, timeout: float = 120.0) -> dict[str, Any]:
    """Run a threads-runtime child; return its events, return code and how long it ran.
    ``on_event(event, proc)`` sees every event line as it arrives."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(_child_cmd(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=_child_env())
    events: list[dict[str, Any]] = []
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            events.append(ev)
            if on_event:
                on_event(ev, proc)
        rc = proc.wait()
    finally:
        timer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = proc.stderr.read() if proc.stderr else ""
    return {"events": events, "returncode": rc, "seconds": time.perf_counter() - t0,
            "stderr_tail": stderr[-400:]}


def _threads_fault(fault: str, sizes: Any) -> dict[str, Any]:
    def on_event(ev: dict[str, Any], proc: subprocess.Popen[str]) -> None:
        if ev.get("event") == "kill_me":
            os.kill(proc.pid, signal.SIGKILL)

    run = run_child(["fault", fault, str(sizes.fault_casts), str(sizes.thread_spin_s)],
                    on_event)
    result = next((e["result"] for e in run["events"] if e.get("event") == "result"), None)
    rc = run["returncode"]
    if result is not None and rc == 0:
        result["process_died"] = False
        for ev in run["events"]:
            if ev.get("event") == "note":
                result.setdefault("notes", []).append(ev["text"])
        return result
    acked = next((e["before"] for e in run["events"] if e.get("event") == "acked"), 0)
    injected = any(e.get("event") == "injecting" for e in run["events"])
    return {"process_died": True, "returncode": rc,
            "signal": signal.Signals(-rc).name if rc < 0 else None,
            "injected": injected, "acked_before": acked,
            "answered_again": False, "recovery_ms": None, "downtime_ms": None,
            "state_kept": False, "messages_lost": acked,
            "survivors": {"failed": "all (process gone)", "calls": None},
            "child_seconds": run["seconds"], "stderr_tail": run["stderr_tail"]}


def fault_matrix(h: Any, sizes: Any) -> dict[str, Any]:
    """Each fault on beamish (in the harness's node) and on threads (in a subprocess)."""
    out: dict[str, Any] = {"beamish": _beamish_faults(h, sizes), "threads": {},
                           "survivor_agents": SURVIVORS, "casts_before_fault": sizes.fault_casts,
                           "trials_per_fault": sizes.fault_trials,
                           "thread_spin_s": sizes.thread_spin_s}
    out["restart_target"] = target = restart_target(out["beamish"])
    _log(f"[faults] beamish back in p50 over {target['trials']} trials "
         f"{target['p50_ms_overall']:.1f} ms; worst fault p50 "
         f"{max(v or math.inf for v in target['p50_ms_per_fault'].values()):.1f} ms "
         f"(target {RESTART_TARGET_MS:g} ms: {'met' if target['met'] else 'MISSED'})")
    for fault in FAULTS:
        res = _threads_fault(fault, sizes)
        out["threads"][fault] = res
        if res.get("process_died"):
            _log(f"[faults] threads {fault:13s} PROCESS DIED (rc {res['returncode']}"
                 f"{', ' + res['signal'] if res.get('signal') else ''}): every agent and "
                 f"{res['messages_lost']} acknowledged casts gone")
        else:
            _log(f"[faults] threads {fault:13s} survivors failed {res['survivors']['failed']}"
                 f"/{res['survivors']['calls']} (p99 during {res['survivors']['during']['p99_us']:.0f}"
                 f" µs), back in {_ms(res['recovery_ms'])} (down {_ms(res['downtime_ms'])}), "
                 f"state kept {res['state_kept']}, lost {res['messages_lost']}")
    return out


# -- whole-node kill -9 ---------------------------------------------------------------------------
def _tree_pids(pid: int) -> list[psutil.Process]:
    try:
        p = psutil.Process(pid)
        return [p, *p.children(recursive=True)]
    except psutil.Error:
        return []


def kill9(h: Any, sizes: Any) -> dict[str, Any]:
    """Cast under load, SIGKILL the whole node, start it again on the same dir: are the
    acknowledged casts all there?"""
    from beamish.runtime import start_node
    out: dict[str, Any] = {"beamish": _kill9_beamish(start_node, h, sizes)}
    out["threads"] = _kill9_threads(sizes)
    return out


def _kill9_beamish(start_node: Any, h: Any, sizes: Any) -> dict[str, Any]:
    base = tempfile.mkdtemp(prefix="bm-k9-", dir="/tmp")
    d = os.path.join(base, "n")
    nodes: list[Any] = []
    seen: list[psutil.Process] = []
    res: dict[str, Any] = {"target_acked": sizes.kill9_casts}
    try:
        node = start_node(d, durability=h.durability)
        nodes.append(node)
        node.spawn(agents.COUNTER, name="k9")
        acked = [0]
        stop = threading.Event()
        errors: list[str] = []

        def sender() -> None:
            while not stop.is_set():
                try:
                    node.cast("k9", {"seq": acked[0]})
                except Exception as exc:  # noqa: BLE001 - the node is gone
                    errors.append(type(exc).__name__)
                    return
                acked[0] += 1

        t = threading.Thread(target=sender, daemon=True)
        t.start()
        deadline = time.perf_counter() + 60
        while acked[0] < sizes.kill9_casts and t.is_alive() and time.perf_counter() < deadline:
            time.sleep(0.002)
        seen = _tree_pids(node.pid)
        res["processes_before_kill"] = len(seen)
        os.kill(node.pid, signal.SIGKILL)
        t_kill = time.perf_counter()
        acked_at_kill = acked[0]
        # Agents die with their node: wait (bounded) for every process of the old tree,
        # while the sender goes on casting.
        gone_by = t_kill + 10
        alive = seen
        while time.perf_counter() < gone_by:
            alive = [p for p in seen if _alive(p)]
            if not alive:
                break
            time.sleep(0.002)
        res["orphans_after_kill"] = len(alive)
        res["all_gone_ms"] = (time.perf_counter() - t_kill) * 1000 if not alive else None
        time.sleep(max(0.0, t_kill + 0.5 - time.perf_counter()))
        stop.set()  # the sender stops 0.5 s after the kill, if no cast failed first
        t.join(30)
        res["acked"] = acked[0]
        res["acked_at_kill"] = acked_at_kill
        res["acked_after_kill"] = acked[0] - acked_at_kill
        res["sender_error"] = errors[0] if errors else None
        try:
            node.close()  # only this process's sockets: its daemon is dead
        except Exception as exc:  # noqa: BLE001 - the scenario goes on
            _log(f"[kill9] closing the killed node's connection: {type(exc).__name__}: {exc}")
        nodes.remove(node)
        t0 = time.perf_counter()
        node2 = start_node(d, durability=h.durability)
        nodes.append(node2)
        res["restart_s"] = time.perf_counter() - t0
        count = None
        deadline = time.perf_counter() + 60
        while time.perf_counter() < deadline:
            try:
                count = node2.call("k9", "count", 30.0)
                break
            except Exception:  # noqa: BLE001 - not back yet
                time.sleep(0.01)
        res["answer_after_restart_s"] = time.perf_counter() - t0
        res["count_after_restart"] = count
        res["lost"] = max(0, acked[0] - count) if count is not None else acked[0]
        res["extra_unacknowledged"] = max(0, count - acked[0]) if count is not None else 0
        _log(f"[kill9] beamish: {acked_at_kill} casts acknowledged, SIGKILL, "
             f"{res['orphans_after_kill']} orphans (all gone in {_ms(res['all_gone_ms'])}); "
             f"{res['acked_after_kill']} more acknowledged in the 0.5 s after the kill "
             f"(sender error: {res['sender_error']}); restarted in {res['restart_s']:.2f} s; count {count} -> lost "
             f"{res['lost']}")
    finally:
        for n in nodes:
            seen += _tree_pids(n.pid)
            try:
                n.shutdown()
            except Exception as exc:  # noqa: BLE001 - its processes are reaped below
                _log(f"[kill9] a node did not shut down: {type(exc).__name__}: {exc}")
        kill_leftovers(seen, "kill9 scenario", h.leftovers)
        import shutil
        shutil.rmtree(base, ignore_errors=True)
    return res


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _kill9_threads(sizes: Any) -> dict[str, Any]:
    acked = [0]

    def on_event(ev: dict[str, Any], proc: subprocess.Popen[str]) -> None:
        if ev.get("event") == "acked":
            acked[0] = ev["n"]
            if ev["n"] >= sizes.kill9_casts:
                os.kill(proc.pid, signal.SIGKILL)

    first = run_child(["kill9-load"], on_event)
    second = run_child(["kill9-restart"])
    count = next((e["count"] for e in second["events"] if e.get("event") == "count"), None)
    res = {"acked": acked[0], "returncode": first["returncode"],
           "count_after_restart": count,
           "lost": acked[0] - count if count is not None else acked[0],
           "how": "a threads runtime in a subprocess casts to a Counter, reporting each "
                  "acknowledged cast; the subprocess is SIGKILLed; a new subprocess starts "
                  "the threads runtime and the same Counter and asks its count"}
    _log(f"[kill9] threads: {acked[0]} casts acknowledged, SIGKILL (rc {first['returncode']}); "
         f"count after restart {count} -> lost {res['lost']}")
    return res
