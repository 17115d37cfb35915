"""Load test: concurrent clients mixing searches, ingests and deletes against a local server, then a
check that every acknowledged paper is still there (and every acknowledged delete stuck).

    python benchmarks/load.py                      # starts a server on a copy of the demo corpus
    python benchmarks/load.py --url http://127.0.0.1:8000 --clients 32 --seconds 60

Prints requests/s, p50/p99 latency per kind and errors, as the clients saw it and as the server's
own request histogram (/metrics) saw it: with the clients on the server's cores, the difference is
the time a finished answer waited for a starved client process to read it. Bounded in time (--seconds) and count
(--max-requests). Each client is a user of its own (POST /users) who likes papers of the demo
corpus; at the end every acknowledged paper, delete and like is checked.

--rate R makes each client a person who sends R requests per second on average (think times
drawn from an exponential distribution, so arrivals are bursty); 0, the default, sends the next
request as soon as the last is answered, which measures saturation: with 32 clients on 2 cores
every request then waits behind ~31 others. Search queries are the first words of the demo
corpus's titles plus ten topics, so few repeat.

--processes P spreads the clients over P processes. One Python process of 32 httpx clients sends
~300 requests/s at most on these cores, and past that its answers wait for it to read them: the
clients' latencies then measure the load generator (README, "Performance"). Remote clients are
many processes; P = 2 keeps all of them on this machine's two cores.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import multiprocessing
import random
import sys
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import httpx
from prometheus_client.parser import text_string_to_metric_families

from _common import percentile

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

TOPICS = ["protein structure", "dark matter", "robot grasping", "language models", "graph neural networks",
          "reinforcement learning", "image segmentation", "speech recognition", "quantum computing", "climate"]
DEMO = Path(__file__).resolve().parents[1] / "src" / "paperlens" / "data" / "demo_papers.jsonl"


def search_queries() -> list[str]:
    """Ten topics and the first three to six words of every demo title."""
    titles = [json.loads(line)["title"] for line in DEMO.read_text(encoding="utf-8").splitlines() if line.strip()]
    return TOPICS + [" ".join(title.split()[: 3 + i % 4]) for i, title in enumerate(titles)]


QUERIES = search_queries()
MIX = (("search", 0.72), ("like", 0.08), ("ingest", 0.12), ("delete", 0.08))
# Each kind's route in the server's request histogram (/metrics).
ROUTES = {"search": ("GET", "/search"), "like": ("POST", "/users/{user_id}/interactions"),
          "ingest": ("POST", "/papers"), "delete": ("DELETE", "/papers/{paper_id:path}")}


@dataclass
class Tally:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    acknowledged: set[str] = field(default_factory=set)
    deleted: set[str] = field(default_factory=set)
    likes: set[tuple[int, str]] = field(default_factory=set)
    requests: int = 0


@dataclass
class LoadUser:
    id: int
    headers: dict[str, str]


async def create_user(client: httpx.AsyncClient, name: int, headers: dict[str, str]) -> LoadUser:
    response = await client.post("/users", json={"name": f"load-{name}"}, headers=headers)
    response.raise_for_status()
    body = response.json()
    return LoadUser(body["id"], {**headers, "X-User-Token": body["token"]} if body.get("token") else headers)


class Sender:
    """The load's requests, sent with aiohttp (default) or httpx: (status, body text) of each.

    httpx costs ~1.8 ms of CPU a request with 32 connections in one client (0.9 with one client
    per connection), aiohttp ~0.15 (32 clients of cached searches against the demo server, 2026-12-01).
    With the clients on the server's two cores, httpx's share is taken from the server and its
    queue of unread answers is most of what the clients measure; aiohttp leaves the cores to the
    server, as remote clients would. ``--http-client httpx`` repeats earlier figures."""

    def __init__(self, kind: str, url: str, connections: int):
        self.kind = kind
        if kind == "httpx":
            limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
            self._httpx = httpx.AsyncClient(base_url=url, timeout=60, limits=limits)
        else:
            self._aiohttp = aiohttp.ClientSession(url, connector=aiohttp.TCPConnector(limit=connections),
                                                  timeout=aiohttp.ClientTimeout(total=60))
        self.errors: tuple[type[BaseException], ...] = (httpx.HTTPError,) if kind == "httpx" else (aiohttp.ClientError,)

    async def send(self, method: str, path: str, **kwargs) -> tuple[int, str]:
        if self.kind == "httpx":
            response = await self._httpx.request(method, path, **kwargs)
            return response.status_code, response.text
        async with self._aiohttp.request(method, path, **kwargs) as response:
            return response.status, await response.text()

    async def close(self) -> None:
        if self.kind == "httpx":
            await self._httpx.aclose()
        else:
            await self._aiohttp.close()


async def client_loop(sender: Sender, tally: Tally, deadline: float, max_requests: int, rng: random.Random,
                      name: int, headers: dict[str, str], user: LoadUser, likeable: list[str], rate: float, tag: str) -> None:
    serial = 0
    while time.monotonic() < deadline and tally.requests < max_requests:
        if rate > 0:
            await asyncio.sleep(rng.expovariate(rate))
            if time.monotonic() >= deadline:
                break
        tally.requests += 1
        kind = rng.choices([k for k, _ in MIX], [w for _, w in MIX])[0]
        if kind == "delete" and not (tally.acknowledged - tally.deleted):
            kind = "ingest"
        start = time.perf_counter()
        try:
            if kind == "search":
                status, text = await sender.send("GET", "/search", params={"q": rng.choice(QUERIES), "k": 10})
                ok = status == 200
            elif kind == "like":
                paper_id = rng.choice(likeable)
                status, text = await sender.send("POST", f"/users/{user.id}/interactions",
                                                 json={"paper_id": paper_id, "kind": "like"}, headers=user.headers)
                ok = status == 201
                if ok:
                    tally.likes.add((user.id, paper_id))
            elif kind == "ingest":
                serial += 1
                # The run's tag in id and title: a rerun, or another load.py beside this one, writes papers of
                # its own (a paper with a stored one's title and text would be merged into it as an alias).
                paper_id = f"load-{tag}-{name}-{serial}"
                body = [{"id": paper_id, "title": f"Load test paper {tag}-{name}-{serial} on {rng.choice(TOPICS)}",
                         "abstract": f"A synthetic abstract about {rng.choice(TOPICS)} and {rng.choice(TOPICS)}."}]
                status, text = await sender.send("POST", "/papers", json=body, headers=headers)
                ok = status == 201
                if ok:
                    tally.acknowledged.add(paper_id)
            else:
                paper_id = rng.choice(sorted(tally.acknowledged - tally.deleted))
                tally.deleted.add(paper_id)  # claimed before the call, so no two clients delete it
                status, text = await sender.send("DELETE", f"/papers/{paper_id}", headers=headers)
                ok = status == 200
            if not ok:
                tally.errors[kind].append(f"{status} {text[:120]}")
        except sender.errors as exc:
            tally.errors[kind].append(f"{exc.__class__.__name__}: {exc}")
        tally.latencies[kind].append(time.perf_counter() - start)


async def verify(client: httpx.AsyncClient, tally: Tally, users: list[LoadUser]) -> list[str]:
    problems = []
    for user in users:
        response = await client.get(f"/users/{user.id}/interactions", params={"kind": "like"}, headers=user.headers)
        stored = {item["paper_id"] for item in response.json()["interactions"]}
        for user_id, paper_id in sorted(tally.likes):
            if user_id == user.id and paper_id not in stored:
                problems.append(f"like of {paper_id} by user {user_id} is missing")
    for paper_id in sorted(tally.acknowledged):
        status = (await client.get(f"/papers/{paper_id}")).status_code
        expected = 404 if paper_id in tally.deleted else 200
        if status != expected:
            problems.append(f"{paper_id}: {status}, expected {expected}")
    return problems


async def server_histograms(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[tuple[str, str], dict[float, float]]:
    """The server's own request-time histogram (cumulative counts by upper bound) of each route:
    latency from the app's first byte to its last, without the client's or the sockets' waits."""
    response = await client.get("/metrics", headers=headers)
    response.raise_for_status()
    found: dict[tuple[str, str], dict[float, float]] = defaultdict(dict)
    for family in text_string_to_metric_families(response.text):
        if family.name == "paperlens_http_request_duration_seconds":
            for sample in family.samples:
                if sample.name.endswith("_bucket"):
                    key = (sample.labels["method"], sample.labels["route"])
                    found[key][float(sample.labels["le"])] = sample.value
    return found


