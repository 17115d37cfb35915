"""Who may write: API keys for the service, per-user tokens for a user's own data.

The model, in one place:
- ``PAPERLENS_API_KEY`` unset: open mode. Anyone who can reach the server may write, so
  ``paperlens serve`` listens on loopback only unless ``--allow-public`` is given.
- ``PAPERLENS_API_KEY`` set (one key or several, comma-separated): every write needs
  ``X-API-Key`` with one of them (missing → 401, wrong → 403). Reads stay open.
- Feed readers cannot send headers: ``/feeds/{secret}.atom`` (and ``.bib``) is a user's feed, or
  one collection's, behind a random secret in the URL, made and revoked by the user; the store
  keeps only its SHA-256, and the lookup compares hashes in constant time.
- Users: creating a user returns a random token once; the store keeps only its SHA-256. A user's
  data needs ``X-User-Token`` with that user's token, or an admin ``X-API-Key``. In open mode a
  user's token is not required (there is nothing to protect a loopback-only server from).
- The web page signs a user in with that token and keeps a signed session cookie (web/session.py)
  with a proof of the token's hash, so issuing a new token ends the old sessions; its forms carry
  a CSRF token tied to the session.

Attach ``require_api_key`` to a route or a router (``dependencies=[Depends(require_api_key)]``)
and ``require_user`` to routes with a ``user_id`` path parameter.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.security import APIKeyHeader

from .config import Settings
from .errors import FeedNotFound, Forbidden, Unauthorized
from .store import Store, UserStore

API_KEY_HEADER = "X-API-Key"
USER_TOKEN_HEADER = "X-User-Token"
MAX_USER_ID = 2**63 - 1  # SQLite's INTEGER: a larger id in a URL is a 422, not an overflow

# auto_error=False: the dependency decides between 401 and 403 and words the message itself.
api_key_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, description="required for writes when the server has API keys")
user_token_header = APIKeyHeader(name=USER_TOKEN_HEADER, auto_error=False, description="the token POST /users returned")


def key_matches(supplied: str, keys: list[str]) -> bool:
    """Constant time, and over every key, so neither timing nor the position of a match leaks anything."""
    supplied_bytes = supplied.encode("utf-8", "surrogatepass")
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(supplied_bytes, key.encode("utf-8", "surrogatepass"))
    return matched


def check_api_key(settings: Settings, supplied: str | None) -> None:
    """Raise unless writes are open (no keys configured) or ``supplied`` is one of the keys."""
    keys = settings.api_keys()
    if not keys:
        return
    if not supplied:
        raise Unauthorized(f"this server requires an API key for writes: send it in the {API_KEY_HEADER} header")
    if not key_matches(supplied, keys):
        raise Forbidden(f"the {API_KEY_HEADER} header does not hold a valid API key")


def is_admin(settings: Settings, supplied: str | None) -> bool:
    keys = settings.api_keys()
    return bool(keys and supplied and key_matches(supplied, keys))


def new_token() -> str:
    """256 random bits, URL-safe: shown to the user once, never stored."""
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """A fast hash is enough: tokens are random, so there is no dictionary to guess from."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def issue_user_token(users: UserStore, user_id: int) -> str:
    """A fresh token for a user (replacing any earlier one), in the caller's transaction; returns
    the token, stores its hash."""
    token = new_token()
    users.set_token_hash(user_id, token_hash(token))
    return token


def issue_feed_secret(users: UserStore, user_id: int, collection: str = "") -> str:
    """A fresh secret for the user's feed (or one collection's), replacing any earlier one, in the
    caller's transaction; returns the secret, stores its hash."""
    secret = new_token()
    users.set_feed_secret(user_id, collection, token_hash(secret))
    return secret


def feed_for_secret(users: UserStore, secret: str) -> tuple[int, str | None]:
    """(user id, collection or None) of the feed behind a secret; FeedNotFound otherwise."""
    digest = token_hash(secret)
    found = users.feed_secret(digest)
    if found is None or not hmac.compare_digest(found[0], digest):
        raise FeedNotFound()
    return found[1], found[2] or None


def user_for_token(users: UserStore, token: str) -> int | None:
    """The id of the user whose token this is, or None."""
    digest = token_hash(token)
    found = users.user_with_token_hash(digest)
    if found is None or not hmac.compare_digest(found[0], digest):
        return None
    return found[1]


def session_proof(stored_hash: str) -> str:
    """What a session keeps of the user's token: derived from the stored hash (not the hash itself,
    which the readable cookie would show), so a new token makes old sessions fail the check."""
    return hashlib.sha256(f"paperlens-session:{stored_hash}".encode()).hexdigest()[:32]


def check_user_access(settings: Settings, store: Store, user_id: int, token: str | None, api_key: str | None) -> None:
    """The user's own token or an admin key; open mode lets everyone through (see the module docstring)."""
    if not settings.api_keys() or is_admin(settings, api_key):
        return
    if not token:
        raise Unauthorized(f"send the user's token in the {USER_TOKEN_HEADER} header (or an admin {API_KEY_HEADER})")
    stored = store.users.token_hash(user_id)
    # Compare even when the user is unknown, so a probe cannot tell 'no such user' from 'wrong token'.
    if not hmac.compare_digest(token_hash(token), stored or "0" * 64) or stored is None:
        raise Forbidden("this token does not belong to that user")


# --- FastAPI dependencies ----------------------------------------------------------------------


# Async: they only compare strings (and read one row), so they run on the event loop instead of
# costing a thread-pool hop each (~0.3 ms per dependency per request, measured through HTTP).
async def require_api_key(request: Request, api_key: Annotated[str | None, Depends(api_key_header)]) -> None:
    """Dependency for every write route; the settings come from app.state."""
    check_api_key(request.app.state.settings, api_key)


async def require_user(
    request: Request,
    user_id: Annotated[int, Path(ge=1, le=MAX_USER_ID)],
    token: Annotated[str | None, Depends(user_token_header)],
    api_key: Annotated[str | None, Depends(api_key_header)],
) -> int:
    """Dependency for routes under /users/{user_id}: the id, bounded before it reaches SQLite, once access is checked."""
    check_user_access(request.app.state.settings, request.app.state.library.store, user_id, token, api_key)
    return user_id
