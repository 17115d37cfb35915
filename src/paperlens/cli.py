"""The command line. Each command calls the same library functions as the API.

Errors a user can fix print one line on stderr and exit 1; usage errors exit 2 (click).
"""

from __future__ import annotations

import functools
import json
import logging
import shlex
import socket
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from pydantic import ValidationError

from .config import Settings
from .data import DEMO_CORPUS
from .errors import IndexNotFound, InvalidInput, NothingToIngest, PaperlensError
from .evaluate import METRICS, TASKS, evaluate_beir
from .imports import ImportReport, check_target, import_library
from .library import (
    CheckReport,
    Library,
    check_library,
    dedup,
    delete,
    index_outdated,
    ingest,
    open_library,
    resolve_ids,
)
from .limits import check_paper_id, skip_oversized
from .papers import FORMATS, author_line, read_papers
from .recommend import STRATEGIES, recommend
from .search import (
    MODES,
    SORTS,
    Hit,
    make_filters,
    search_text,
    similar_to_paper,
    similar_to_text,
)
from .store import CollectionRow

if TYPE_CHECKING:
    from .harvest import Source  # imported by the harvest command itself: sickle is not needed elsewhere

EXIT_USER_ERROR = 1


def _settings(index: str | None, model: str | None = None) -> Settings:
    overrides: dict[str, Any] = {}
    if index:
        overrides["index"] = Path(index)
    if model:
        overrides["model"] = model
    try:
        return Settings(**overrides)
    except ValidationError as exc:  # a PAPERLENS_* variable out of range: name it, no traceback
        problems = "; ".join(f"PAPERLENS_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors())
        raise PaperlensError(f"invalid setting: {problems}") from None


def handle_errors(func: Callable) -> Callable:
    """Library errors become a message and exit 1, never a traceback."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except PaperlensError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_USER_ERROR)
        except OSError as exc:
            click.echo(f"error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), err=True)
            sys.exit(EXIT_USER_ERROR)

    return wrapper


def index_options(func: Callable) -> Callable:
    func = click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")(func)
    func = click.option("--index", "index", envvar="PAPERLENS_INDEX", help="index folder [default: indexes/default]")(func)
    return func


def filter_options(k: int = 10, what: str = "results") -> Callable[[Callable], Callable]:
    """-k and the filters of every query, as the API's query parameters (api_deps.FiltersDep)."""

    def decorate(func: Callable) -> Callable:
        for option in reversed([
            click.option("-k", "k", default=k, show_default=True, help=f"number of {what}"),
            click.option("--since", help="earliest date, YYYY-MM-DD"),
            click.option("--until", help="latest date, YYYY-MM-DD"),
            click.option("--category", "categories", multiple=True, help="repeatable; 'cs' matches 'cs.CL'"),
            click.option("--min-popularity", type=float, help="minimum upvotes/citations"),
            click.option("--author", "authors", multiple=True,
                         help="repeatable; papers with ANY of these authors ('LeCun', 'Y. LeCun', 'LeCun, Y.')"),
        ]):
            func = option(func)
        return func

    return decorate


def _open(index: str | None, model: str | None = None, repair: bool = False) -> Library:
    return open_library(_settings(index, model), repair=repair)


def print_hits(hits: list[Hit], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"results": [asdict(hit) for hit in hits]}, ensure_ascii=False))
        return
    if not hits:
        click.echo("no results")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(show_lines=False, pad_edge=False)
    for column, style in (("#", "dim"), ("score", ""), ("id", "cyan"), ("date", ""), ("title", "bold"), ("authors", "dim")):
        table.add_column(column, style=style, overflow="fold" if column == "title" else "ellipsis")
    for rank, hit in enumerate(hits, start=1):
        table.add_row(str(rank), f"{hit.score:.3f}", hit.id, hit.date or "", hit.title, author_line(hit.authors, hit.author_count))
    Console(soft_wrap=False).print(table)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="log progress and decisions")
