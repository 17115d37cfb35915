"""Library exceptions. The API maps them to status codes, the CLI to a message and an exit code."""


class PaperlensError(Exception):
    """Base class: a problem the user can fix (bad input, wrong index, missing file)."""

    status_code = 422


class PaperNotFound(PaperlensError):
    status_code = 404

    def __init__(self, paper_id: str):
        super().__init__(f"no paper with id {paper_id!r} in this index")
        self.paper_id = paper_id


class InvalidInput(PaperlensError):
    status_code = 422


class IndexMismatch(PaperlensError):
    """The index folder was built with another model or layout than the one configured."""

    status_code = 409


class ManifestUnreadable(PaperlensError):
    """manifest.json exists but cannot be read; 'paperlens check' rebuilds it from the store."""

    status_code = 409


class IndexNotFound(PaperlensError):
    status_code = 404


class NothingToIngest(PaperlensError):
    status_code = 422


class Unauthorized(PaperlensError):
    """No credentials where the server requires them."""

    status_code = 401


class Forbidden(PaperlensError):
    """Credentials given, but not ones that allow this."""

    status_code = 403


class PayloadTooLarge(PaperlensError):
    status_code = 413


class ConcurrentChange(PaperlensError):
    """A paper vanished between two reads of one request (deleted meanwhile); retrying gives a clean answer."""

    status_code = 409


class WriterBusy(PaperlensError):
    """Another process (or thread) kept the index's writer lock longer than Settings.writer_wait_seconds."""

    status_code = 503


class UserNotFound(PaperlensError):
    status_code = 404

    def __init__(self, user_id: object):
        super().__init__(f"no user with id {user_id!r}")


class CollectionNotFound(PaperlensError):
    status_code = 404

    def __init__(self, name: str):
        super().__init__(f"no collection named {name!r}")


class FeedNotFound(PaperlensError):
    """No feed has this secret (never made, revoked, or mistyped): the same answer for each."""

    status_code = 404

    def __init__(self) -> None:
        super().__init__("no feed at this address (it may have been revoked)")


class InteractionNotFound(PaperlensError):
    status_code = 404


class HarvestFailed(PaperlensError):
    """An OAI-PMH server could not be harvested (unreachable, refusing, answering with broken XML):
    what was committed before stays, and the next run goes on from there."""

    status_code = 502
