"""Joining a Ray cluster: the one place that calls ``ray.init``, for ``ingest --ray`` and ``serve --ray``.

Ray is an optional extra (``pip install paperlens[ray]``); nothing else in paperlens imports it at
module level, so a plain install never pays for it."""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass

from .errors import InvalidInput, PaperlensError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClusterInfo:
    """What the driver joined, for progress lines and /health."""

    address: str
    nodes: int
    cpus: float
    gpus: float


def connect(address: str) -> ClusterInfo:
    """Join the cluster ``address`` names, once per process.

    ``auto``: the cluster in ``RAY_ADDRESS``, else the one ``ray start --head`` left on this machine.
    ``local``: a throwaway cluster of this machine's cores, ended with the process.
    Anything else (``10.0.0.5:6379``, ``ray://host:10001``) is passed to Ray as it is."""
    if not address or not address.strip():
        raise InvalidInput("--ray needs an address: 'auto', 'local' or HOST:PORT")
    try:
        import ray
    except ImportError as exc:
        raise PaperlensError("--ray needs Ray: pip install 'paperlens[ray]'") from exc
    if not ray.is_initialized():
        _check_reachable(address.strip())
        try:
            ray.init(
                address=address.strip(),
                ignore_reinit_error=True,
                include_dashboard=False,
                logging_level=logging.WARNING,
                log_to_driver=False,
            )
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise PaperlensError(f"could not join the Ray cluster at {address!r}: {exc}") from exc
    resources = ray.cluster_resources()
    nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
    return ClusterInfo(address=address, nodes=nodes, cpus=float(resources.get("CPU", 0)), gpus=float(resources.get("GPU", 0)))


def _check_reachable(address: str, timeout: float = 3.0) -> None:
    """A HOST:PORT that nothing listens on is one line now: Ray itself retries for minutes."""
    if address in ("auto", "local") or "://" in address or ":" not in address:
        return
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except ValueError:
        raise InvalidInput(f"--ray {address!r}: the port is not a number") from None
    except OSError as exc:
        raise PaperlensError(f"could not join the Ray cluster at {address!r}: nothing answers there ({exc.strerror or exc})") from None
