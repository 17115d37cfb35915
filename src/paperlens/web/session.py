"""The page's session: one signed cookie holding who is signed in and the CSRF token of its forms.

The cookie is a JSON dict signed with itsdangerous (readable by its holder, not forgeable), sent
HttpOnly, SameSite=Lax, and Secure when the request came over https. It holds:
- ``user``: the signed-in user's id, and ``proof``: security.session_proof of their token hash
  when they signed in with their token (or created themselves here, which returns a token). A new
  token for the user ends every session made with the old one. In open mode a user can also be
  picked by id; such a session has no proof and counts for nothing once the server has keys.
- ``csrf``: a random token every form of the page sends back; a POST without it is refused.

The signing secret is PAPERLENS_SESSION_SECRET, else a random one made once and kept in the index
folder (``session.secret``, mode 0600), so sessions survive restarts. It is never logged.
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
import time
from pathlib import Path
from typing import Any

from fastapi import Request, Response
from itsdangerous import BadData, URLSafeTimedSerializer

from ..config import Settings
from ..errors import Forbidden
from ..library import Library
from ..security import session_proof, user_for_token
from ..store import UserRow

log = logging.getLogger(__name__)

COOKIE = "paperlens_session"
SECRET_FILE = "session.secret"
MAX_AGE = 90 * 24 * 3600  # a session unused this long is over; one in use is re-signed once a day
REFRESH_AFTER = 24 * 3600


def session_secret(settings: Settings, folder: Path) -> str:
    """The configured secret, else the one kept in ``folder``, made on first use. Two processes
    making it at once agree: each writes its own file aside and links it into place, and the loser
    reads the winner's."""
    if settings.session_secret is not None:
        return settings.session_secret.get_secret_value()
    path = folder / SECRET_FILE
    try:
        try:
            return _read_secret(path)
        except FileNotFoundError:
            pass
        aside = folder / f"{SECRET_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(secrets.token_urlsafe(48) + "\n")
            file.flush()
            os.fsync(file.fileno())
        try:
            os.link(aside, path)
        except FileExistsError:
            pass
        finally:
            aside.unlink()
        return _read_secret(path)
    except OSError as exc:  # a read-only index folder, say: sessions last as long as this process
        log.warning("paperlens: cannot keep a session secret in %s (%s); page sign-ins end when the server stops. "
                    "Set PAPERLENS_SESSION_SECRET to keep them.", folder, exc.strerror or exc.__class__.__name__)
        return secrets.token_urlsafe(48)


def _read_secret(path: Path) -> str:
    if path.stat().st_mode & 0o077:
        os.chmod(path, 0o600)  # copied around with looser modes: the secret is the sessions' only key
    secret = path.read_text().strip()
    if len(secret) < 16:
        raise OSError(0, "the file is too short to be a secret", str(path))
    return secret


def _serializer(request: Request) -> URLSafeTimedSerializer:
    """Made on first use and kept on the app: the secret lives beside the library, which is only
    opened once the app starts."""
    state = request.app.state
    serializer = getattr(state, "session_serializer", None)
    if serializer is None:
        library: Library = state.library
        serializer = URLSafeTimedSerializer(session_secret(library.settings, library.folder), salt="paperlens-session")
        state.session_serializer = serializer
    return serializer


class Session:
    """The request's session; ``save`` writes it to the response when it changed or is due a refresh."""

    def __init__(self, request: Request):
        self.request = request
        self.data: dict[str, Any] = {}
        self.changed = False
        raw = request.cookies.get(COOKIE)
        if raw:
            try:
                data, signed_at = _serializer(request).loads(raw, max_age=MAX_AGE, return_timestamp=True)
            except BadData:  # tampered, signed with another secret, expired, or not ours
                data, signed_at = None, None
            if isinstance(data, dict):
                self.data = data
                self.changed = time.time() - signed_at.timestamp() > REFRESH_AFTER
        if not isinstance(self.data.get("csrf"), str):
            self.data["csrf"] = secrets.token_urlsafe(32)
            self.changed = True

    @property
    def csrf(self) -> str:
        return self.data["csrf"]

    def check_csrf(self, supplied: str | None) -> None:
        if not supplied:
            raise Forbidden("this form is missing its CSRF token; reload the page and try again")
        if not hmac.compare_digest(supplied.encode("utf-8", "surrogatepass"), self.csrf.encode()):
            raise Forbidden("this form's CSRF token does not belong to your session; reload the page and try again")

    def sign_in(self, user_id: int, proof: str) -> None:
        """A fresh CSRF token too: one planted before sign-in does not carry over."""
        self.data = {"user": user_id, "proof": proof, "csrf": secrets.token_urlsafe(32)}
        self.changed = True

    def sign_out(self) -> None:
        self.data = {"csrf": secrets.token_urlsafe(32)}
        self.changed = True

    def save(self, response: Response) -> Response:
        if self.changed:
            secure = self.request.url.scheme == "https" or (self.request.app.state.library.settings.public_url or "").startswith("https:")
            response.set_cookie(COOKIE, _serializer(self.request).dumps(self.data), max_age=MAX_AGE, path="/",
                                httponly=True, samesite="lax", secure=secure)
        return response


def signed_in_user(library: Library, session: Session) -> UserRow | None:
    """The session's user while the proof still matches their token (any proof-less session in open mode)."""
    user_id, proof = session.data.get("user"), session.data.get("proof")
    if not isinstance(user_id, int) or isinstance(user_id, bool) or not isinstance(proof, str):
        return None
    users = library.store.users
    if proof:
        stored = users.token_hash(user_id)
        if stored is None or not hmac.compare_digest(proof, session_proof(stored)):
            return None
    elif library.settings.api_keys():
        return None
    return users.get_user(user_id)


def sign_in_with_token(library: Library, session: Session, token: str) -> UserRow:
    user_id = user_for_token(library.store.users, token.strip()) if token.strip() else None
    if user_id is None:
        raise Forbidden("that token does not belong to any user here; use the token 'paperlens user add' printed "
                        "(or POST /users returned)")
    session.sign_in(user_id, session_proof(library.store.users.token_hash(user_id) or ""))
    return library.store.users.get_user(user_id)