@click.version_option(package_name="paperlens")
def main(verbose: bool) -> None:
    """paperlens: semantic search and recommendation for scientific papers."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


@main.command("ingest")
@click.argument("files", nargs=-1, type=click.Path(path_type=Path))
@click.option("--demo", is_flag=True, help="ingest the built-in demo corpus (a few dozen AI papers)")
@click.option("--format", "fmt", type=click.Choice(FORMATS), help="input format [default: from extension or content]")
@click.option("--model", help="sentence-transformers name or path (only for a new index)")
@click.option("--quiet", is_flag=True, help="no progress bar")
@click.option("--ray", "ray_address", metavar="ADDRESS",
              help="read and encode on a Ray cluster: 'auto' (RAY_ADDRESS, or the cluster 'ray start' left here), 'local' or HOST:PORT")
@index_options
@handle_errors
def ingest_command(files: tuple[Path, ...], demo: bool, fmt: str | None, model: str | None, quiet: bool, ray_address: str | None,
                   index: str | None, as_json: bool) -> None:
    """Read papers from FILES (JSONL, JSON, CSV, Parquet, BEIR folder, arXiv snapshot, OAI-PMH XML,
    listing text) and add them to the index. Re-ingesting a file adds nothing.

    With --ray, JSONL and Parquet files are read and the new or changed papers encoded on a Ray
    cluster; this process stays the one writer of the index."""
    sources = list(files) + ([DEMO_CORPUS] if demo else [])
    if not sources:
        raise InvalidInput("give at least one file to ingest (or --demo)")
    settings = _settings(index, model)
    papers, reports = [], []
    cluster = None
    if ray_address is not None:
        from .ray_ingest import join, read_on_cluster

        cluster = join(ray_address)
        if not as_json:
            click.echo(f"Ray cluster {cluster.address}: {cluster.nodes} nodes, {cluster.cpus:g} CPUs, {cluster.gpus:g} GPUs", err=True)
        results = iter(read_on_cluster(sources, fmt))
    else:
        results = (read_papers(path, fmt) for path in sources)
    for path, result in zip(sources, results):
        result.papers, oversized = skip_oversized(settings, result.papers)
        result.skipped.extend(oversized)
        papers.extend(result.papers)
        reports.append({"file": str(path), "format": result.format, "encoding": result.encoding, "layout": result.layout,
                        "read": len(result.papers),
                        "skipped": [{"line": s.line, "reason": s.reason} for s in result.skipped]})
        if not as_json:
            decoded = f" (not UTF-8: decoded as {result.encoding})" if result.encoding != "utf-8" else ""
            click.echo(f"{path}: {len(result.papers)} papers read as {result.format}{decoded}, {len(result.skipped)} skipped", err=True)
            if result.layout:
                click.echo(f"  {result.layout}", err=True)
            for skip in result.skipped[:10]:
                click.echo(f"  line {skip.line}: {skip.reason}", err=True)
            if len(result.skipped) > 10:
                click.echo(f"  … and {len(result.skipped) - 10} more", err=True)
    if not papers:
        raise NothingToIngest("nothing could be read from " + ", ".join(str(p) for p in sources))
    with open_library(settings, create=True) as library:
        encoder = None
        if cluster is not None:
            from .ray_ingest import RayEncoder

            encoder = RayEncoder(library.encoder_spec, cluster)
        report = ingest(library, papers, show_progress=not quiet and not as_json, encoder=encoder)
        total = len(library)
    summary = {"index": str(settings.index), "added": len(report.added), "updated": len(report.updated),
               "unchanged": len(report.unchanged), "merged": len(report.merged), "encoded": report.encoded, "total": total,
               "files": reports}
    if as_json:
        click.echo(json.dumps(summary))
    else:
        merged = f", {summary['merged']} merged into papers held under another id" if report.merged else ""
        click.echo(f"{settings.index}: {summary['added']} added, {summary['updated']} updated, "
                   f"{summary['unchanged']} unchanged{merged}; {total} papers in the index")


MODE_HELP = "dense (embeddings), bm25 (keywords) or hybrid (both, fused) [default: hybrid, or PAPERLENS_SEARCH_MODE]"
mode_option = click.option("--mode", type=click.Choice(MODES), help=MODE_HELP)
sort_option = click.option("--sort", type=click.Choice(SORTS), default="relevance", show_default=True,
                           help="date (newest first) or popularity reorder the relevant papers: the top max(k, PAPERLENS_SORT_POOL)")


@main.command("search")
@click.argument("query")
@mode_option
@sort_option
@filter_options()
@index_options
@handle_errors
def search_command(query: str, mode: str | None, sort: str, k: int, since, until, categories, min_popularity, authors, index,
                   as_json) -> None:
    """Free-text search."""
    with _open(index) as library:
        filters = make_filters(since, until, categories, min_popularity, authors)
        print_hits(search_text(library, query, k, filters, mode=mode, sort=sort), as_json)


@main.command("eval")
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--task", type=click.Choice(TASKS), default="search", show_default=True,
              help="search: queries are free text; similar: queries are papers (more like this), the query paper never counts")
@click.option("--by", type=click.Choice(["text", "id"]), default="text", show_default=True,
              help="similar task: paste each query paper's text (POST /similar) or add it and ask by id (GET /papers/{id}/similar)")
@mode_option
@click.option("--relevant-grade", type=click.IntRange(min=1), default=1, show_default=True,
              help="binary metrics (MAP, recall, MRR, R-precision) count judgments of this grade or more as relevant")
@click.option("--model", help="sentence-transformers name or path [default: the packaged MiniLM]")
@click.option("--cache", type=click.Path(path_type=Path), help="where the corpus is indexed [default: the parent of --index, indexes/]")
@click.option("--quiet", is_flag=True, help="no progress bars")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object as the last line")
@click.option("--index", "index", envvar="PAPERLENS_INDEX", help="index folder whose parent holds the cache [default: indexes/default]")
@handle_errors
def eval_command(folder: Path, task: str, by: str, mode: str | None, relevant_grade: int, model: str | None, cache: Path | None, quiet: bool,
                 as_json: bool, index: str | None) -> None:
    """Relevance on a BEIR folder (corpus.jsonl, queries.jsonl, qrels/test.tsv): nDCG@10, nDCG@20,
    MAP@100, Recall@100, MRR@10, R-precision. The corpus is encoded once into CACHE/eval-<hash> and reused."""
    settings = _settings(index, model)
    mode = mode or settings.search_mode
    result = evaluate_beir(folder, settings, mode, cache_root=cache, show_progress=not quiet, task=task, by=by,
                           relevant_grade=relevant_grade)
    values = result.as_json()
    if as_json:
        click.echo(json.dumps(values))
        return
    click.echo(f"{folder}: {result.queries} queries, {result.docs} documents, task {task}, mode {mode}")
    for metric in METRICS:
        click.echo(f"{metric:11} {values[metric]:.4f}")


@main.command("similar")
@click.argument("paper_id", required=False)
@click.option("--text", help="an abstract (or any text) that is not in the index; '-' reads stdin")
@mode_option
@sort_option
@filter_options()
@index_options
@handle_errors
def similar_command(paper_id, text, mode, sort, k, since, until, categories, min_popularity, authors, index, as_json) -> None:
    """Papers similar to PAPER_ID, or to a pasted --text."""
    if bool(paper_id) == bool(text):
        raise InvalidInput("give either a PAPER_ID or --text")
    filters = make_filters(since, until, categories, min_popularity, authors)
    with _open(index) as library:
        if paper_id:
            hits = similar_to_paper(library, paper_id, k, filters, mode, sort)
        else:
            hits = similar_to_text(library, sys.stdin.read() if text == "-" else text, k, filters, mode, sort)
        print_hits(hits, as_json)


@main.command("recommend")
@click.option("--like", "likes", multiple=True, required=True, help="a paper id you like (repeatable)")
@click.option("--dislike", "dislikes", multiple=True, help="a paper id you want less of (repeatable)")
@click.option("--strategy", type=click.Choice(STRATEGIES), default="grouped", show_default=True)
@mode_option
@filter_options()
@index_options
@handle_errors
def recommend_command(likes, dislikes, strategy, mode, k, since, until, categories, min_popularity, authors, index, as_json) -> None:
    """Papers like the ones you like, unlike the ones you dislike."""
    with _open(index) as library:
        hits = recommend(library, list(likes), list(dislikes), k, make_filters(since, until, categories, min_popularity, authors), strategy,
                         mode=mode)
        print_hits(hits, as_json)


@main.command("delete")
@click.argument("paper_ids", nargs=-1, required=True)
@index_options
@handle_errors
def delete_command(paper_ids, index, as_json) -> None:
    """Delete papers from the index."""
    with _open(index) as library:
        found = resolve_ids(library, paper_ids)
        deleted = delete(library, list(found.values()))
    missing = [pid for pid in paper_ids if pid not in found]
    if as_json:
        click.echo(json.dumps({"deleted": deleted, "missing": missing}))
    else:
        for pid in deleted:
            click.echo(f"deleted {pid}")
    if missing:
        if not as_json:
            click.echo(f"error: not in the index: {', '.join(missing)}", err=True)
        sys.exit(EXIT_USER_ERROR)


@main.command("info")
@index_options
@handle_errors
def info_command(index, as_json) -> None:
    """What an index holds: papers, model, layout."""
    with _open(index) as library:
        manifest = library.manifest
        info = {"index": str(library.folder), "papers": len(library), "model": library.model_name,
                "layout": manifest.layout if manifest else None, "dim": manifest.dim if manifest else None,
                "params": manifest.index_params if manifest else None,
                "updated": manifest.updated if manifest else None, "advice": _rebuild_advice(index_outdated(library))}
    if as_json:
        click.echo(json.dumps(info))
    else:
        for key, value in info.items():
            if key == "params" and value:
                value = ", ".join(f"{name}={setting}" for name, setting in value.items())
            if key != "advice" or value:
                click.echo(f"{key:8} {value}")


def _rebuild_advice(outdated: str | None) -> str | None:
    return f"{outdated} ('paperlens check --rebuild-index' rebuilds it from the stored vectors)" if outdated else None


@main.command("check")
@click.option("--repair/--no-repair", default=True, show_default=True, help="rebuild what disagrees with the store")
@click.option("--dedup", "merge_duplicates", is_flag=True, help="also merge papers held as several entries (as 'paperlens dedup')")
@click.option("--rebuild-index", is_flag=True,
              help="rebuild vectors.faiss from the stored vectors when it was built with older, slower parameters")
@index_options
@handle_errors
def check_command(repair: bool, merge_duplicates: bool, rebuild_index: bool, index: str | None, as_json: bool) -> None:
    """Verify an index (SQLite integrity, a vector per paper, FAISS ids = store ids) and repair it;
    report papers held as several entries (merged only with --dedup) and an index that a rebuild
    would make faster (rebuilt only with --rebuild-index).

    Exits 1 when a problem remains (a damaged SQLite file cannot be repaired here)."""
    with _open(index, repair=repair) as library:
        report = check_library(library, repair=repair, merge_duplicates=merge_duplicates, rebuild_index=rebuild_index)
    print_check(report, as_json)
    if not report.ok:
        sys.exit(EXIT_USER_ERROR)


def print_check(report: CheckReport, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({**asdict(report), "ok": report.ok}))
        return
    click.echo(f"{report.index}: {report.papers} papers, {report.vectors} vectors, {report.faiss} in FAISS, "
               f"SQLite {', '.join(report.integrity)}")
    for note in report.repaired:
        click.echo(f"repaired: {note}")
    for note in report.advice:
        click.echo(f"advice: {_rebuild_advice(note)}")
    if report.duplicates:
        click.echo(f"duplicates: {sum(len(g) - 1 for g in report.duplicates)} entries are other records of "
                   f"{len(report.duplicates)} papers ('paperlens dedup' merges them):")
        print_groups(report.duplicates)
    for problem in report.problems:
        click.echo(f"error: {problem}", err=True)
    if report.ok:
        click.echo("ok")


def print_groups(groups: list[list[str]], limit: int = 10) -> None:
    for group in groups[:limit]:
        click.echo(f"  {group[0]} = {', '.join(group[1:])}")
    if len(groups) > limit:
        click.echo(f"  … and {len(groups) - limit} more")


@main.command("dedup")
@click.option("--dry-run", is_flag=True, help="list the papers held as several entries, merge nothing")
@index_options
@handle_errors
def dedup_command(dry_run: bool, index: str | None, as_json: bool) -> None:
    """Merge papers held as several entries (a listing's and an arXiv record of one paper) into the
    oldest: the others' ids become its aliases, so every id, like and collection keeps working."""
    with _open(index) as library:
        report = dedup(library, dry_run=dry_run)
        total = len(library)
    if as_json:
        click.echo(json.dumps({"groups": report.groups, "entries": report.entries, "merged": report.merged, "total": total}))
        return
    verb = "merged" if report.merged else "would merge"
    click.echo(f"{library.folder}: {verb} {report.entries} entries into {len(report.groups)} papers; {total} papers in the index")
    print_groups(report.groups)


LOOPBACK = ("127.0.0.1", "::1", "localhost")


def check_exposure(host: str, settings: Settings, allow_public: bool) -> str:
    """Without API keys anyone who reaches the server may write: listen on loopback only, unless told."""
    if settings.api_keys():
        return f"writes need an X-API-Key ({len(settings.api_keys())} key(s) configured)"
    if host in LOOPBACK or host.startswith("127."):
        return "no API key set: writes are open to anyone on this machine"
    if not (allow_public or settings.allow_public):
        raise InvalidInput(
            f"refusing to listen on {host} without an API key: anyone who can reach it could add and delete papers. "
            "Set PAPERLENS_API_KEY, or pass --allow-public if this network is trusted."
        )
    return f"WARNING: no API key set and listening on {host}: anyone who can reach it may add and delete papers"


def listen_socket(host: str, port: int) -> socket.socket:
    """Bound before the index and the model are loaded: a busy port is one line at once, not
    uvicorn's log and exit code 3 after the start-up work."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart need not wait out TIME_WAIT
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise PaperlensError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


@main.command("serve")
@click.option("--host", default=None, help="address to listen on [default: PAPERLENS_HOST, or Settings.host]")
@click.option("--port", type=int, default=None, help="port [default: PAPERLENS_PORT, or Settings.port]")
@click.option("--allow-public", is_flag=True, help="listen beyond loopback without an API key")
@click.option("--create", is_flag=True, help="serve an empty new index when --index is not one (papers come by POST /papers)")
@click.option("--index", "index", envvar="PAPERLENS_INDEX", help="index folder [default: indexes/default]")
@click.option("--ray", "ray_address", help="serve on the Ray cluster at this address ('auto', 'local', HOST:PORT) with Ray Serve")
@click.option("--replicas", type=click.IntRange(min=1), default=1, show_default=True, help="copies of the app on the cluster (--ray)")
@handle_errors
def serve_command(host: str | None, port: int | None, allow_public: bool, create: bool, index: str | None,
                  ray_address: str | None, replicas: int) -> None:
    """Serve the HTTP API (docs at /docs). The index is checked and repaired before it listens.

    With --ray, the same API runs on Ray Serve: --replicas copies over one index folder, or one
    deployment per shard over a folder made by 'paperlens shard'."""
    import uvicorn

    from .api import create_app
    from .shards import PartialAnswers, ShardedLibrary

    settings = _settings(index)
    host = host or settings.host
    port = port or settings.port
    exposure = check_exposure(host, settings, allow_public)
    if ray_address is not None:
        from .ray_serve import serve_forever

        click.echo(f"paperlens: {exposure}", err=True)
        serve_forever(settings, ray_address, replicas, host, port, say=lambda line: click.echo(line, err=True))
        return
    sock = listen_socket(host, port)
    sys.setswitchinterval(settings.gil_switch_ms / 1000)
    try:
        library = _start(settings, create)
        try:
            click.echo(f"paperlens: serving {len(library)} papers from {settings.index} on http://{host}:{port} "
                       f"(docs: /docs); {exposure}", err=True)
            # Idle connections are kept 75 s (nginx's default), longer than clients keep theirs (httpx 5 s,
            # browsers 60 s or more): with uvicorn's 5 s, a client reusing a connection the server had just
            # closed got a read error under benchmarks/load.py --rate.
            app = create_app(settings, library)
            if isinstance(library, ShardedLibrary):  # its shards opened in this process
                app.add_middleware(PartialAnswers)
            server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", timeout_keep_alive=75))
            try:
                server.run(sockets=[sock])
            except SystemExit:  # uvicorn's exit on a failed start-up, after logging why
                server.started = False
            if not server.started:
                raise PaperlensError(f"the server on {host}:{port} failed to start (see the log above)")
        finally:
            library.close()
    finally:
        sock.close()


def _start(settings: Settings, create: bool) -> Library:
    """Open, check and repair the index and load the model, as 'serve' does before it listens;
    whatever fails is one line (handle_errors), not a traceback."""
    from .api import startup_check
    from .shards import is_sharded, open_local_shards

    if is_sharded(settings.index):  # a folder of 'paperlens shard': every shard in this process
        return open_local_shards(settings, settings.index)
    try:
        library = open_library(settings, create=create, repair=True)
    except IndexNotFound as exc:
        raise IndexNotFound(f"{exc}, or pass --create to serve an empty new one") from None
    except PaperlensError:
        raise
    except Exception as exc:
        logging.getLogger(__name__).debug("start-up failed", exc_info=True)
        raise PaperlensError(f"could not open {settings.index}: {exc.__class__.__name__}: {exc}") from None
    try:
        for note in startup_check(library).repaired:
            click.echo(f"paperlens: repaired: {note}", err=True)
        if library.index is not None:
            library.encoder  # noqa: B018 -- fail here, with a message, if the model cannot load
    except Exception as exc:
        library.close()
        if isinstance(exc, PaperlensError):
            raise
        logging.getLogger(__name__).debug("start-up failed", exc_info=True)
        raise PaperlensError(f"could not start on {settings.index}: {exc.__class__.__name__}: {exc}") from None
    return library


# --- users, feeds and digests --------------------------------------------------------------------


def _index_option(func: Callable) -> Callable:
    return click.option("--index", "index", envvar="PAPERLENS_INDEX", help="index folder [default: indexes/default]")(func)


def _user_id(text: str) -> int:
    if not text.isdigit():
        raise InvalidInput(f"user must be a numeric id (as printed by 'paperlens user add'), got {text[:40]!r}")
    return int(text)


def print_feed(items: list, as_json: bool) -> None:
    from .exports import reason_text

    if as_json:
        click.echo(json.dumps({"results": [{**asdict(i.hit), "reason": i.reason, "interest": i.interest} for i in items]},
                              ensure_ascii=False))
        return
    if not items:
        click.echo("no results")
    for rank, item in enumerate(items, start=1):
        click.echo(f"{rank:>3}. {item.hit.title} [{item.hit.id}] {item.hit.date or ''}")
        click.echo(f"     {reason_text(item.reason)}")


def feed_options(k: int = 10) -> Callable[[Callable], Callable]:
    """What a feed can be asked for, as the API's feed routes: -k, the filters and --mode."""

    def decorate(func: Callable) -> Callable:
        return filter_options(k, "papers")(mode_option(func))

    return decorate


output_option = click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="write here instead of stdout")


