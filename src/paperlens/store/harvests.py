"""OAI-PMH harvests: per source, the day the next run asks from and the progress of a run under way;
and a row per finished run (harvest.py writes them, /metrics reads them)."""

from __future__ import annotations

from dataclasses import dataclass

from .db import TableGroup, now


@dataclass
class HarvestState:
    """What an index remembers of one source (URL, set and metadata prefix)."""

    next_from: str | None = None  # the day the next run asks from: the response date of the last complete run
    run_from: str | None = None  # a run under way (or killed): its from and until ...
    run_until: str | None = None
    run_response_day: str | None = None  # ... the day the server gave in its first answer ...
    token: str | None = None  # ... and the resumption token of its last committed page


@dataclass
class HarvestRun:
    """One finished run, as /metrics reports it."""

    source: str
    set_spec: str
    prefix: str
    started_at: str
    finished_at: str
    ok: bool
    records: int
    added: int
    updated: int
    deleted: int
    unchanged: int
    pages: int
    seconds: float
    error: str | None = None


@dataclass
class HarvestTotals:
    """Runs and records of one source, summed over its runs."""

    source: str
    set_spec: str
    prefix: str
    runs_ok: int
    runs_failed: int
    records: int
    added: int
    updated: int
    deleted: int
    unchanged: int
    last_success: str | None


class HarvestStore(TableGroup):
    """The SQL of harvests."""

    def state(self, source: str, set_spec: str, prefix: str) -> HarvestState:
        row = self.conn.execute(
            "SELECT next_from, run_from, run_until, run_response_day, token FROM harvest_state "
            "WHERE source = ? AND set_spec = ? AND prefix = ?", (source, set_spec, prefix)).fetchone()
        return HarvestState(*row) if row else HarvestState()

    def put_state(self, source: str, set_spec: str, prefix: str, state: HarvestState) -> None:
        self.conn.execute(
            "INSERT INTO harvest_state(source, set_spec, prefix, next_from, run_from, run_until, run_response_day, token, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(source, set_spec, prefix) DO UPDATE SET "
            "next_from = excluded.next_from, run_from = excluded.run_from, run_until = excluded.run_until, "
            "run_response_day = excluded.run_response_day, token = excluded.token, updated_at = excluded.updated_at",
            (source, set_spec, prefix, state.next_from, state.run_from, state.run_until, state.run_response_day, state.token, now()))

    def add_run(self, run: HarvestRun) -> None:
        self.conn.execute(
            "INSERT INTO harvest_runs(source, set_spec, prefix, started_at, finished_at, ok, records, added, updated, deleted, "
            "unchanged, pages, seconds, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (run.source, run.set_spec, run.prefix, run.started_at, run.finished_at, int(run.ok), run.records, run.added,
             run.updated, run.deleted, run.unchanged, run.pages, run.seconds, run.error))

    def totals(self) -> list[HarvestTotals]:
        rows = self.conn.execute(
            "SELECT source, set_spec, prefix, SUM(ok), SUM(1 - ok), SUM(records), SUM(added), SUM(updated), SUM(deleted), "
            "SUM(unchanged), MAX(CASE WHEN ok THEN finished_at END) FROM harvest_runs "
            "GROUP BY source, set_spec, prefix ORDER BY source, set_spec, prefix")
        return [HarvestTotals(*row) for row in rows]
