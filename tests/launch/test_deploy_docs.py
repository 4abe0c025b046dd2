"""docs/deploy-pi.md stays true: its aarch64 wheel table lists every runtime dependency
of pyproject.toml, and its example drone config is one the agent accepts."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from swarm.agent.config import parse_config
from swarm.deploy.init_drone import DroneSetup, render_config

ROOT = Path(__file__).resolve().parents[2]
GUIDE = (ROOT / "docs" / "deploy-pi.md").read_text()


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_runtime_dependency_has_a_checked_aarch64_wheel_row() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_normalise(re.split(r"[<>=!~; \[]", spec, maxsplit=1)[0])
              for spec in project["dependencies"]}
    table = GUIDE.split("| dependency | wheel | kind |", 1)[1].split("\n\n", 1)[0]
    rows = {_normalise(line.split("|")[1].strip()) for line in table.splitlines()[2:]
            if line.startswith("|")}
    missing = sorted(wanted - rows)
    assert not missing, (
        f"docs/deploy-pi.md has no aarch64 wheel row for {missing}: run the pip download "
        "check in its 'Dependencies' section for them and add the rows")
    # ... and the documented check command names every one of them too.
    command = GUIDE.split("pip download --only-binary=:all:", 1)[1].split("```", 1)[0]
    named = {_normalise(re.split(r"[<>=!~]", word.strip("'\\"), maxsplit=1)[0])
             for word in command.split() if word.startswith("'")}
    assert wanted <= named, sorted(wanted - named)


def test_the_example_drone_config_is_accepted_by_the_agent() -> None:
    example = GUIDE.split("`/etc/wildfire-swarm/drone.toml`", 1)[1]
    toml = example.split("```toml\n", 1)[1].split("```", 1)[0]
    config = parse_config(tomllib.loads(toml), base=Path("/etc/wildfire-swarm"))
    assert config.node.id == 3
    assert config.node.data_dir == Path("/var/lib/wildfire-swarm/drone-3")
    assert config.swarm.key_file == Path("/etc/wildfire-swarm/swarm.key")


def test_the_guide_shows_what_init_drone_writes_for_its_command() -> None:
    example = GUIDE.split("`/etc/wildfire-swarm/drone.toml`", 1)[1]
    shown = tomllib.loads(example.split("```toml\n", 1)[1].split("```", 1)[0])
    assert "swarm init-drone --id 3 --swarm wildfire --voters 1-5" in GUIDE
    written = tomllib.loads(render_config(DroneSetup(
        node_id=3, swarm="wildfire", voters=(1, 2, 3, 4, 5),
        brokers=("mqtts://ground.local:8883",))))
    for section, values in shown.items():
        for key, value in values.items():
            assert written[section][key] == value, f"[{section}] {key}"