def emit_feed(index: str | None, user: str, k: int, fmt: str, filter_args: tuple, mode: str | None, collection: str | None = None,
              output: Path | None = None, as_json: bool = False) -> None:
    """A feed through ``exports.feed_document``, as the API builds it: a list with reasons (or its JSON),
    or the Atom / BibTeX document on stdout or in ``output``."""
    from .exports import feed_document

    with _open(index) as library:
        document = feed_document(library, _user_id(user), k, fmt, make_filters(*filter_args), mode=mode, collection=collection)
    if fmt == "json" and not output:
        print_feed(document.items, as_json)
        return
    text = json.dumps(document.body, ensure_ascii=False) if fmt == "json" else document.text()
    if output:
        output.write_text(text, encoding="utf-8")
        click.echo(f"wrote {document.count} papers to {output}", err=True)
    else:
        click.echo(text)


@main.group("user")
def user_group() -> None:
    """Users: likes, dislikes, interests, collections, feeds and exports."""


@user_group.command("add")
@click.argument("name")
@index_options
@handle_errors
def user_add_command(name: str, index: str | None, as_json: bool) -> None:
    """Create a user; prints their id and, this once, their token (X-User-Token for the API)."""
    from .users import create_user

    with _open(index) as library:
        user = create_user(library, name)
    click.echo(json.dumps(asdict(user)) if as_json else f"user {user.id}: {user.name}\ntoken: {user.token}")


