"""Author names as the author filter compares them: (family name, first initial).

Sources spell one person many ways: "Yann LeCun", "LeCun, Y.", "Y. LeCun", "LECUN Y" (PubMed),
"Müller" and "Muller". ``author_key`` reduces each to the last word of the family name, folded
(case, accents, punctuation; hyphens and apostrophes join: "Lévy-Leblond" is "levyleblond",
"O'Brien" "obrien"), and the first letter of the given names ("" when none is written). A query
name without given names ("lecun") matches any initial; one with an initial matches that initial
and stored names that have none.

Not handled, by design or for lack of a rule that holds: family-name-first order without a comma
("Wang Wei" is read as given name Wang); a family name in capitals of up to three letters after
the given names ("Andrew NG" reads as PubMed's family-then-initials); spacing that varies
("Le Cun" and "LeCun" are two keys); transliterations ("Mueller" is not "Müller"); two people
with one family name and initial (a filter on "Y. LeCun" keeps both); a family name whose last
word differs between sources ("García Márquez" and "García" are two keys).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass

import numpy as np

# Lower-case words that start a family name ("Laurens van der Maaten") and that a source may put
# after the given names instead ("Maaten, L. van der"): the key is the word after them.
PARTICLES = frozenset({"van", "von", "der", "den", "de", "del", "della", "di", "da", "dos", "das", "du", "la", "le",
                       "ten", "ter", "bin", "ibn", "al", "el", "zu"})
SUFFIXES = frozenset({"jr", "sr", "ii", "iii", "iv"})
_JOINERS = re.compile(r"['’‐‑\-]")  # apostrophes and hyphens join the parts of a name
_SPLIT = re.compile(r"[^\w]+|_")

# One author in the filter columns: a 64-bit hash of the family-name key and the initial's code point (0: none).
AUTHOR_DTYPE = np.dtype([("family", "<i8"), ("initial", "<u4")])


@dataclass(frozen=True)
class AuthorKey:
    family: str  # the last word of the family name, folded
    initial: str  # the first given name's first letter, folded; "" when none is written

    @property
    def family_hash(self) -> int:
        return family_hash(self.family)


# Letters that NFKD leaves whole, as their unaccented spelling.
_UNDECOMPOSED = str.maketrans({"ø": "o", "æ": "ae", "œ": "oe", "ł": "l", "đ": "d", "ð": "d", "þ": "th", "ı": "i"})


def fold(text: str) -> str:
    """Case and accents off (NFKD, combining marks dropped; 'ß' to 'ss', 'ø' to 'o', ...)."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold().translate(_UNDECOMPOSED)


def _words(text: str) -> list[str]:
    return [w for w in _SPLIT.split(_JOINERS.sub("", text)) if w]


def author_key(name: str) -> AuthorKey | None:
    """The (family name, first initial) of a name as written, or None when it has no letters.

    "Last, First" when there is a comma; "LeCun Y" / "Hinton GE" (trailing capitals, PubMed) as
    family then initials; else "First [Middle] [particles] Last"."""
    if not isinstance(name, str):
        return None
    if "," in name:
        family_part, _, given_part = name.partition(",")
        family = [w for w in _words(fold(family_part)) if w not in SUFFIXES]
        given = [w for w in _words(fold(given_part)) if w not in SUFFIXES and w not in PARTICLES]
        if not family:  # ", Yann"
            family, given = given, []
    else:
        raw = _words(name)
        if len(raw) >= 2 and raw[-1].isupper() and len(raw[-1]) <= 3 and not raw[-2].isupper():
            raw = [*raw[:-1], raw[-1][0]]
            raw = raw[-1:] + raw[:-1]  # PubMed: initials after the family name
        words = [w for w in (fold(w) for w in raw) if w not in SUFFIXES] or [fold(w) for w in raw]
        # The family name is the last word; the given names are the words before it and its particles.
        given = words[:-1]
        while len(given) > 1 and given[-1] in PARTICLES:
            given = given[:-1]
        if all(w in PARTICLES for w in given):  # "de Gaulle": no given name written
            given = []
        family = words[-1:]
    family = [w for w in family if w not in PARTICLES] or family
    if not family or not any(c.isalpha() for c in family[-1]):
        return None
    return AuthorKey(family[-1], given[0][0] if given else "")


def family_hash(family: str) -> int:
    """Stable across processes and versions (stored in every paper's row), unlike ``hash``."""
    return int.from_bytes(hashlib.blake2b(family.encode(), digest_size=8).digest(), "little", signed=True)


def author_entries(authors: list[str]) -> bytes:
    """A paper's authors as the store keeps them for the filter columns: AUTHOR_DTYPE records, one
    per distinct key, packed (read back with np.frombuffer, no parsing at load)."""
    keys = dict.fromkeys(key for key in map(author_key, authors) if key is not None)
    entries = np.array([(key.family_hash, ord(key.initial) if key.initial else 0) for key in keys], dtype=AUTHOR_DTYPE)
    return entries.tobytes()
