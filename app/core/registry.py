"""The served bundles: one runner (and batcher) each, looked up by name, reloaded in place.

A request takes a *lease* on the runner it is routed to, synchronously, at the moment it
looks the bundle up; a reload loads and warms the new version beside the old one, switches the
name over (new leases get the new runner), then waits for the old runner's leases to
end before stopping it. No request is refused or dropped by a reload.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from opentelemetry.trace import Tracer

from app.bundle.loader import read_manifest
from app.config.settings import Settings
from app.core.admission import ItemPace
from app.core.engine import Engine, relative_cost, warm_up
from app.core.lifecycle import Lifecycle
from app.core.model_runner import ModelRunner
from app.core.observer import ServiceObserver
from app.errors import (
    ModelNotFound,
    NotReady,
    ReloadFailed,
    ReloadInProgress,
    StartupError,
    quoted_name,
)
from app.memory.memory_budget import MemoryBudget
from app.preprocess.decode_pace import DecodePace

logger = logging.getLogger(__name__)

EngineFactory = Callable[[Settings], Engine]
ObserverFactory = Callable[[str], ServiceObserver | None]


class ModelStatus(enum.Enum):
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"
    UNLOADED = "unloaded"


@dataclass
class _Leased:
    """A runner and the number of requests holding it."""

    runner: ModelRunner
    leases: int = 0
    released: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.released.set()


@dataclass
class ModelSlot:
    """One served name: where its bundle lives and the runner now answering for it."""

    name: str
    path: Path
    default: bool
    status: ModelStatus = ModelStatus.LOADING
    current: _Leased | None = None
    error: str | None = None
    reloads: int = 0
    draining: list[_Leased] = field(default_factory=list)  # previous versions, until drained
    reloading: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def runner(self) -> ModelRunner | None:
        return None if self.current is None else self.current.runner

    def runners(self) -> list[ModelRunner]:
        """Every version still answering requests: the current one and any draining."""
        live = [] if self.current is None else [self.current]
        return [leased.runner for leased in (*live, *self.draining)]


@dataclass(frozen=True)
class _Built:
    """A loaded, warmed engine, the pace its runner starts from and what its warm-up's full
    batch took (None without a warm-up)."""

    engine: Engine
    pace: ItemPace
    batch_s: float | None = None


@dataclass(frozen=True)
class ReloadOutcome:
    name: str
    previous_version: str
    version: str
    load_s: float
    draining: int  # requests still holding the previous version when it was switched out


class ModelRegistry:
    """The bundles of ``settings.bundle_dirs()``; the first is the default. Their runners,
    old versions draining after a reload included, share one decode memory budget
    (``decode_memory``, else one of ``settings.decode_memory_mb``), what is known of the pace
    of decodes, and the service's ``lifecycle`` (nothing loads or reloads once it stops
    accepting)."""

    def __init__(
        self,
        settings: Settings,
        factory: EngineFactory,
        observer_for: ObserverFactory = lambda _: None,
        decode_memory: MemoryBudget | None = None,
        lifecycle: Lifecycle | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self._settings = settings
        self._tracer = tracer
        self._factory = factory
        self._observer_for = observer_for
        self._slots: dict[str, ModelSlot] = {}
        self._retiring: set[asyncio.Task[None]] = set()
        self.lifecycle = lifecycle or Lifecycle()
        self.decode_memory = decode_memory or MemoryBudget(settings.decode_memory_mb * 2**20)
        self.decode_pace = DecodePace()

    @property
    def slots(self) -> list[ModelSlot]:
        return list(self._slots.values())

    @property
    def default(self) -> ModelSlot | None:
        return next(iter(self._slots.values()), None)

    def slot(self, name: str | None) -> ModelSlot:
        """The slot for ``name`` (the default when None); 404 if nothing has that name."""
        if not self._slots:
            raise NotReady("the bundles are loading")
        if name is None:
            return next(iter(self._slots.values()))
        found = self._slots.get(name)
        if found is None:
            served = ", ".join(self._slots) or "none yet"
            raise ModelNotFound(f"no model named {quoted_name(name)} is served (served: {served})")
        return found

    @contextlib.contextmanager
    def lease(self, name: str | None = None) -> Iterator[ModelRunner]:
        """Hold the runner now serving ``name`` for the length of a request. Raises at
        once (404 unknown name, 503 not loaded yet); never waits."""
        slot = self.slot(name)
        leased = slot.current
        if leased is None or slot.status is not ModelStatus.READY:
            raise NotReady(f"model {slot.name!r} is not ready (status: {slot.status.value})")
        leased.leases += 1
        leased.released.clear()
        try:
            yield leased.runner
        finally:
            leased.leases -= 1
            if leased.leases == 0:
                leased.released.set()

    def _settings_for(self, path: Path) -> Settings:
        return self._settings.model_copy(update={"bundle_path": path})

    def declare(self) -> None:
        """Read every manifest (cheap) so that names are known, and unique, before loading.
        Raises ``StartupError``."""
        for index, path in enumerate(self._settings.bundle_dirs()):
            name = read_manifest(path)[1].name
            if name in self._slots:
                raise StartupError(
                    f"two bundles are named {name!r} ({self._slots[name].path} and {path}); "
                    "served names must differ"
                )
            self._slots[name] = ModelSlot(name=name, path=path, default=index == 0)

    def _build(self, slot: ModelSlot, replacing: ModelRunner | None = None) -> _Built:
        """Load and warm up ``slot``'s bundle (blocking: run it in a thread), with what
        admission should start from: the pace of the runner it is ``replacing``, scaled by
        what a batch costs the new engine over the old one (timed back to back, now); else
        a seed from its warm-up (``app.core.admission``)."""
        engine = self._factory(self._settings_for(slot.path))
        name = engine.bundle.manifest.name
        if name != slot.name:
            raise StartupError(
                f"the bundle at {slot.path} is now named {name!r}, not {slot.name!r}; "
                "a served name cannot change (restart to rename)"
            )
        if not self._settings.warmup:
            return _Built(engine, ItemPace())
        size = self._settings.max_batch_size
        warmed = warm_up(engine, size)
        if replacing is None or replacing.pace.item_s is None:
            return _Built(engine, ItemPace(warmed.item_s), warmed.batch_s)
        scale = relative_cost(engine, replacing.engine, size)
        logger.info(
            "%s: an item costs the new version %.2fx what it costs the one it replaces",
            slot.name,
            scale,
        )
        return _Built(engine, ItemPace.inherited(replacing.pace, scale), warmed.batch_s)

    def _serve(self, slot: ModelSlot, built: _Built) -> _Leased | None:
        """Put a runner for the built engine in ``slot``; return the one it replaces."""
        engine = built.engine
        runner = ModelRunner(
            engine,
            self._settings,
            self._observer_for(slot.name),
            lifecycle=self.lifecycle,
            decode_memory=self.decode_memory,
            decode_pace=self.decode_pace,
            pace=built.pace,
            warm_batch_s=built.batch_s,
            tracer=self._tracer,
        )
        runner.start()
        previous, slot.current = slot.current, _Leased(runner)
        slot.status, slot.error = ModelStatus.READY, None
        return previous

    async def load(self, slot: ModelSlot) -> None:
        """First load of ``slot``; a failure marks it failed and propagates."""
        try:
            built = await asyncio.to_thread(self._build, slot)
        except Exception as exc:
            slot.status, slot.error = ModelStatus.FAILED, str(exc)
            raise
        if not self.lifecycle.accepting:
            return
        self._serve(slot, built)

    async def reload(self, name: str | None) -> ReloadOutcome:
        """Load ``name``'s bundle again from its directory, switch to it once warm, and drain
        the previous version in the background. The previous version keeps answering while
        the new one loads, and for good if it fails (``ReloadFailed``)."""
        slot = self.slot(name)
        if not self.lifecycle.accepting:
            raise self.lifecycle.unavailable()
        if slot.reloading.locked():
            raise ReloadInProgress(f"model {slot.name!r} is already being reloaded")
        async with slot.reloading:
            if slot.current is None:
                raise NotReady(f"model {slot.name!r} is not loaded yet; nothing to reload")
            previous_version = slot.current.runner.engine.bundle.manifest.version
            started = time.perf_counter()
            try:
                built = await asyncio.to_thread(self._build, slot, slot.current.runner)
            except Exception as exc:
                logger.error("reload of %s failed, old version kept: %s", slot.name, exc)
                raise ReloadFailed(
                    f"reloading {slot.name!r} from {slot.path} failed; version "
                    f"{previous_version} serves on: {exc}"
                ) from None
            load_s = time.perf_counter() - started
            if not self.lifecycle.accepting:
                raise self.lifecycle.unavailable()
            previous = self._serve(slot, built)
            assert previous is not None  # checked above, and only reload replaces
            slot.reloads += 1
            self._retire(slot, previous)
        version = built.engine.bundle.manifest.version
        logger.info(
            "reloaded %s: %s -> %s in %.2fs; %d requests drain from the previous version",
            slot.name,
            previous_version,
            version,
            load_s,
            previous.leases,
        )
        return ReloadOutcome(slot.name, previous_version, version, load_s, previous.leases)

    def _retire(self, slot: ModelSlot, leased: _Leased) -> asyncio.Task[None]:
        slot.draining.append(leased)

        async def drain() -> None:
            await leased.released.wait()  # every request holding it has been answered
            await leased.runner.stop()
            slot.draining.remove(leased)

        task = asyncio.get_running_loop().create_task(drain(), name=slot.name)
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)
        return task

    async def add(self, path: Path) -> ModelSlot:
        """Serve the bundle at ``path`` under its manifest's name, beside the others (the
        model repository's load): declared, loaded and warmed up, then routed to. A name
        already served raises ``ValueError`` (reload it instead); a bundle that fails to load
        leaves nothing behind and raises."""
        root, manifest = read_manifest(path)
        if manifest.name in self._slots:
            raise ValueError(f"model {manifest.name!r} is already served")
        if not self.lifecycle.accepting:
            raise self.lifecycle.unavailable()
        slot = ModelSlot(name=manifest.name, path=root, default=not self._slots)
        self._slots[slot.name] = slot
        try:
            await self.load(slot)
        except BaseException:
            del self._slots[slot.name]
            raise
        if slot.current is None:  # the service stopped accepting while it loaded
            del self._slots[slot.name]
            raise self.lifecycle.unavailable()
        return slot

    async def unload(self, name: str) -> int:
        """Stop serving ``name`` (the model repository's unload): new requests get 404 at
        once, the requests already holding it are answered, then its runners stop. Returns
        how many requests were still holding it. 404 for a name not served."""
        slot = self.slot(name)
        del self._slots[slot.name]
        slot.status = ModelStatus.UNLOADED
        holding = sum(held.leases for held in slot.draining)
        drains = [task for task in self._retiring if task.get_name() == slot.name]
        if slot.current is not None:
            holding += slot.current.leases
            drains.append(self._retire(slot, slot.current))
            slot.current = None
        await asyncio.gather(*drains)
        logger.info("unloaded %s; %d requests drained", slot.name, holding)
        return holding

    async def stop(self) -> None:
        """Stop accepting, answer what was accepted, then stop every runner, old versions
        included."""
        self.lifecycle.stop_accepting()
        stops = [s.current.runner.stop() for s in self.slots if s.current is not None]
        await asyncio.gather(*stops, *self._retiring)