@user_group.command("list")
@index_options
@handle_errors
def user_list_command(index: str | None, as_json: bool) -> None:
    """Every user: id, name, and how many interactions, interests and collections they have (as GET /users)."""
    from .users import list_users

    with _open(index) as library:
        found = list_users(library)
    if as_json:
        click.echo(json.dumps({"users": [asdict(user) for user in found]}, ensure_ascii=False))
        return
    if not found:
        click.echo("no users; add one with 'paperlens user add NAME'")
    for user in found:
        click.echo(f"{user.id:>4}  {user.name}  ({user.interactions} interactions, {len(user.interests)} interests, "
                   f"{len(user.collections)} collections)")


def _interaction_command(kind: str) -> Callable:
    @index_options
    @handle_errors
    def command(user: str, paper_id: str, index: str | None, as_json: bool) -> None:
        from .users import record_interaction

        with _open(index) as library:
            row = record_interaction(library, _user_id(user), paper_id, kind)
        click.echo(json.dumps(asdict(row)) if as_json else f"user {user}: {kind} {paper_id}")

    command.__doc__ = f"Record that USER gives PAPER_ID a {kind}."
    return command


for _kind in ("like", "dislike", "save"):
    user_group.command(_kind)(click.argument("user")(click.argument("paper_id")(_interaction_command(_kind))))


