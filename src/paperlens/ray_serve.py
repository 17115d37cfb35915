"""'paperlens serve --ray': the same FastAPI app (api.create_app) on Ray Serve.

Over one index folder: ``--replicas`` copies of the app behind Serve's HTTP proxy, each with the
folder opened for itself (searches are independent; writes commit to the one SQLite store).
Over a sharded folder (shards.py): one deployment per shard holding that shard's FAISS and
keyword index, and the app as the ingress, its library a ``ShardedLibrary`` whose shard clients
are Serve handles: a query goes to every shard at once and the answers are merged there.

Ray is imported inside the functions: a plain install never needs it (cluster.py joins a cluster).
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .cluster import ClusterInfo, connect
from .config import Settings
from .errors import IndexNotFound, PaperlensError
from .library import STORE_FILE
from .shards import SHARD_MAP, ShardMap, is_sharded

log = logging.getLogger(__name__)

APP_NAME = "paperlens"


@dataclass(frozen=True)
class RayServing:
    """What 'serve --ray' started, for its start-up line and for tests."""

    url: str
    cluster: ClusterInfo
    replicas: int
    shards: int


class RayShardClient:
    """A shard reached through its Serve deployment handle (shards.ShardClient)."""

    def __init__(self, handle: Any, name: str):
        self.handle, self.name = handle, name

    def call(self, method: str, *args: Any) -> Any:
        return _Answer(self.handle.call.remote(method, *args))


class _Answer:
    """A Serve response read like a Future (``result(timeout=...)``)."""

    def __init__(self, response: Any):
        self.response = response

    def result(self, timeout: float | None = None) -> Any:
        return self.response.result(timeout_s=timeout)


def _check_folder(index: Path) -> ShardMap | None:
    """A one-line error for a folder that is neither an index nor a sharded one, before any deployment."""
    if is_sharded(index):
        shard_map = ShardMap.read(index)
        for name in shard_map.folders:
            if not (index / name / STORE_FILE).exists():
                raise IndexNotFound(f"{index / name} named in {index / SHARD_MAP} holds no index")
        return shard_map
    if not (index / STORE_FILE).exists():
        raise IndexNotFound(f"no index at {index}: build one with 'paperlens ingest FILE --index {index}' "
                            "or shard one with 'paperlens shard'")
    return None


def build_application(settings: Settings, replicas: int = 1, cpus: float = 1.0) -> Any:
    """The Serve application for ``settings.index``: the ingress alone, or the ingress over one
    deployment per shard."""
    from ray import serve

    from .api import create_app
    from .shards import PartialAnswers, Shard, open_sharded

    index = Path(settings.index).resolve()
    settings = settings.model_copy(update={"index": index})
    shard_map = _check_folder(index)

    @serve.deployment(name="shard", ray_actor_options={"num_cpus": cpus})
    class ShardDeployment:
        """One shard's index folder, opened and checked once per replica."""

        def __init__(self, folder: str, shard_settings: Settings):
            self.shard = Shard(Path(folder), shard_settings)

        def call(self, method: str, *args: Any) -> Any:
            return self.shard.call(method, *args)

    @serve.deployment(name="ingress", num_replicas=replicas, ray_actor_options={"num_cpus": cpus})
    @serve.ingress()
    class Ingress:
        """The HTTP API, built in the replica (the library it opens cannot travel)."""

        def __init__(self, app_settings: Settings, shard_handles: list | None = None):
            self.settings, self.shard_handles = app_settings, shard_handles

        def __serve_build_asgi_app__(self) -> Any:
            if not self.shard_handles:
                return create_app(self.settings)
            clients = [RayShardClient(handle, f"shard-{i}") for i, handle in enumerate(self.shard_handles)]
            app = create_app(self.settings, open_sharded(self.settings, self.settings.index, clients))
            app.add_middleware(PartialAnswers)
            return app

    if shard_map is None:
        return Ingress.bind(settings)
    shards = [ShardDeployment.options(name=f"shard-{i}").bind(str(index / name), settings.model_copy(update={"index": index / name}))
              for i, name in enumerate(shard_map.folders)]
    return Ingress.bind(settings, shards)


def replica_cpus(cluster: ClusterInfo, replicas: int, shard_map: ShardMap | None, wanted: float = 1.0) -> float:
    """CPUs each replica asks for: ``wanted``, or an equal share of the cluster's when the ingress
    replicas and the shards would not otherwise fit (Serve would wait for them forever: 2 shards and
    an ingress on 'ray start --head' of a 2-core machine). A replica's work is mostly FAISS, tantivy
    and ONNX Runtime threads, which a fractional CPU does not limit."""
    deployments = replicas + (shard_map.shards if shard_map else 0)
    if cluster.cpus <= 0:
        raise PaperlensError(f"the Ray cluster at {cluster.address} has no CPUs for the {deployments} replica(s) to serve")
    return min(wanted, cluster.cpus / deployments)


def start(settings: Settings, address: str, replicas: int = 1, host: str = "127.0.0.1", port: int = 8000,
          cpus: float = 1.0) -> RayServing:
    """Join the cluster, deploy, and return once every replica answers."""
    if replicas < 1:
        raise PaperlensError(f"--replicas must be at least 1, got {replicas}")
    index = Path(settings.index)
    shard_map = _check_folder(index)
    cluster = connect(address)
    from ray import serve

    # One HTTP proxy, on the head node: the address printed is the one that answers.
    serve.start(proxy_location="HeadOnly", http_options={"host": host, "port": port})
    from ray.serve.context import _get_global_client

    running = _get_global_client().http_config
    if (running.host, running.port) != (host, port):  # Serve was running already: its proxy keeps its address
        raise PaperlensError(f"Ray Serve on this cluster already listens on {running.host}:{running.port}; "
                             f"pass --host {running.host} --port {running.port}, or restart Serve")
    try:
        serve.run(build_application(settings, replicas, replica_cpus(cluster, replicas, shard_map, cpus)), name=APP_NAME, route_prefix="/")
    except Exception as exc:
        raise PaperlensError(f"the deployment on the Ray cluster failed: {exc.__class__.__name__}: {str(exc).splitlines()[0]}") from None
    return RayServing(url=f"http://{host}:{port}", cluster=cluster, replicas=replicas, shards=shard_map.shards if shard_map else 0)


def stop() -> None:
    """Remove the application (the cluster and its Serve proxy stay up for others)."""
    from ray import serve

    try:
        serve.delete(APP_NAME)
    except Exception as exc:  # the cluster went first
        log.warning("could not remove the Serve application: %s", exc)


def _interrupt(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def serve_forever(settings: Settings, address: str, replicas: int, host: str, port: int,
                  say: Callable[[str], None] = print) -> None:
    """'paperlens serve --ray': deploy, then block until Ctrl-C, then remove the application."""
    serving = start(settings, address, replicas, host, port)
    # Ctrl-C (SIGINT) removes the application, also in a process started in the background, whose
    # shell ignored SIGINT for it. (SIGTERM ends the process at once: Ray's own handler takes it.)
    signal.signal(signal.SIGINT, _interrupt)
    try:
        what = f"{serving.shards} shards" if serving.shards else f"{serving.replicas} replica(s)"
        say(f"paperlens: serving {settings.index} on {serving.url} with {what} on a Ray cluster of "
            f"{serving.cluster.nodes} node(s), {serving.cluster.cpus:g} CPUs (Ctrl-C stops)")
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        stop()
