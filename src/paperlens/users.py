"""Users and what they tell us: interactions with papers, free-text interests, collections.

Validation lives here so the API and the CLI reject the same things with the same messages; the
SQL lives in ``store.UserStore``. Each write is one transaction of the store, its checks inside it
(SQLite lets one writer in at a time, across threads and processes); none takes the library's
writer lock, so a like never waits behind an ingest.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from .errors import (
    CollectionNotFound,
    FeedNotFound,
    InteractionNotFound,
    InvalidInput,
    PaperNotFound,
    UserNotFound,
)
from .library import Library, resolve_id, resolve_ids
from .store import CollectionRow, InteractionRow, InterestRow, UserRow, UserStore

KINDS: tuple[str, ...] = ("like", "dislike", "save", "seen", "not_interested")
POSITIVE_KINDS: tuple[str, ...] = ("like", "save")
NEGATIVE_KINDS: tuple[str, ...] = ("dislike", "not_interested")

MAX_NAME_CHARS = 100
MAX_COLLECTION_CHARS = 100
MAX_INTERESTS = 20
MAX_INTEREST_CHARS = 500


@dataclass
class NewUser(UserRow):
    token: str = ""  # shown once, to send as X-User-Token; only its hash is stored


@dataclass
class UserSummary:
    id: int
    name: str
    created_at: str
    interactions: int
    interests: list[str]
    collections: list[str]


def users(library: Library) -> UserStore:
    return library.store.users


def _has_control_chars(text: str) -> bool:
    return any(unicodedata.category(ch) in ("Cc", "Cf") for ch in text)


def check_name(name: str, what: str = "user name", limit: int = MAX_NAME_CHARS) -> str:
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput(f"{what} is empty")
    name = name.strip()
    if len(name) > limit:
        raise InvalidInput(f"{what} is {len(name)} characters; the limit is {limit}")
    if _has_control_chars(name):
        raise InvalidInput(f"{what} contains control characters")
    return name


def check_collection_name(name: str) -> str:
    """Collection names appear in URLs and file names: no '/', no '..', no control characters."""
    name = check_name(name, "collection name", MAX_COLLECTION_CHARS)
    if "/" in name or "\\" in name or ".." in name:
        raise InvalidInput(f"collection name {name[:80]!r} may not contain '/', '\\' or '..'")
    return name


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise InvalidInput(f"unknown interaction kind {str(kind)[:40]!r}; choose one of {', '.join(KINDS)}")
    return kind


def create_user(library: Library, name: str) -> NewUser:
    """The user and their token, made together: the API and the CLI hand the token out once."""
    from .security import (
        issue_user_token,  # here: security loads FastAPI, which the CLI otherwise never needs
    )

    name = check_name(name)
    with library.store.transaction():
        user = users(library).add_user(name)
        token = issue_user_token(users(library), user.id)
    return NewUser(user.id, user.name, user.created_at, token)


def make_feed_secret(library: Library, user_id: int, collection: str | None = None) -> str:
    """A new secret for the user's feed, or one collection's, replacing the earlier one (which
    stops working); the secret is returned this once, only its hash is stored."""
    from .security import issue_feed_secret

    with library.store.transaction():
        if collection is None:
            get_user(library, user_id)
        else:
            collection = get_collection(library, user_id, collection).name
        return issue_feed_secret(users(library), user_id, collection or "")


def revoke_feed_secret(library: Library, user_id: int, collection: str | None = None) -> None:
    with library.store.transaction():
        get_user(library, user_id)
        collection = check_collection_name(collection) if collection is not None else ""
        if not users(library).delete_feed_secret(user_id, collection):
            raise FeedNotFound()


def get_user(library: Library, user_id: int) -> UserRow:
    user = users(library).get_user(int(user_id))
    if user is None:
        raise UserNotFound(user_id)
    return user


def summarise_user(library: Library, user_id: int) -> UserSummary:
    user = get_user(library, user_id)
    store = users(library)
    return UserSummary(user.id, user.name, user.created_at, len(store.interactions(user.id)),
                       [i.text for i in store.interests(user.id)], [c.name for c in store.collections(user.id)])


def list_users(library: Library) -> list[UserSummary]:
    return [summarise_user(library, user.id) for user in users(library).list_users()]


def delete_user(library: Library, user_id: int) -> None:
    with library.store.transaction():
        if not users(library).delete_user(int(user_id)):
            raise UserNotFound(user_id)


MAX_EMAIL_CHARS = 254  # RFC 5321's limit on a forward path
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def check_email(address: str) -> str:
    """One bare address ('ada@example.org'), as digests are sent to it: no display name, no list."""
    if not isinstance(address, str) or not address.strip():
        raise InvalidInput("e-mail address is empty")
    address = address.strip()
    if len(address) > MAX_EMAIL_CHARS:
        raise InvalidInput(f"e-mail address is {len(address)} characters; the limit is {MAX_EMAIL_CHARS}")
    if _has_control_chars(address) or not _EMAIL.match(address) or "," in address or "<" in address:
        raise InvalidInput(f"{address[:80]!r} is not an e-mail address (expected one address, like ada@example.org)")
    return address


def set_email(library: Library, user_id: int, address: str | None) -> str | None:
    """Where the user's digests go ('paperlens digest --all'); None removes the address."""
    address = check_email(address) if address is not None else None
    with library.store.transaction():
        if not users(library).set_email(int(user_id), address):
            raise UserNotFound(user_id)
    return address


def get_email(library: Library, user_id: int) -> str | None:
    get_user(library, user_id)
    return users(library).email(int(user_id))


def _check_paper(library: Library, paper_id: str) -> str:
    """The stored id of a paper given as the API and the CLI take ids (library.resolve_id)."""
    if not isinstance(paper_id, str):
        raise PaperNotFound(str(paper_id))
    return resolve_id(library, paper_id)