def server_percentile(before: dict[float, float], after: dict[float, float], q: float) -> float:
    """Percentile ``q`` of the requests between two scrapes, interpolated within its bucket (as
    Prometheus' histogram_quantile does), in seconds."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    if not counts or counts[-1] <= 0:
        return float("nan")
    rank, lower, below = q / 100 * counts[-1], 0.0, 0.0
    for bound, count in zip(bounds, counts):
        if count >= rank:
            if bound == float("inf"):
                return lower
            return lower + (bound - lower) * (rank - below) / max(count - below, 1e-9)
        lower, below = bound, count
    return lower


def report(tally: Tally, elapsed: float, problems: list[str], clients: int, rate: float,
           server: tuple[dict, dict] | None = None, processes: int = 1) -> None:
    total = sum(len(v) for v in tally.latencies.values())
    offered = f"offered {clients} x {rate:g} = {clients * rate:g} requests/s" if rate > 0 else "closed loop (saturation)"
    spread = f" in {processes} processes" if processes > 1 else ""
    print(f"# python benchmarks/load.py {' '.join(sys.argv[1:])}\n# {clients} clients{spread}, {offered}")
    print(f"{total} requests in {elapsed:.1f} s: {total / elapsed:.1f} requests/s")
    print(f"{'kind':8} {'count':>7} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'server p50':>11} {'server p99':>11}")
    for kind, _ in MIX:
        values = tally.latencies.get(kind, [])
        inside = ""
        if server is not None:
            before, after = (part.get(ROUTES[kind], {}) for part in server)
            inside = " ".join(f"{server_percentile(before, after, q) * 1000:11.1f}" for q in (50, 99))
        print(f"{kind:8} {len(values):7d} {len(values) / elapsed:7.1f} {percentile(values, 50) * 1000:8.1f} "
              f"{percentile(values, 99) * 1000:8.1f} {len(tally.errors.get(kind, [])):7d} {inside}")
    if server is not None:
        print("server p50/p99: the server's own time (its request histogram in /metrics, interpolated within "
              "buckets); the client's figures add the waits in the client processes and the sockets")
    for kind, messages in tally.errors.items():
        for message in messages[:3]:
            print(f"  {kind} error: {message}")
    kept = len(tally.acknowledged - tally.deleted)
    print(f"acknowledged: {len(tally.acknowledged)} ingested, {len(tally.deleted)} deleted; "
          f"{len(tally.likes)} likes; {kept} papers and the likes must be there: "
          f"{'all there' if not problems else f'{len(problems)} PROBLEMS'}")
    for problem in problems[:10]:
        print("  " + problem)


@dataclass(frozen=True)
class Plan:
    """What every client process needs: the server, the users made for its clients, the papers
    they may like, when to stop, and the run's tag (ids and titles name the client, which is
    numbered across processes, so no two processes write the same paper)."""

    url: str
    headers: dict[str, str]
    users: list[LoadUser]
    likeable: list[str]
    start: float  # time.time() when the clients start
    seconds: float
    max_requests: int
    seed: int
    rate: float
    tag: str
    http_client: str  # Sender's kind


async def setup(url: str, clients: int, api_key: str | None, seconds: float, max_requests: int, seed: int, rate: float,
                http_client: str) -> Plan:
    headers = {"X-API-Key": api_key} if api_key else {}
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        warm = await client.get("/search", params={"q": "language models", "k": 50})
        # papers of the corpus, never deleted here (an earlier run's papers may be, by a run beside this one)
        likeable = [hit["id"] for hit in warm.json()["results"] if not hit["id"].startswith("load-")]
        users = [await create_user(client, i, headers) for i in range(clients)]
    tag = f"{time.time_ns() // 1_000_000 % 10**8:08d}"
    return Plan(url, headers, users, likeable, time.time() + 0.5, seconds, max_requests, seed, rate, tag, http_client)


async def drive(plan: Plan, names: range) -> tuple[Tally, float]:
    """The clients ``names`` of the plan, in this process; their tally and when the last one stopped."""
    tally = Tally()
    sender = Sender(plan.http_client, plan.url, len(names))
    try:
        await asyncio.sleep(max(0.0, plan.start - time.time()))
        deadline = time.monotonic() + plan.seconds - max(0.0, time.time() - plan.start)
        await asyncio.gather(*(client_loop(sender, tally, deadline, plan.max_requests, random.Random(plan.seed + i), i, plan.headers,
                                           plan.users[i], plan.likeable, plan.rate, plan.tag) for i in names))
    finally:
        await sender.close()
    return tally, time.time()


def drive_part(plan: Plan, names: range) -> tuple[dict, float]:
    """``drive`` in a client process, its tally as plain containers for the way back."""
    tally, ended = asyncio.run(drive(plan, names))
    return {"latencies": dict(tally.latencies), "errors": dict(tally.errors), "acknowledged": tally.acknowledged,
            "deleted": tally.deleted, "likes": tally.likes, "requests": tally.requests}, ended


def merged(parts: list[dict]) -> Tally:
    tally = Tally()
    for part in parts:
        for kind, values in part["latencies"].items():
            tally.latencies[kind] += values
        for kind, messages in part["errors"].items():
            tally.errors[kind] += messages
        tally.acknowledged |= part["acknowledged"]
        tally.deleted |= part["deleted"]
        tally.likes |= part["likes"]
        tally.requests += part["requests"]
    return tally


async def histograms_of(url: str, headers: dict[str, str]) -> dict[tuple[str, str], dict[float, float]]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        return await server_histograms(client, headers)


async def verified(url: str, tally: Tally, users: list[LoadUser]) -> list[str]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        return await verify(client, tally, users)


def run(url: str, clients: int, seconds: float, max_requests: int, api_key: str | None, seed: int, rate: float,
        processes: int = 1, http_client: str = "aiohttp") -> int:
    """The clients, in this process or spread over ``processes`` (one Python process sends only so
    many requests a second: with 32 clients on 2 cores it is the first to saturate, and its answers
    wait for it, not for the server)."""
    plan = asyncio.run(setup(url, clients, api_key, seconds, max_requests // max(processes, 1), seed, rate, http_client))
    before = asyncio.run(histograms_of(url, plan.headers))
    shares = [range(clients * p // processes, clients * (p + 1) // processes) for p in range(processes)]
    if processes == 1:
        tally, ended = asyncio.run(drive(plan, shares[0]))
    else:
        with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn")) as pool:
            list(pool.map(time.sleep, [0.2] * processes))  # every process started (a second or so) before the clock starts
            plan = dataclasses.replace(plan, start=time.time() + 0.2)
            results = list(pool.map(drive_part, [plan] * processes, shares))
        tally, ended = merged([part for part, _ in results]), max(end for _, end in results)
    elapsed = ended - plan.start
    after = asyncio.run(histograms_of(url, plan.headers))
    problems = asyncio.run(verified(url, tally, plan.users))
    report(tally, elapsed, problems, clients, rate, (before, after), processes)
    return 1 if problems or any(tally.errors.values()) else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="a running server; default: start one on a temporary copy of the demo corpus")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--max-requests", type=int, default=200_000)
    parser.add_argument("--api-key", help="sent as X-API-Key on writes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rate", type=float, default=0.0, help="requests/s per client (0: next request at once)")
    parser.add_argument("--server-nice", type=int, default=0,
                        help="run the server this much nicer than the clients, so that on shared cores they read each answer "
                             "when it is sent, as remote clients would (0: same priority)")
    parser.add_argument("--processes", type=int, default=1,
                        help="client processes the clients are spread over (1: all in this one)")
    parser.add_argument("--http-client", choices=("aiohttp", "httpx"), default="aiohttp",
                        help="the clients' HTTP library: aiohttp costs the shared cores a tenth of httpx's CPU a request "
                             "(httpx: the generator of figures before 2026-12-02)")
    args = parser.parse_args()
    if not 1 <= args.processes <= args.clients:
        parser.error("--processes must be between 1 and --clients")
    if args.url:
        return run(args.url, args.clients, args.seconds, args.max_requests, args.api_key, args.seed, args.rate, args.processes,
                   args.http_client)

    import subprocess

    from serverproc import ServerProcess

    with tempfile.TemporaryDirectory() as tmp:
        index = Path(tmp) / "index"
        subprocess.run([sys.executable, "-m", "paperlens.cli", "ingest", "--demo", "--quiet", "--index", str(index)],
                       check=True, capture_output=True)
        server = ServerProcess(index, Path(tmp) / "server.log", nice=args.server_nice)
        try:
            return run(server.url, args.clients, args.seconds, args.max_requests, args.api_key, args.seed, args.rate,
                       args.processes, args.http_client)
        finally:
            server.kill()


if __name__ == "__main__":
    sys.exit(main())
