"""Hypothesis strategies shared by the unit tests (one module, like attrs' tests/strategies.py)."""

from __future__ import annotations

from hypothesis import strategies as st

from beamish.supervisor import ChildSpec, ExitReason, RestartType, Strategy, SupervisorSpec

restart_types = st.sampled_from(list(RestartType))
exit_reasons = st.sampled_from([ExitReason.normal(), ExitReason.shutdown(), ExitReason.abnormal("crash")])
backoffs = st.none() | st.tuples(st.floats(0.01, 1.0), st.floats(1.0, 5.0))
child_ids = st.integers(0, 5).map(lambda i: f"c{i}")


@st.composite
def child_specs(draw: st.DrawFn, id: str) -> ChildSpec:
    """A child spec named ``id`` with a random restart type and maybe a backoff."""
    return ChildSpec(id, restart=draw(restart_types), backoff=draw(st.none() | backoffs))


@st.composite
def supervisor_specs(draw: st.DrawFn) -> SupervisorSpec:
    """A supervisor spec: any strategy, 2-5 static children (or a template for
    simple_one_for_one), small intensity, maybe per-child intensity and backoff."""
    strategy = draw(st.sampled_from(list(Strategy)))
    template = None
    if strategy is Strategy.SIMPLE_ONE_FOR_ONE:
        template, children = draw(child_specs("template")), ()
    else:
        children = tuple(draw(child_specs(f"c{i}")) for i in range(draw(st.integers(2, 5))))
    per_child_ok = strategy in (Strategy.ONE_FOR_ONE, Strategy.SIMPLE_ONE_FOR_ONE)
    return SupervisorSpec(
        "s",
        strategy,
        max_restarts=draw(st.integers(0, 4)),
        max_seconds=draw(st.sampled_from([0.5, 1.0, 5.0])),
        per_child_intensity=draw(st.booleans()) if per_child_ok else False,
        backoff=draw(st.none() | backoffs),
        template=template,
        children=children,
    )


commands = st.lists(
    st.one_of(
        st.tuples(st.just("exit"), child_ids, exit_reasons),
        st.tuples(st.just("exit"), child_ids, exit_reasons),  # twice: exits are the interesting part
        st.tuples(st.just("add"), child_ids, restart_types),
        st.tuples(st.just("remove"), child_ids),
        st.tuples(st.just("restart_child"), child_ids),
        st.tuples(st.just("escalate"), child_ids),
        st.tuples(st.just("advance"), st.sampled_from([0.0, 0.05, 0.3, 1.0, 6.0])),
        st.tuples(st.just("halt")),
        st.tuples(st.just("boot")),
    ),
    min_size=1,
    max_size=40,
)
"""User and OS commands for a model run of decide()."""

start_outcomes = st.lists(st.sampled_from([True, True, True, True, False]), min_size=1, max_size=12)
"""Whether each start succeeds (used cyclically); mostly they do."""
