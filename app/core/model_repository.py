"""Triton's model repository extension over the registry: list the bundles of a repository
directory, load one by name, unload one by name. HTTP (``app.oip.repository_routes``) and gRPC
(``app.oip_grpc.servicer``) are thin adapters over ``ModelRepository``.

The repository is ``settings.model_repository``: its direct subdirectories that hold a
``manifest.json`` are its bundles, named by their manifests (the names the service serves
under). A name is looked up among those manifests, never joined to a path, and a name that is
not a plain name is refused; a subdirectory that resolves outside the repository (a symbolic
link) is not one of its bundles. Loading a name already served reloads it in place
(``ModelRegistry.reload``); unloading answers the requests holding the bundle first.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from app.bundle.loader import read_manifest
from app.bundle.manifest import MANIFEST_FILENAME
from app.core.registry import ModelRegistry, ModelStatus
from app.errors import (
    FusionServeError,
    InvalidModelName,
    LoadFailed,
    ModelNotFound,
    RepositoryDisabled,
    quoted_name,
)

logger = logging.getLogger(__name__)

_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}")


@dataclass(frozen=True)
class IndexEntry:
    """One model of the index, in Triton's terms: ``state`` READY, LOADING, UNAVAILABLE."""

    name: str
    version: str
    state: str
    reason: str


_STATES = {
    ModelStatus.READY: "READY",
    ModelStatus.LOADING: "LOADING",
    ModelStatus.FAILED: "UNAVAILABLE",
    ModelStatus.UNLOADED: "UNAVAILABLE",
}


class ModelRepository:
    """Load and unload the bundles of ``root`` by name (``root`` None: the extension is off,
    and so it is in a worker of several, whose bundles the other workers could not follow)."""

    def __init__(self, registry: ModelRegistry, root: Path | None, several_workers: bool) -> None:
        self._registry = registry
        self._root = None if root is None else root.expanduser().resolve()
        self._several_workers = several_workers

    def index(self, ready_only: bool = False) -> list[IndexEntry]:
        """The served bundles, then the repository's other bundles (UNAVAILABLE)."""
        entries = []
        served = set()
        for slot in self._registry.slots:
            served.add(slot.name)
            runner = slot.runner
            version = "" if runner is None else runner.engine.bundle.manifest.version
            entries.append(IndexEntry(slot.name, version, _STATES[slot.status], slot.error or ""))
        if self._root is not None:
            for name, (_, version) in sorted(self._bundles().items()):
                if name not in served:
                    entries.append(IndexEntry(name, version, "UNAVAILABLE", "not loaded"))
        return [e for e in entries if e.state == "READY"] if ready_only else entries

    async def load(self, name: str) -> str:
        """Serve bundle ``name`` of the repository (reload it if served); its version."""
        self._check(name)
        found = self._bundles().get(name)
        if found is None:
            raise ModelNotFound(f"the model repository has no model named {quoted_name(name)}")
        path, _ = found
        registry = self._registry
        if name in {slot.name for slot in registry.slots}:
            return (await registry.reload(name)).version
        try:
            slot = await registry.add(path)
        except FusionServeError as exc:
            raise LoadFailed(f"model {quoted_name(name)} could not be loaded: {exc}") from None
        except Exception as exc:  # ONNX Runtime's and the bundle's own errors
            logger.exception("loading %s failed", name)
            raise LoadFailed(f"model {quoted_name(name)} could not be loaded: {exc}") from None
        runner = slot.runner
        return "" if runner is None else runner.engine.bundle.manifest.version

    async def unload(self, name: str) -> int:
        """Stop serving ``name`` once the requests holding it are answered; how many were."""
        self._check(name)
        return await self._registry.unload(name)

    def _check(self, name: str) -> None:
        if self._root is None:
            raise RepositoryDisabled(
                "loading and unloading models is off: set FUSIONSERVE_MODEL_REPOSITORY"
            )
        if self._several_workers:
            raise RepositoryDisabled(
                "loading and unloading models needs one worker process (FUSIONSERVE_WORKERS=1)"
            )
        if not _PLAIN_NAME.fullmatch(name) or name in (".", ".."):
            raise InvalidModelName("a model name is letters, digits, '_', '.' and '-'")

    def _bundles(self) -> dict[str, tuple[Path, str]]:
        """The repository's bundles by manifest name: (directory, version)."""
        assert self._root is not None
        found: dict[str, tuple[Path, str]] = {}
        if not self._root.is_dir():
            return found
        for child in sorted(self._root.iterdir()):
            resolved = child.resolve()
            if not resolved.is_dir() or resolved.parent != self._root:
                continue  # a file, or a link to somewhere else
            if not (resolved / MANIFEST_FILENAME).is_file():
                continue
            try:
                _, manifest = read_manifest(resolved)
            except FusionServeError as exc:
                logger.warning("model repository: %s is not a valid bundle: %s", child.name, exc)
                continue
            found.setdefault(manifest.name, (resolved, manifest.version))
        return found