@user_group.command("interests")
@click.argument("user")
@click.argument("texts", nargs=-1)
@click.option("--clear", is_flag=True, help="remove all of USER's interests")
@index_options
@handle_errors
def user_interests_command(user: str, texts: tuple[str, ...], clear: bool, index: str | None, as_json: bool) -> None:
    """Show USER's free-text interests, or replace them with TEXTS (one interest each, e.g.
    'video question answering'). Interests steer the feed like liked papers, and do not fade."""
    from .users import get_interests, set_interests

    if clear and texts:
        raise InvalidInput("give interests or --clear, not both")
    with _open(index) as library:
        user_id = _user_id(user)
        if texts or clear:
            interests = set_interests(library, user_id, list(texts))
        else:
            interests = [row.text for row in get_interests(library, user_id)]
    if as_json:
        click.echo(json.dumps({"interests": interests}, ensure_ascii=False))
    else:
        click.echo("\n".join(interests) if interests else f"user {user_id} has no interests")


@user_group.command("feed")
@click.argument("user")
@feed_options()
@click.option("--format", "fmt", type=click.Choice(["atom", "bibtex"]), help="the feed as a document [default: a list with reasons]")
@output_option
@index_options
@handle_errors
def user_feed_command(user: str, k: int, since, until, categories, min_popularity, authors, mode: str | None, fmt: str | None,
                      output: Path | None, index: str | None, as_json: bool) -> None:
    """USER's feed, each paper with the reason it is there."""
    emit_feed(index, user, k, fmt or "json", (since, until, categories, min_popularity, authors), mode, output=output, as_json=as_json)


@user_group.command("export")
@click.argument("user")
@click.option("--format", "fmt", type=click.Choice(["atom", "bibtex"]), required=True)
@feed_options(k=20)
@output_option
@_index_option
@handle_errors
def user_export_command(user: str, fmt: str, k: int, since, until, categories, min_popularity, authors, mode: str | None,
                        output: Path | None, index: str | None) -> None:
    """USER's feed as an Atom feed or a BibTeX file (as GET /users/USER/feed.atom or feed.bib)."""
    emit_feed(index, user, k, fmt, (since, until, categories, min_popularity, authors), mode, output=output)


@user_group.command("feed-url")
@click.argument("user")
@click.option("--collection", help="the feed of this collection instead of USER's own feed")
@click.option("--revoke", is_flag=True, help="stop the current URL working, and make no new one")
@index_options
@handle_errors
def user_feed_url_command(user: str, collection: str | None, revoke: bool, index: str | None, as_json: bool) -> None:
    """A secret URL of USER's feed (or a collection's) for feed readers, which cannot send a token:
    anyone with it can read the feed. Making one revokes the earlier one; links use PAPERLENS_PUBLIC_URL,
    else the address 'paperlens serve' listens on."""
    from .exports import link_base, secret_feed_urls
    from .users import make_feed_secret, revoke_feed_secret

    with _open(index) as library:
        if revoke:
            revoke_feed_secret(library, _user_id(user), collection)
            click.echo(json.dumps({"revoked": True}) if as_json else "revoked")
            return
        urls = secret_feed_urls(link_base(library.settings), make_feed_secret(library, _user_id(user), collection))
    click.echo(json.dumps(urls) if as_json else f"atom: {urls['atom']}\nbibtex: {urls['bibtex']}")


# Collections: the API's /users/{id}/collections routes, one command each.


@user_group.group("collection")
def collection_group() -> None:
    """USER's collections: named sets of papers, each with a feed of more like it."""


def collection_json(collection: CollectionRow) -> dict[str, Any]:
    """As the API's CollectionOut."""
    return {"name": collection.name, "created_at": collection.created_at, "papers": collection.paper_ids}


def print_collection(library: Library, collection: CollectionRow, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(collection_json(collection), ensure_ascii=False))
        return
    click.echo(f"{collection.name}: {len(collection.paper_ids)} papers (created {collection.created_at})")
    for paper_id in collection.paper_ids:
        stored = library.store.get(paper_id)
        click.echo(f"  {paper_id}  {stored.paper.title if stored else '(no longer in the index)'}")


