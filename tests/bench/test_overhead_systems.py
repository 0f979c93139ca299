"""bench.overhead.overhead_benchmark's systems: FusionServe with only the bundle and the
intra-op threads set, the peers started exactly as the peer benchmark starts them (both through
bench.harness.servers.peer_command), the floor from this suite."""

from __future__ import annotations

from pathlib import Path

from bench.harness.servers import SystemSpec
from bench.overhead.overhead_benchmark import DEFAULT_SYSTEMS, system_specs
from bench.peers.systems import SYSTEMS as PEER_SYSTEMS

BUNDLE = Path("/tmp/tiny")


def test_every_system_serves_the_tiny_bundle_with_one_intra_op_thread() -> None:
    specs = system_specs(BUNDLE, 9000)
    assert list(specs) == list(DEFAULT_SYSTEMS)
    for spec in specs.values():
        assert spec.env == {
            "FUSIONSERVE_BUNDLE_PATH": str(BUNDLE),
            "FUSIONSERVE_INTRA_OP_THREADS": "1",
        }
    assert len({spec.port for spec in specs.values()}) == len(specs)


def test_fusionserve_is_fusionserve_serve_with_default_settings() -> None:
    spec = system_specs(BUNDLE, 9000)["fusionserve"]
    assert type(spec) is SystemSpec
    assert spec.command()[1:] == ["-m", "app", "serve", "--host", "127.0.0.1", "--port", "9000"]


def _command(spec: SystemSpec) -> list[str]:
    """The spec's command with its port as ``PORT``."""
    return ["PORT" if word == str(spec.port) else word for word in spec.command()]


def test_the_peers_start_as_in_the_peer_benchmark() -> None:
    ours = system_specs(BUNDLE, 9000)
    theirs = {spec.name: spec for spec in PEER_SYSTEMS.values()}
    for name in ("litserve", "bentoml", "ray"):
        assert ours[name].venv == theirs[name].venv == name
        assert _command(ours[name]) == _command(theirs[name])
        assert ours[name].start_timeout_s == theirs[name].start_timeout_s


def test_the_floor_runs_this_suites_module_in_the_main_environment() -> None:
    floor = system_specs(BUNDLE, 9000)["floor"]
    assert floor.venv is None
    assert floor.command()[1:] == ["-m", "bench.overhead.asgi_floor", "--port", "9004"]
