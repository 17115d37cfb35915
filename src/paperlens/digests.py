"""Digest e-mails for every user with an address: the new papers of their feed since their last digest.

'New' is by the papers' dates (the filter every feed takes): a user's first digest is the top of
their feed, each later one the papers dated on or after the day of the one before. Each user's
digest is sent and recorded on its own, so a failure midway keeps the digests already sent.
"""

from __future__ import annotations

import datetime as dt
import smtplib
from dataclasses import dataclass, field

from .errors import InvalidInput
from .exports import feed_document, send_email
from .filters import Filters
from .library import Library
from .store.db import now


@dataclass
class DigestsReport:
    sent: dict[int, int] = field(default_factory=dict)  # user id → papers in their digest
    no_address: list[int] = field(default_factory=list)  # users without an e-mail address: skipped
    nothing_new: list[int] = field(default_factory=list)  # users whose feed has nothing new: no e-mail
    failed: dict[int, str] = field(default_factory=dict)  # user id → why the SMTP server did not take it

    def as_dict(self) -> dict[str, object]:
        return {"sent": len(self.sent), "papers": sum(self.sent.values()), "no_address": len(self.no_address),
                "nothing_new": len(self.nothing_new), "failed": {str(user): why for user, why in self.failed.items()}}


def send_digests(library: Library, k: int = 10, mode: str | None = None) -> DigestsReport:
    """One digest per user with an address, through the configured SMTP server (exports.send_email)."""
    settings = library.settings
    if not settings.smtp_host:
        raise InvalidInput("digests are sent by e-mail: set PAPERLENS_SMTP_HOST (and PAPERLENS_SMTP_PORT, PAPERLENS_SMTP_FROM)")
    report = DigestsReport()
    users = library.store.users
    today = dt.date.today().isoformat()
    for user in users.digest_recipients():
        if not user.email:
            report.no_address.append(user.id)
            continue
        since = user.last_digest_at[:10] if user.last_digest_at else None
        document = feed_document(library, user.id, k, "html", Filters(since=since), mode=mode)
        if document.count == 0:
            report.nothing_new.append(user.id)
            continue
        try:
            send_email(document.text(), f"paperlens: {document.count} new papers for {user.name}, {today}", user.email, settings)
        except (smtplib.SMTPException, OSError) as exc:
            report.failed[user.id] = f"{settings.smtp_host}:{settings.smtp_port}: {exc}"
            continue
        with library.store.transaction():
            users.set_last_digest(user.id, now())
        report.sent[user.id] = document.count
    return report