@collection_group.command("list")
@click.argument("user")
@index_options
@handle_errors
def collection_list_command(user: str, index: str | None, as_json: bool) -> None:
    """USER's collections and how many papers each holds."""
    from .users import list_collections

    with _open(index) as library:
        user_id = _user_id(user)
        collections = list_collections(library, user_id)
    if as_json:
        click.echo(json.dumps({"collections": [collection_json(c) for c in collections]}, ensure_ascii=False))
        return
    if not collections:
        click.echo(f"user {user_id} has no collections")
    for collection in collections:
        click.echo(f"{collection.name}: {len(collection.paper_ids)} papers")


@collection_group.command("create")
@click.argument("user")
@click.argument("name")
@index_options
@handle_errors
def collection_create_command(user: str, name: str, index: str | None, as_json: bool) -> None:
    """Create the collection NAME (nothing changes when USER has it already)."""
    from .users import put_collection

    with _open(index) as library:
        collection, created = put_collection(library, _user_id(user), name)
        if as_json:
            print_collection(library, collection, as_json)
        else:
            click.echo(f"{'created' if created else 'already there:'} {collection.name}")


@collection_group.command("show")
@click.argument("user")
@click.argument("name")
@index_options
@handle_errors
def collection_show_command(user: str, name: str, index: str | None, as_json: bool) -> None:
    """The papers in USER's collection NAME."""
    from .users import get_collection

    with _open(index) as library:
        print_collection(library, get_collection(library, _user_id(user), name), as_json)


@collection_group.command("add")
@click.argument("user")
@click.argument("name")
@click.argument("paper_id")
@index_options
@handle_errors
def collection_add_command(user: str, name: str, paper_id: str, index: str | None, as_json: bool) -> None:
    """Add PAPER_ID to USER's collection NAME (made with 'user collection create')."""
    from .errors import CollectionNotFound
    from .users import add_to_collection

    with _open(index) as library:
        try:
            collection = add_to_collection(library, _user_id(user), name, paper_id)
        except CollectionNotFound as exc:
            raise InvalidInput(f"{exc}; create it with: paperlens user collection create {user} {shlex.quote(name)}") from None
        print_collection(library, collection, as_json)


@collection_group.command("remove")
@click.argument("user")
@click.argument("name")
@click.argument("paper_id")
@index_options
@handle_errors
def collection_remove_command(user: str, name: str, paper_id: str, index: str | None, as_json: bool) -> None:
    """Take PAPER_ID out of USER's collection NAME."""
    from .users import remove_from_collection

    with _open(index) as library:
        print_collection(library, remove_from_collection(library, _user_id(user), name, check_paper_id(paper_id)), as_json)


@collection_group.command("delete")
@click.argument("user")
@click.argument("name")
@index_options
@handle_errors
def collection_delete_command(user: str, name: str, index: str | None, as_json: bool) -> None:
    """Delete USER's collection NAME (the papers stay in the index)."""
    from .users import delete_collection

    with _open(index) as library:
        delete_collection(library, _user_id(user), name)
    click.echo(json.dumps({"deleted": name}) if as_json else f"deleted {name}")


@collection_group.command("feed")
@click.argument("user")
@click.argument("name")
@feed_options()
@click.option("--format", "fmt", type=click.Choice(["atom", "bibtex"]), help="the feed as a document [default: a list with reasons]")
@output_option
@index_options
@handle_errors
def collection_feed_command(user: str, name: str, k: int, since, until, categories, min_popularity, authors, mode: str | None,
                            fmt: str | None, output: Path | None, index: str | None, as_json: bool) -> None:
    """More like USER's collection NAME; USER's dislikes and the papers they have seen stay out."""
    emit_feed(index, user, k, fmt or "json", (since, until, categories, min_popularity, authors), mode, name, output, as_json)


@main.command("digest")
@click.argument("user", required=False)
@click.option("--all", "all_users", is_flag=True, help="every user with an e-mail address: the new papers of their feed since their last digest")
@click.option("--to", "to", help="e-mail address; sent through PAPERLENS_SMTP_HOST when that is set")
@feed_options()
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="HTML file when not sending [default: digest-USER-DATE.html]")
@index_options
@handle_errors
def digest_command(user: str | None, all_users: bool, to: str | None, k: int, since, until, categories, min_popularity, authors,
                   mode: str | None, output: Path | None, index: str | None, as_json: bool) -> None:
    """USER's feed as an HTML e-mail: sent over SMTP when configured, else written to a file.
    With --all, every user's new papers to their own address ('paperlens user set-email')."""
    import datetime as dt
    import smtplib

    from .exports import feed_document, link_base, send_email

    if all_users:
        if user or to or output or since or until or categories or authors or min_popularity is not None:
            raise InvalidInput("--all sends each user their new papers to their own address: give no USER, --to, -o or filters")
        digest_all(index, k, mode, as_json)
        return
    if not user:
        raise InvalidInput("give a USER (a numeric id), or --all for every user with an e-mail address")
    with _open(index) as library:
        user_id = _user_id(user)
        document = feed_document(library, user_id, k, "html", make_filters(since, until, categories, min_popularity, authors), mode=mode)
        settings = library.settings
    if not settings.public_url:
        click.echo(f"warning: PAPERLENS_PUBLIC_URL is not set, so the digest links to {link_base(settings)}; "
                   "set it to the address readers reach the server at", err=True)
    today = dt.date.today().isoformat()
    if to and settings.smtp_host:
        try:
            send_email(document.text(), f"paperlens: {document.count} papers for {document.user.name}, {today}", to, settings)
        except (smtplib.SMTPException, OSError) as exc:
            raise PaperlensError(f"could not send the digest through {settings.smtp_host}:{settings.smtp_port}: {exc}") from None
        click.echo(json.dumps({"sent": to, "papers": document.count}) if as_json else f"sent {document.count} papers to {to}")
        return
    path = output or Path(f"digest-{user_id}-{today}.html")
    path.write_text(document.text(), encoding="utf-8")
    reason = "" if not to else " (PAPERLENS_SMTP_HOST is not set, so nothing was sent)"
    click.echo(json.dumps({"wrote": str(path), "papers": document.count, "sent": None}) if as_json else f"wrote {path}{reason}")


# --- importing a reference manager's library ------------------------------------------------------


