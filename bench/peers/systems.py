"""The peer benchmark's systems: FusionServe with and without batching, and the three peer
frameworks, each started from its own virtual environment (bench/harness/venvs.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.harness.paths import REPO_ROOT
from bench.harness.servers import SystemSpec, peer_command


@dataclass(frozen=True)
class PeerSpec(SystemSpec):
    """A peer framework's server: this package's module for it, in the framework's venv."""

    def command(self) -> list[str]:
        return peer_command(self.name, self.python(), self.port)


SYSTEMS: dict[str, SystemSpec] = {
    s.key: s
    for s in (
        SystemSpec("a", "fusionserve", "FusionServe (batching)", 8101),
        SystemSpec(
            "b",
            "fusionserve-nobatch",
            "FusionServe (max_batch_size=1)",
            8102,
            env={"FUSIONSERVE_MAX_BATCH_SIZE": "1"},
        ),
        SystemSpec(
            "w",
            "fusionserve-2workers",
            "FusionServe (batching, 2 worker processes)",
            8107,
            env={"FUSIONSERVE_WORKERS": "2"},
        ),
        PeerSpec("d", "litserve", "LitServe 0.2.19", 8103, venv="litserve"),
        PeerSpec("e", "bentoml", "BentoML 1.4.30", 8104, venv="bentoml"),
        PeerSpec("f", "ray", "Ray Serve 2.60", 8105, venv="ray", start_timeout_s=180.0),
    )
}


BASELINE = "z"


def baseline_spec(root: Path) -> SystemSpec:
    """FusionServe (batching) as checked out at ``root`` (a git worktree of another commit),
    serving this checkout's default bundle: to compare two versions in one run."""
    bundle = REPO_ROOT / "models" / "default"
    return SystemSpec(
        BASELINE,
        "fusionserve-baseline",
        f"FusionServe (batching) at {root.name}",
        8106,
        env={"FUSIONSERVE_BUNDLE_PATH": str(bundle)},
        root=root,
    )
