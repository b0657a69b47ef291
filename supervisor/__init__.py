"""beamish.supervisor: OTP supervision as a pure core with a thin threaded shell.

Layering: this package is a leaf. It imports the stdlib only (no zmq, no lmdb, no
os.fork); ``beamish.runtime`` wires it to processes through the :class:`Spawner`
protocol. Inside, ``_spec``, ``_restarts`` and ``_policy`` are pure; ``_clock`` and
``_supervisor`` are the only modules with threads. Test doubles live in
``beamish.supervisor.testing``.

How the runtime uses it::

    class ProcessSpawner:                      # implements Spawner
        def start_child(self, sup_id, spec):   # fork the agent, wait for init; StartFailed if it fails
            return handle                      # unique per incarnation, e.g. (pid, start_time)
        def terminate_child(self, sup_id, spec, handle):  # SIGTERM, wait spec.shutdown, SIGKILL
            return ExitReason.shutdown()       # judged from the OS (pidfd/waitpid)

    root = Supervisor(SupervisorSpec("root", per_child_intensity=True), spawner,
                      on_event=report, on_exit=stop_node)
    root.start()
    root.add_child(SupervisorSpec("workers", Strategy.ONE_FOR_ALL))      # node.add_supervisor
    workers = root.find("workers")
    handle = workers.add_child(ChildSpec("c1", restart=RestartType.TRANSIENT, shutdown=5.0))
    workers.child_exited("c1", handle, ExitReason.from_returncode(-9))  # from the reaper thread
    handle = workers.release_child("c1")     # a session falls asleep (no exit, nothing counted)
    workers.adopt_child(spec, new_handle)     # ...and, its new process started, wakes
    workers.remove_child("c1")   # node.stop; restart_child("c1"): node.restart; root.snapshot(): node.tree
    root.shutdown()          # reverse start order, the whole tree

The public surface is exactly what this module re-exports.
"""

from ._clock import Clock as Clock
from ._clock import MonotonicClock as MonotonicClock
from ._clock import TimerHandle as TimerHandle
from ._errors import AlreadyPresent as AlreadyPresent
from ._errors import AlreadyStarted as AlreadyStarted
from ._errors import ChildNotRunning as ChildNotRunning
from ._errors import InvalidSpec as InvalidSpec
from ._errors import NotFound as NotFound
from ._errors import NotRunning as NotRunning
from ._errors import Running as Running
from ._errors import StartFailed as StartFailed
from ._errors import SupervisorError as SupervisorError
from ._policy import INTENSITY_REASON as INTENSITY_REASON
from ._policy import Action as Action
from ._policy import AddChild as AddChild
from ._policy import AdoptChild as AdoptChild
from ._policy import BackoffElapsed as BackoffElapsed
from ._policy import Boot as Boot
from ._policy import ChildExited as ChildExited
from ._policy import ChildHistory as ChildHistory
from ._policy import Children as Children
from ._policy import ChildStarted as ChildStarted
from ._policy import ChildState as ChildState
from ._policy import ChildStatus as ChildStatus
from ._policy import Escalate as Escalate
from ._policy import Event as Event
from ._policy import Forget as Forget
from ._policy import Halt as Halt
from ._policy import MarkFailed as MarkFailed
from ._policy import Outcome as Outcome
from ._policy import Release as Release
from ._policy import ReleaseChild as ReleaseChild
from ._policy import RemoveChild as RemoveChild
from ._policy import RestartChild as RestartChild
from ._policy import Retry as Retry
from ._policy import RetryRestart as RetryRestart
from ._policy import ShutdownSelf as ShutdownSelf
from ._policy import Start as Start
from ._policy import StartAfter as StartAfter
from ._policy import StartError as StartError
from ._policy import SupervisorState as SupervisorState
from ._policy import Terminate as Terminate
from ._policy import adoption_error as adoption_error
from ._policy import backoff_delay as backoff_delay
from ._policy import decide as decide
from ._reason import ExitKind as ExitKind
from ._reason import ExitReason as ExitReason
from ._restarts import RestartLog as RestartLog
from ._spec import BRUTAL_KILL as BRUTAL_KILL
from ._spec import DEFAULT_AGENT_SHUTDOWN as DEFAULT_AGENT_SHUTDOWN
from ._spec import INFINITY as INFINITY
from ._spec import ChildKind as ChildKind
from ._spec import ChildSpec as ChildSpec
from ._spec import RestartType as RestartType
from ._spec import Shutdown as Shutdown
from ._spec import Strategy as Strategy
from ._spec import SupervisorSpec as SupervisorSpec
from ._spec import check_child_specs as check_child_specs
from ._supervisor import ChildSnapshot as ChildSnapshot
from ._supervisor import EventKind as EventKind
from ._supervisor import OnEvent as OnEvent
from ._supervisor import Spawner as Spawner
from ._supervisor import SubtreeHandle as SubtreeHandle
from ._supervisor import Supervisor as Supervisor
from ._supervisor import SupervisorSnapshot as SupervisorSnapshot

__all__ = [
    "BRUTAL_KILL",
    "DEFAULT_AGENT_SHUTDOWN",
    "INFINITY",
    "INTENSITY_REASON",
    "Action",
    "AddChild",
    "AdoptChild",
    "AlreadyPresent",
    "AlreadyStarted",
    "BackoffElapsed",
    "Boot",
    "ChildExited",
    "ChildHistory",
    "ChildNotRunning",
    "ChildKind",
    "ChildSnapshot",
    "ChildSpec",
    "ChildStarted",
    "ChildState",
    "ChildStatus",
    "Children",
    "Clock",
    "Escalate",
    "Event",
    "EventKind",
    "ExitKind",
    "ExitReason",
    "Forget",
    "Halt",
    "InvalidSpec",
    "MarkFailed",
    "MonotonicClock",
    "NotFound",
    "NotRunning",
    "OnEvent",
    "Outcome",
    "Release",
    "ReleaseChild",
    "RemoveChild",
    "RestartChild",
    "RestartLog",
    "RestartType",
    "Retry",
    "RetryRestart",
    "Running",
    "Shutdown",
    "ShutdownSelf",
    "Spawner",
    "Start",
    "StartAfter",
    "StartError",
    "StartFailed",
    "Strategy",
    "SubtreeHandle",
    "Supervisor",
    "SupervisorError",
    "SupervisorSnapshot",
    "SupervisorSpec",
    "SupervisorState",
    "Terminate",
    "TimerHandle",
    "adoption_error",
    "backoff_delay",
    "check_child_specs",
    "decide",
]