@user_group.command("import")
@click.argument("user")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--as", "target", type=click.Choice(["like", "save", "collection"]), help="what the papers become [default: like]")
@click.option("--collection", help="the collection to put them in (made if missing); implies --as collection")
@click.option("--format", "fmt", type=click.Choice(["bibtex", "csl-json", "ris", "zotero-rdf"]),
              help="[default: from the file name, else the content]")
@index_options
@handle_errors
def user_import_command(user: str, file: Path, target: str | None, collection: str | None, fmt: str | None,
                        index: str | None, as_json: bool) -> None:
    """Import FILE (a BibTeX, CSL-JSON or RIS export of Zotero, Mendeley, JabRef, ...) as USER's likes,
    saves or a collection: entries are matched by DOI, arXiv id, then title; one the index lacks is
    added as a paper when it has an abstract. Importing the same file again changes nothing."""
    report = import_file(index, _user_id(user), file, fmt, target, collection)
    if as_json:
        click.echo(json.dumps(asdict(report), ensure_ascii=False))
        return
    print_import(report)


def import_file(index: str | None, user_id: int, file: Path, fmt: str | None = None, target: str | None = None,
                collection: str | None = None) -> ImportReport:
    """``imports.import_library`` on a file, refused by its size before it is read (the API's body limit)."""
    check_target(target, collection)
    with _open(index) as library:
        if not file.is_file():
            raise InvalidInput(f"{file}: no such file")
        size, limit = file.stat().st_size, library.settings.max_body_bytes
        if size > limit:
            raise InvalidInput(f"{file} is {size:,} bytes; the limit is {limit:,} (PAPERLENS_MAX_BODY_BYTES)")
        return import_library(library, user_id, file.read_bytes(), fmt, file.name, target, collection)


def print_import(report: ImportReport) -> None:
    """Counts per outcome, then one line per entry."""
    from rich.console import Console
    from rich.table import Table

    into = f"collection {report.collection!r}" if report.target == "collection" else f"{report.target}s"
    click.echo(f"user {report.user}: {report.format} file imported as {into}: {report.recorded} new; "
               f"papers added to the index: {report.papers_added}")
    click.echo("  ".join(f"{how}: {count}" for how, count in report.counts.items()))
    table = Table(pad_edge=False)
    for column, style in (("entry", "cyan"), ("match", ""), ("paper", "cyan"), ("title / reason", "")):
        table.add_column(column, style=style, overflow="fold")
    for entry in report.entries:
        table.add_row(entry.key, entry.match, entry.paper_id or "", entry.reason if entry.reason else entry.title)
    Console(soft_wrap=False).print(table)

# --- backups --------------------------------------------------------------------------------------


@main.command("backup")
@click.argument("dest", type=click.Path(path_type=Path))
@index_options
@handle_errors
def backup_command(dest: Path, index: str | None, as_json: bool) -> None:
    """Back up an index into the new folder DEST: its store (papers, vectors, users), manifest and
    session key. Safe while a server or an ingest writes it; the FAISS and keyword files are rebuilt at restore."""
    from .backup import backup

    info = backup(_settings(index).index, dest)
    if as_json:
        click.echo(json.dumps({"backup": str(dest), **asdict(info)}))
    else:
        click.echo(f"backed up {info.papers} papers and {info.users} users (write {info.generation}) to {dest}")


@main.command("restore")
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--force", is_flag=True, help="replace an index folder that is not empty (its papers and users are lost)")
@index_options
@handle_errors
def restore_command(source: Path, force: bool, index: str | None, as_json: bool) -> None:
    """Restore the backup in SOURCE into the index folder: the store copied, the FAISS and keyword
    files rebuilt from it (no re-encoding), then checked as 'paperlens check' does."""
    from .backup import restore

    settings = _settings(index)
    print_check(restore(source, settings.index, settings, force=force), as_json)
# --- harvesting and digests for all ---------------------------------------------------------------


def digest_all(index: str | None, k: int = 10, mode: str | None = None, as_json: bool = False) -> None:
    """Every user's digest (digests.send_digests); exit 1 when one could not be sent."""
    from .digests import send_digests

    with _open(index) as library:
        report = send_digests(library, k, mode)
    summary = report.as_dict()
    if as_json:
        click.echo(json.dumps(summary))
    else:
        click.echo(f"digests: {summary['sent']} sent ({summary['papers']} papers), {summary['nothing_new']} with nothing new, "
                   f"{summary['no_address']} users without an e-mail address, {len(report.failed)} failed")
    if report.failed:
        for user_id, why in report.failed.items():
            click.echo(f"error: the digest of user {user_id} was not sent: {why}", err=True)
        sys.exit(EXIT_USER_ERROR)


@user_group.command("set-email")
@click.argument("user")
@click.argument("address", required=False)
@click.option("--clear", is_flag=True, help="remove USER's address (no more digests)")
@index_options
@handle_errors
def user_set_email_command(user: str, address: str | None, clear: bool, index: str | None, as_json: bool) -> None:
    """Where USER's digests go ('paperlens digest --all')."""
    from .users import set_email

    if clear == bool(address):
        raise InvalidInput("give an ADDRESS, or --clear to remove the address")
    with _open(index) as library:
        stored = set_email(library, _user_id(user), None if clear else address)
    click.echo(json.dumps({"user": int(user), "email": stored}) if as_json else
               f"user {user}: digests go to {stored}" if stored else f"user {user}: no e-mail address")


def run_harvest(index: str | None, source: Source, from_: str | None = None, until: str | None = None, quiet: bool = False,
                max_retries: int = 5, digest: bool = False, pause: float | None = None) -> dict[str, Any]:
    """One harvest into the index (created if missing), with a progress bar unless ``quiet``; the
    summary, with the digests' when ``digest``."""
    from tqdm import tqdm

    from .digests import send_digests
    from .harvest import harvest

    settings = _settings(index)
    with open_library(settings, create=True) as library, \
            tqdm(unit=" records", desc="harvest", disable=quiet, file=sys.stderr, dynamic_ncols=True) as bar:
        pages = 0

        def on_page(records: int) -> None:
            nonlocal pages
            pages += 1
            bar.update(records)
            bar.set_postfix(pages=pages)

        report = harvest(library, source, from_, until, on_page, max_retries=max_retries, pause=pause)
        summary = {"index": str(settings.index), **report.as_dict(), "total": len(library)}
        if digest:
            summary["digests"] = send_digests(library).as_dict()
    return summary


