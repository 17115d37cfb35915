"""cluster.connect against a real 'ray start' cluster: one that wants Ray's token is joined without
RAY_AUTH_MODE set (as a newcomer's 'paperlens ingest --ray auto' does after 'ray start --head')."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="the ray extra is not installed")

from serverproc import free_port

RAY = Path(sys.executable).with_name("ray")


@pytest.fixture
def token_cluster(tmp_path):
    """A one-node cluster started by 'ray start' with token authentication, on its own port and
    temp folder (never the machine's default cluster), with a token file of its own."""
    token = tmp_path / "token"
    token.write_text(secrets.token_hex(32))
    temp = Path(f"/tmp/plray{os.getpid()}")  # short: Ray's socket paths must fit 107 bytes
    port = free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    env.pop("RAY_ADDRESS", None)
    start = [str(RAY), "start", "--head", "--port", str(port), "--temp-dir", str(temp), "--num-cpus", "1",
             "--include-dashboard=false", "--disable-usage-stats"]
    subprocess.run(start, env=env, check=True, capture_output=True, timeout=120)
    try:
        yield f"127.0.0.1:{port}", token
    finally:
        subprocess.run(["pkill", "-9", "-f", str(temp)], check=False)


def test_connect_joins_a_cluster_that_wants_a_token_without_ray_auth_mode(token_cluster):
    address, token = token_cluster
    env = {key: value for key, value in os.environ.items() if key not in ("RAY_AUTH_MODE", "RAY_ADDRESS")}
    env["RAY_AUTH_TOKEN_PATH"] = str(token)
    script = ("import ray; from paperlens.cluster import connect; "
              f"info = connect({address!r}); print(info.nodes, ray.get(ray.remote(lambda: 6 * 7).remote()))")
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["1", "42"]
