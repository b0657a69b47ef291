"""beamish benchmarks: beamish versus plain threads, side by side, in one run.

Run ``python -m benchmarks [--quick] [--out DIR] [--scenarios call,cast,spawn]`` from a
checkout, or ``beamish bench [--quick]`` from an installed package.

- ``call``: round trip of one call to one idle agent, p50/p99: beamish, the
  plain-threads runtime (`benchmarks.threads_runtime`), and the floor, a raw pyzmq
  DEALER <-> ROUTER round trip to a forked echo process on ipc://; the same for an
  ``async def`` handler. The contenders alternate in blocks.
- ``cast``: casts per second from one sender to 1 agent and to 10 (quick) / 100 (full),
  timed until a call to each agent returns its count, and the p99 of ``cast()`` itself.
- ``spawn``: time to spawn N agents and get one reply from each (100; full also 1,000),
  and USS/RSS/PSS per idle beamish agent process (psutil ``memory_full_info``).
- ``noisy``: echo call p50/p99 idle, then while another agent spins the CPU in pure Python
  (a cast starts the spin); the ratio spinning/idle per runtime.
- ``cpu``: 2 agents each doing pure-Python work units; total units/s, beamish / threads.
- ``faults``: exception, ``os._exit(3)``, SIGSEGV (ctypes), SIGKILL from outside, a memory
  bomb (``Limits(memory_mb=200)``), an infinite loop (``Limits(handler_timeout=0.5)``),
  while survivors are called in a loop: survivors' failed calls, time until the faulty
  agent answers again, state kept, acknowledged casts lost. The threads runtime runs each
  fault in a subprocess (`._threads_child`): a process that dies is reported as such.
- ``kill9``: SIGKILL the whole node under cast load, start it again on the same dir, and
  compare the count with the acknowledged casts (threads: a SIGKILLed subprocess).

Besides ``results.json``, a run writes ``REPORT.md`` (the table) with PNG charts (call
latency, noisy-neighbour p99, CPU-bound throughput, fault recovery, durable casts) when
matplotlib is importable; ``--report-from results.json`` writes them again from its figures.

Layout: `._scenarios` (the first three measurements and the `Harness` that owns every
process and node of a run), `._isolation` (noisy, cpu, faults, kill9; kill9 starts and
stops its own node in a ``finally``), `._threads_child` (the threads runtime in a
subprocess), `._report` (REPORT.md and its charts), `.threads_runtime` (the baseline),
`._raw` (the floor), `.agents` (the Agent classes both runtimes run; they are named by
paths computed from ``__name__`` so they resolve as ``benchmarks.agents`` and as
``beamish.benchmarks.agents``), `._stats`.
Imports inside this package are relative for the same reason.
"""
