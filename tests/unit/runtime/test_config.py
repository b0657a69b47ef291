"""Config files are validated whole before anything starts."""

from __future__ import annotations

import pytest

from beamish.runtime import ConfigError
from beamish.runtime.node.config import load_config, parse_config

GOOD = """
[node]
durability = "fsync"

[[supervisor]]
name = "workers"
strategy = "one_for_all"

[[agent]]
name = "counter"
class = "app.agents:Counter"
supervisor = "workers"
args = { start = 0 }
limits = { memory_mb = 512, handler_timeout = 30 }
"""


def test_a_good_file(tmp_path):
    path = tmp_path / "beamish.toml"
    path.write_text(GOOD)
    config = load_config(str(path))
    assert config.node.durability == "fsync"
    assert config.agent[0].cls == "app.agents:Counter"
    assert config.agent[0].limits.memory_mb == 512


@pytest.mark.parametrize("data, field, given", [
    ({"node": {"durability": "disk"}}, "node.durability", "'disk'"),
    ({"agent": [{"name": "a", "class": "nocolon"}]}, "agent.0.class", "'nocolon'"),
    ({"agent": [{"name": "a", "class": "m:C", "restart": "often"}]}, "agent.0.restart",
     "'often'"),
    ({"agent": [{"name": "a", "class": "m:C", "limits": {"memory_mb": -1}}]},
     "agent.0.limits.memory_mb", "-1"),
    ({"agent": [{"name": "a", "class": "m:C", "colour": "red"}]}, "agent.0.colour", "'red'"),
    ({"supervisor": [{"name": "s", "strategy": "all_for_none"}]}, "supervisor.0.strategy",
     "'all_for_none'"),
])
def test_bad_values_name_the_field_and_the_value(data, field, given):
    with pytest.raises(ConfigError) as err:
        parse_config(data)
    assert field in str(err.value) and given in str(err.value)
    assert "nothing was started" in str(err.value)


def test_tree_references_are_checked():
    with pytest.raises(ConfigError, match="agent\\[0\\].supervisor: 'ghost'"):
        parse_config({"agent": [{"name": "a", "class": "m:C", "supervisor": "ghost"}]})
    with pytest.raises(ConfigError, match="used twice"):
        parse_config({"agent": [{"name": "a", "class": "m:C"}, {"name": "a", "class": "m:C"}]})


def test_unreadable_and_non_toml_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(str(tmp_path / "missing.toml"))
    bad = tmp_path / "bad.toml"
    bad.write_text("[node\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(str(bad))
