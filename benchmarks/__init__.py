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

Layout: `._scenarios` (the measurements and the `Harness` that owns every process and
node of a run), `.threads_runtime` (the baseline), `._raw` (the floor), `.agents` (the
Agent classes both runtimes run; they are named by paths computed from ``__name__`` so
they resolve as ``benchmarks.agents`` and as ``beamish.benchmarks.agents``), `._stats`.
Imports inside this package are relative for the same reason.
"""