def _names(library: Library, paper_id: str) -> list[str]:
    """Every id a user's records may name the paper by: its id, and those of records merged into it."""
    return library.store.names(paper_id) if library.store.get(paper_id) else [paper_id]


def record_interaction(library: Library, user_id: int, paper_id: str, kind: str) -> InteractionRow:
    """Like and dislike exclude each other: the newer one replaces the older."""
    check_kind(kind)
    paper_id = _check_paper(library, paper_id)
    opposite = {"like": "dislike", "dislike": "like"}.get(kind)
    with library.store.transaction():
        get_user(library, user_id)
        store = users(library)
        if opposite:
            for name in _names(library, paper_id):  # also one recorded under a record merged into it since
                store.delete_interactions(user_id, name, opposite)
        return store.add_interaction(user_id, paper_id, kind)


def list_interactions(library: Library, user_id: int, kind: str | None = None) -> list[InteractionRow]:
    get_user(library, user_id)
    return users(library).interactions(user_id, [check_kind(kind)] if kind else None)


def remove_interaction(library: Library, user_id: int, paper_id: str, kind: str | None = None) -> int:
    if kind is not None:
        check_kind(kind)
    paper_id = resolve_ids(library, [paper_id]).get(paper_id, paper_id)
    with library.store.transaction():
        get_user(library, user_id)
        # Under the paper's id or the id of a record merged into it since (library.dedup).
        removed = sum(users(library).delete_interactions(user_id, name, kind) for name in _names(library, paper_id))
    if not removed:
        raise InteractionNotFound(f"user {user_id} has no {kind or 'interaction'} on paper {paper_id!r}")
    return removed


def set_interests(library: Library, user_id: int, interests: list[str]) -> list[str]:
    """Encoded once here, so a feed never waits for the model."""
    get_user(library, user_id)
    if len(interests) > MAX_INTERESTS:
        raise InvalidInput(f"at most {MAX_INTERESTS} interests, got {len(interests)}")
    texts = [check_name(text, "interest", MAX_INTEREST_CHARS) for text in interests]
    texts = list(dict.fromkeys(texts))
    vectors = library.encoder.encode(texts) if texts else None
    with library.store.transaction():
        get_user(library, user_id)
        users(library).set_interests(user_id, texts, vectors if vectors is not None else [])
    return texts


def get_interests(library: Library, user_id: int) -> list[InterestRow]:
    get_user(library, user_id)
    return users(library).interests(user_id)


def put_collection(library: Library, user_id: int, name: str) -> tuple[CollectionRow, bool]:
    name = check_collection_name(name)
    with library.store.transaction():
        get_user(library, user_id)
        return users(library).put_collection(user_id, name)


def get_collection(library: Library, user_id: int, name: str) -> CollectionRow:
    name = check_collection_name(name)
    get_user(library, user_id)
    collection = users(library).get_collection(user_id, name)
    if collection is None:
        raise CollectionNotFound(name)
    return collection


def list_collections(library: Library, user_id: int) -> list[CollectionRow]:
    get_user(library, user_id)
    return users(library).collections(user_id)


def delete_collection(library: Library, user_id: int, name: str) -> None:
    with library.store.transaction():
        get_collection(library, user_id, name)
        users(library).delete_collection(user_id, name)


def add_to_collection(library: Library, user_id: int, name: str, paper_id: str) -> CollectionRow:
    paper_id = _check_paper(library, paper_id)
    with library.store.transaction():
        get_collection(library, user_id, name)
        users(library).add_to_collection(user_id, name, paper_id)
    return get_collection(library, user_id, name)


def remove_from_collection(library: Library, user_id: int, name: str, paper_id: str) -> CollectionRow:
    paper_id = resolve_ids(library, [paper_id]).get(paper_id, paper_id)  # a paper deleted since can still be taken out
    with library.store.transaction():
        get_collection(library, user_id, name)
        removed = [users(library).remove_from_collection(user_id, name, other) for other in _names(library, paper_id)]
        if not any(removed):
            raise PaperNotFound(paper_id)
    return get_collection(library, user_id, name)


def record_interactions(library: Library, user_id: int, paper_ids: list[str], kind: str) -> int:
    """``kind`` on each stored paper the user has not given it yet, in the caller's transaction (or
    its own): a second import of one file records nothing and leaves the earlier times as they were.
    A like replaces a dislike, as ``record_interaction``. Returns how many were recorded."""
    check_kind(kind)
    opposite = {"like": "dislike", "dislike": "like"}.get(kind)
    recorded = 0
    with library.store.transaction():
        get_user(library, user_id)
        store = users(library)
        have = {row.paper_id for row in store.interactions(user_id, [kind])}
        for paper_id in dict.fromkeys(paper_ids):
            names = _names(library, paper_id)
            if have.intersection(names):
                continue
            for name in names if opposite else ():
                store.delete_interactions(user_id, name, opposite)
            store.add_interaction(user_id, paper_id, kind)
            recorded += 1
    return recorded


def fill_collection(library: Library, user_id: int, name: str, paper_ids: list[str]) -> int:
    """Put stored papers into the user's collection ``name`` (made if missing), in the caller's
    transaction (or its own); papers already in it stay as they were. Returns how many went in."""
    name = check_collection_name(name)
    added = 0
    with library.store.transaction():
        get_user(library, user_id)
        store = users(library)
        have = set(store.put_collection(user_id, name)[0].paper_ids)
        for paper_id in dict.fromkeys(paper_ids):
            if have.intersection(_names(library, paper_id)):
                continue
            store.add_to_collection(user_id, name, paper_id)
            added += 1
    return added
