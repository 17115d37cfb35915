"""Joining a Ray cluster: the one place that calls ``ray.init``, for ``ingest --ray`` and ``serve --ray``.

Ray is an optional extra (``pip install paperlens[ray]``); nothing else in paperlens imports it at
module level, so a plain install never pays for it."""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path

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
        _match_token_authentication(address.strip())
        try:
            ray.init(
                address=address.strip(),
                ignore_reinit_error=True,
                include_dashboard=False,
                logging_level=logging.WARNING,
                log_to_driver=False,
            )
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise PaperlensError(f"could not join the Ray cluster at {address!r}: {exc}{_token_hint()}") from exc
    resources = ray.cluster_resources()
    nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
    return ClusterInfo(address=address, nodes=nodes, cpus=float(resources.get("CPU", 0)), gpus=float(resources.get("GPU", 0)))


def _check_reachable(address: str, timeout: float = 3.0) -> None:
    """A HOST:PORT (given, or in RAY_ADDRESS for 'auto') where nothing listens fails here in seconds;
    ray.init would retry it for minutes. 'local', ray:// and a bare 'auto' are left to Ray."""
    address = address.strip()
    if address == "auto":
        address = os.environ.get("RAY_ADDRESS", "").strip() or address
    if address in ("", "auto", "local") or "://" in address:
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidInput(f"--ray: {address!r} is not 'auto', 'local', HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise PaperlensError(f"no Ray cluster answers at {address} ({exc.strerror or exc}); "
                             "start one with 'ray start --head' or check the address") from None


def _token_hint() -> str:
    """Ray 2.60's 'ray start' turns token authentication on where a token exists (~/.ray/auth_token,
    RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH), but a driver joining it sends the token only with
    RAY_AUTH_MODE=token, and its failed join never mentions the token. Setting that here instead
    would break joining a cluster without authentication (its workers could not reach the driver)."""
    if "RAY_AUTH_MODE" in os.environ:
        return ""
    if os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH") or (Path.home() / ".ray" / "auth_token").is_file():
        return " (if the cluster uses token authentication, as 'ray start' does where a Ray token exists, set RAY_AUTH_MODE=token)"
    return ""


def _match_token_authentication(address: str) -> None:
    """Join a cluster that wants Ray's token as 'ray start' made it.

    Ray 2.60's 'ray start' turns token authentication on where a token exists (~/.ray/auth_token,
    made by the first local ray.init), but a driver joining it sends the token only under
    RAY_AUTH_MODE=token; turning that on for every join would break clusters without it (their
    workers could not reach the driver). So ask the cluster: a token-less call to its GCS is
    refused at once when it wants one, and then this process joins in token mode, as
    'ray start' would on this machine."""
    if "RAY_AUTH_MODE" in os.environ or address == "local" or "://" in address:
        return
    try:
        from ray._private.services import canonicalize_bootstrap_address
        from ray._raylet import Config, GcsClient
        from ray.exceptions import AuthenticationError

        gcs = canonicalize_bootstrap_address(address)
        if gcs is None:
            return
        GcsClient(address=gcs)
    except AuthenticationError:
        os.environ["RAY_AUTH_MODE"] = "token"
        Config.initialize("")  # Ray caches its config: make this process see the mode
    except Exception as exc:  # Ray's internals moved, or no cluster there: ray.init says what is wrong
        log.debug("token probe of %s: %s", address, exc)
