"""Digest e-mails for every user with an address: the new papers of their feed since their last digest.

'New' is by when this index stored a paper (a harvest, an ingest), not by the paper's own date,
which for arXiv is the day of submission, days before the announcement a harvest brings: each
digest remembers the last paper stored before it (papers' pks only grow), and the next one ranks
the user's feed among the papers after it. A user's first digest is the top of their feed. Each
user's digest is sent and recorded on its own, so a failure midway keeps the digests already sent.
"""

from __future__ import annotations

import datetime as dt
import smtplib
from dataclasses import dataclass, field

from .errors import InvalidInput
from .exports import digest_html, export_items, link_base, send_email
from .feeds import FeedItem, user_feed
from .filters import Filters
from .library import Library
from .store.db import now

# The feed is ranked over the papers dated from the earliest new one on, this many times k deep,
# and the new papers kept: papers stored earlier with dates in that window also compete.
POOL_FACTOR = 10


@dataclass
class DigestsReport:
    sent: dict[int, int] = field(default_factory=dict)  # user id → papers in their digest
    no_address: list[int] = field(default_factory=list)  # users without an e-mail address: skipped
    nothing_new: list[int] = field(default_factory=list)  # users whose feed has nothing new: no e-mail
    failed: dict[int, str] = field(default_factory=dict)  # user id → why the SMTP server did not take it

    def as_dict(self) -> dict[str, object]:
        return {"sent": len(self.sent), "papers": sum(self.sent.values()), "no_address": len(self.no_address),
                "nothing_new": len(self.nothing_new), "failed": {str(user): why for user, why in self.failed.items()}}


def new_items(library: Library, user_id: int, k: int, stored: list[tuple[int, str, str | None]], mode: str | None = None) -> list[FeedItem]:
    """The top ``k`` of the user's feed among the papers ``stored`` (pk, id, date)."""
    if not stored:
        return []
    ids = {paper_id for _, paper_id, _ in stored}
    dates = [date for _, _, date in stored]
    since = None if None in dates else min(dates)  # a paper without a date fails every date filter
    pool = user_feed(library, user_id, min(library.settings.max_k, POOL_FACTOR * k), Filters(since=since), mode)
    return [item for item in pool if item.hit.id in ids][:k]


def send_digests(library: Library, k: int = 10, mode: str | None = None) -> DigestsReport:
    """One digest per user with an address, through the configured SMTP server (exports.send_email)."""
    settings = library.settings
    if not settings.smtp_host:
        raise InvalidInput("digests are sent by e-mail: set PAPERLENS_SMTP_HOST (and PAPERLENS_SMTP_PORT, PAPERLENS_SMTP_FROM)")
    report = DigestsReport()
    users = library.store.users
    recipients = users.digest_recipients()
    last = library.store.max_pk()  # papers stored from now on are the next digest's
    earliest = min((user.last_digest_pk for user in recipients if user.email and user.last_digest_pk is not None), default=None)
    stored = library.store.stored_after(earliest) if earliest is not None else []  # one read for every user
    base, today = link_base(settings), dt.date.today().isoformat()
    for user in recipients:
        if not user.email:
            report.no_address.append(user.id)
            continue
        if user.last_digest_pk is None:
            items = user_feed(library, user.id, k, None, mode)
        else:
            items = new_items(library, user.id, k, [row for row in stored if user.last_digest_pk < row[0] <= last], mode)
        if not items:
            report.nothing_new.append(user.id)
            continue
        html = digest_html(user.name, export_items(library, [item.hit for item in items], [item.reason for item in items]), base)
        try:
            send_email(html, f"paperlens: {len(items)} new papers for {user.name}, {today}", user.email, settings)
        except (smtplib.SMTPException, OSError) as exc:
            report.failed[user.id] = f"{settings.smtp_host}:{settings.smtp_port}: {exc}"
            continue
        with library.store.transaction():
            users.set_last_digest(user.id, now(), last)
        report.sent[user.id] = len(items)
    return report