def print_harvest(summary: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(summary))
        return
    since = f" from {summary['from']}" if summary["from"] else ""
    click.echo(f"{summary['url']}{since}: {summary['records']} records in {summary['pages']} pages, {summary['seconds']:.1f} s; "
               f"{summary['added']} added, {summary['updated']} updated, {summary['unchanged']} unchanged, "
               f"{summary['deleted']} deleted ({summary['unknown_deleted']} deletions of papers not held), "
               f"{summary['skipped']} skipped; {summary['total']} papers in the index")
    if "digests" in summary:
        d = summary["digests"]
        click.echo(f"digests: {d['sent']} sent, {d['nothing_new']} with nothing new, {d['no_address']} without an address, "
                   f"{len(d['failed'])} failed")


@main.command("harvest")
@click.argument("url", required=False)
@click.option("--set", "set_spec", help="an OAI-PMH set, e.g. cs or physics:hep-th [default: all]")
@click.option("--from", "from_", help="first day, YYYY-MM-DD [default: the day the last complete harvest began]")
@click.option("--until", help="last day, YYYY-MM-DD [default: up to the present]")
@click.option("--metadata-prefix", "prefix", type=click.Choice(["arXiv", "arXivRaw", "oai_dc"]), default="arXiv", show_default=True)
@click.option("--every", help="keep running: harvest again after this long (s, m, h or d: 24h)")
@click.option("--digest", is_flag=True, help="after each harvest, e-mail every user the new papers of their feed")
@click.option("--max-retries", type=click.IntRange(min=0), default=5, show_default=True, help="retries of a page the server answers 503")
@click.option("--pause", type=click.FloatRange(min=0), help="seconds between requests [default: 3 at arXiv, as it asks; else 0]")
@click.option("--quiet", is_flag=True, help="no progress bar")
@index_options
@handle_errors
def harvest_command(url: str | None, set_spec: str | None, from_: str | None, until: str | None, prefix: str, every: str | None,
                    digest: bool, max_retries: int, pause: float | None, quiet: bool, index: str | None, as_json: bool) -> None:
    """Add the new papers of an OAI-PMH interface [default: arXiv's] to the index, page by page.

    A second run asks only from the day the last one began; a run that was killed goes on from its
    last committed page. Deleted records delete their papers; a new version updates its paper."""
    from .harvest import ARXIV_OAI, Source, check_range, parse_interval, run_every

    source = Source(url or ARXIV_OAI, set_spec, prefix)
    check_range(from_, until)
    quiet = quiet or as_json  # the bar would only interleave with the JSON on a terminal
    if digest and not _settings(index).smtp_host:
        raise InvalidInput("--digest sends e-mail: set PAPERLENS_SMTP_HOST (and PAPERLENS_SMTP_PORT, PAPERLENS_SMTP_FROM)")
    if every is None:
        print_harvest(run_harvest(index, source, from_, until, quiet, max_retries, digest, pause), as_json)
        return
    if until:
        raise InvalidInput("--every harvests up to the present each time: leave out --until")
    interval = parse_interval(every)
    first = [from_]

    def job() -> None:  # --from only for the first run; later runs go on from where the last one ended
        start, first[:] = first[0], [None]
        print_harvest(run_harvest(index, source, start, None, quiet, max_retries, digest, pause), as_json)

    try:
        run_every(job, interval)
    except KeyboardInterrupt:
        click.echo("stopped", err=True)


# --- sharded collections -----------------------------------------------------------------------


@main.command("shard")
@click.option("--index", "index", envvar="PAPERLENS_INDEX", required=True, help="the index folder to split")
@click.option("--shards", type=int, required=True, help="number of shards")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="new folder for the shards and their map")
@click.option("--json", "as_json", is_flag=True, help="print the shard map as JSON")
@handle_errors
def shard_command(index: str, shards: int, out: Path, as_json: bool) -> None:
    """Split an index into shard folders by a hash of the paper id, from its stored vectors (no
    re-encoding); serve the result with 'paperlens serve --index OUT --ray ADDRESS'."""
    from dataclasses import asdict

    from .shards import shard_collection

    settings = _settings(index)
    shard_map = shard_collection(settings, Path(index), shards, out, progress=None if as_json else lambda line: click.echo(line, err=True))
    if as_json:
        click.echo(json.dumps(asdict(shard_map)))
    else:
        click.echo(f"{shard_map.papers} papers in {shard_map.shards} shards under {out} (map: {out / 'shards.json'})")
@main.command("trending")
@click.option("--days", type=click.IntRange(1, 3650), default=7, show_default=True, help="length of the window in days")
@click.option("--category", help="only this category; 'cs' takes 'cs.LG'")
@click.option("--as-of", "as_of", help="last day of the window, YYYY-MM-DD [default: the newest paper date not after today]")
@click.option("--by-category", is_flag=True, help="also the most popular of each category")
@click.option("-k", "k", default=10, show_default=True, help="number of papers (per category with --by-category)")
@index_options
@handle_errors
def trending_command(days: int, category: str | None, as_of: str | None, by_category: bool, k: int, index: str | None,
                     as_json: bool) -> None:
    """The most popular papers of the last DAYS days (upvotes, citations: what the records carry)."""
    from .trending import trending

    with _open(index) as library:
        result = trending(library, days, k, category, as_of, by_category)
    if as_json:
        click.echo(json.dumps(asdict(result), ensure_ascii=False))
        return
    if result.note:
        click.echo(result.note)
        return
    click.echo(f"most popular{' in ' + category if category else ''}, {result.since} to {result.until}:")
    print_trend(result.papers)
    for group in result.by_category:
        click.echo(f"\n{group.category}:")
        print_trend(group.papers)


def print_trend(hits: list[Hit]) -> None:
    for rank, hit in enumerate(hits, start=1):
        click.echo(f"{rank:>3}. {hit.popularity:>6g}  {hit.date}  {hit.title} [{hit.id}]")


if __name__ == "__main__":
    main()
