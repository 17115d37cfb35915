"""A reference manager's library (BibTeX, CSL-JSON, RIS) imported as a user's likes, saves or a collection.

Each entry is matched to a paper of the index by its DOI, then its arXiv id (versions dropped), then
its normalised title (papers.title_key, as duplicate merging compares titles). An entry the index
lacks but that carries a title and an abstract is added as a paper through ``library.ingest``, so it
counts as a positive too; the rest are reported unmatched. The papers added and the likes (or
collection members) recorded commit in one store transaction, or none of them do; importing a file
again records nothing new.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from . import users as user_ops
from .errors import InvalidInput, PayloadTooLarge
from .library import Library, ingest, resolve_ids
from .limits import check_paper_count, paper_size_problem
from .papers import (
    InvalidRecord,
    Paper,
    arxiv_base_id,
    arxiv_id_in,
    bare_doi,
    content_id,
    parse_date,
    title_key,
    undecodable_at,
    valid_text,
    validate_id,
)

FORMATS = ("bibtex", "csl-json", "ris", "zotero-rdf")
TARGETS = ("like", "save", "collection")
LABELS = {"bibtex": "BibTeX", "csl-json": "CSL-JSON", "ris": "RIS", "zotero-rdf": "Zotero RDF"}
EXTENSIONS = {".bib": "bibtex", ".bibtex": "bibtex", ".json": "csl-json", ".csljson": "csl-json", ".ris": "ris", ".rdf": "zotero-rdf"}
MEDIA_TYPES = {"application/x-bibtex": "bibtex", "text/x-bibtex": "bibtex", "application/vnd.citationstyles.csl+json": "csl-json",
               "application/json": "csl-json", "application/x-research-info-systems": "ris", "application/rdf+xml": "zotero-rdf"}
UNMATCHED = "no DOI/arXiv id/title in the index and no abstract"
NO_RDF = ("Zotero RDF is not read (no kept library reads it here): export the library from Zotero as BibTeX, "
          "CSL JSON or RIS instead (File → Export Library…)")


@dataclass
class Reference:
    """One entry of a reference file, as every format gives it."""

    key: str  # the citation key, the CSL id or the RIS ID; else 'entry N'
    line: int | None
    title: str = ""
    abstract: str = ""
    doi: str | None = None
    arxiv: str | None = None
    authors: list[str] = field(default_factory=list)
    date: str | None = None
    url: str | None = None
    position: int = 0  # the entry's number in the file, from 1


@dataclass
class ImportedEntry:
    """What became of one entry: ``match`` is doi, arxiv, title, added, unmatched or skipped."""

    position: int  # the entry's number in the file, from 1
    key: str
    title: str
    match: str
    paper_id: str | None = None
    reason: str | None = None


def _entry(ref: Reference, match: str, paper_id: str | None = None, reason: str | None = None) -> ImportedEntry:
    return ImportedEntry(ref.position, ref.key, ref.title, match, paper_id, reason)


@dataclass
class ImportReport:
    user: int
    format: str
    target: str  # like, save or collection
    collection: str | None
    recorded: int  # interactions (or collection members) new with this import
    papers_added: int
    counts: dict[str, int]
    entries: list[ImportedEntry]


# --- reading -------------------------------------------------------------------------------------


def detect_format(text: str, filename: str | None = None) -> str:
    """By the file name's extension, else by the first thing in the file."""
    if filename:
        suffix = "." + filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
        if suffix in EXTENSIONS:
            return EXTENSIONS[suffix]
    return content_format(text) or "bibtex"


def content_format(text: str) -> str | None:
    """The format the file's first characters say; BibTeX files often open with comments."""
    head = text.lstrip()
    if head.startswith("@"):
        return "bibtex"
    if head.startswith(("[", "{")):
        return "csl-json"
    if head.startswith("<"):
        return "zotero-rdf"
    if re.search(r"^TY  - ", text[:10_000], re.MULTILINE):
        return "ris"
    if re.search(r"^\s*@[A-Za-z]+\s*[{(]", text[:10_000], re.MULTILINE):
        return "bibtex"
    return None


def decode(data: bytes) -> str:
    """UTF-8 (what Zotero, JabRef and Mendeley write), a byte-order mark allowed; else a clear refusal."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidInput(f"the file is not UTF-8 ({undecodable_at(data, 'utf-8-sig')}); export it as UTF-8") from None
    if not text.strip():
        raise InvalidInput("the file is empty")
    return text


def read_references(text: str, fmt: str) -> tuple[list[Reference], list[ImportedEntry]]:
    """The file's entries, and those it could not read (per entry: one broken entry costs one entry).
    InvalidInput when the file holds no entry of ``fmt`` at all, as when it is another format."""
    if fmt not in FORMATS:
        raise InvalidInput(f"unknown format {str(fmt)[:40]!r}; choose one of {', '.join(FORMATS)}")
    if fmt == "zotero-rdf":
        raise InvalidInput(NO_RDF)
    refs, skipped = [], []
    for number, item in enumerate(READERS[fmt](text), start=1):
        if isinstance(item, Reference):
            item.position = number
            refs.append(item)
        else:
            line, key, reason = item
            skipped.append(ImportedEntry(number, key or f"entry {number}", "", "skipped",
                                         reason=f"unparseable entry{f' at line {line}' if line else ''}: {reason}"))
    if not refs and not skipped:
        seen = content_format(text)
        hint = f" (it looks like {LABELS[seen]})" if seen and seen != fmt else ""
        raise InvalidInput(f"no {LABELS[fmt]} entries in the file{hint}")
    if not refs:
        raise InvalidInput(f"none of the {len(skipped)} entries of the file could be read as {LABELS[fmt]}: "
                           + "; ".join(f"{s.key}: {s.reason}" for s in skipped[:5]))
    return refs, skipped


Failure = tuple[int | None, str | None, str]  # (line, key, why)


def _clean(value: Any, name: str) -> str:
    if value is None:
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise InvalidRecord(f"{name} must be text, got {type(value).__name__}")
    return " ".join(valid_text(value, name).split())


def _person(name: str) -> str:
    """'Müller, Anna' → 'Anna Müller', as readers list authors."""
    family, comma, given = name.partition(",")
    return f"{given.strip()} {family.strip()}".strip() if comma else name.strip()


def _first_arxiv(*texts: str | None) -> str | None:
    return next((found for text in texts if text and (found := arxiv_id_in(text))), None)


def _date(*values: Any) -> str | None:
    for value in values:
        try:
            found = parse_date(value)
        except InvalidRecord:
            continue
        if found:
            return found
    return None


_LATEX = re.compile(r"[\\{}$~%&]|--|``|''")  # what pylatexenc would change in a value
_BIBTEX_KEY = re.compile(r"\s*@\w+\s*[{(]\s*([^,\s]+)\s*,")


def read_bibtex(text: str) -> Iterator[Reference | Failure]:
    """bibtexparser v2, LaTeX decoded ({\\"o} → ö); each failed block is one skipped entry."""
    import bibtexparser
    from bibtexparser.middlewares import LatexDecodingMiddleware, MonthIntMiddleware

    # Each failed block is reported as a skipped entry; the splitter's own warning would say it twice.
    logging.getLogger("bibtexparser.splitter").setLevel(logging.ERROR)

    class PlainTextSkipped(LatexDecodingMiddleware):
        """pylatexenc on the values that hold LaTeX only: on every value it was most of the import's
        time (benchmarks/imports.py), and plain text (a year, a DOI, most URLs) comes out unchanged."""

        def _transform_python_value_string(self, python_string: str) -> tuple[str, str]:
            return super()._transform_python_value_string(python_string) if _LATEX.search(python_string) else (python_string, "")

    library = bibtexparser.parse_string(text, append_middleware=[PlainTextSkipped(), MonthIntMiddleware()])
    failed = {id(block) for block in library.failed_blocks}
    for block in sorted([*library.failed_blocks, *library.entries], key=lambda block: block.start_line):
        if id(block) in failed:
            error = getattr(block, "error", None)
            why = getattr(error, "abort_reason", None) or str(error or "") or type(block).__name__
            key = getattr(block, "key", None) or (match.group(1) if (match := _BIBTEX_KEY.match(block.raw or "")) else None)
            yield (block.start_line + 1, key, " ".join(why.split())[:200])
            continue
        entry = block
        fields = {name.lower(): value for name, value in entry.fields_dict.items()}
        try:
            get = {name: _clean(item.value, name) for name, item in fields.items()}
        except InvalidRecord as exc:
            yield (entry.start_line + 1, entry.key, str(exc))
            continue
        prefix = (get.get("archiveprefix") or get.get("eprinttype") or "").lower()
        eprint = get.get("eprint", "") if prefix in ("", "arxiv") else ""  # not another archive's (HAL, PubMed) id
        volume = get.get("volume", "")
        dblp = volume[4:] if volume.lower().startswith("abs/") else ""  # DBLP: journal = {CoRR}, volume = {abs/1810.04805}
        arxiv = _first_arxiv(eprint, dblp and arxiv_base_id(dblp), get.get("url"), get.get("doi"), get.get("journal"),
                             get.get("note"), get.get("howpublished"))
        yield Reference(
            key=entry.key, line=entry.start_line + 1, title=get.get("title", ""), abstract=get.get("abstract", ""),
            doi=bare_doi(get.get("doi", "")), arxiv=arxiv,
            authors=[_person(name) for name in re.split(r"\s+and\s+", get.get("author", "")) if name.strip()],
            date=_date(get.get("date"), f"{get['year']}-{int(get['month']):02d}" if get.get("month", "").isdigit() and get.get("year") else None,
                       get.get("year")),
            url=get.get("url") or None,
        )


def read_csl_json(text: str) -> Iterator[Reference | Failure]:
    """Zotero's and Mendeley's CSL JSON export: a list of items (DOI, title, abstract, URL, note, number,
    author [{family, given}], issued {date-parts})."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"not valid CSL-JSON: {exc.msg} at line {exc.lineno}") from None
    except RecursionError:
        raise InvalidInput("not valid CSL-JSON: nested too deeply") from None
    if isinstance(data, dict):
        data = data.get("items", [data]) if "title" not in data else [data]
    if not isinstance(data, list):
        raise InvalidInput("not CSL-JSON: expected a list of items")
    for number, item in enumerate(data, start=1):
        key = str(item.get("id")) if isinstance(item, dict) and isinstance(item.get("id"), (str, int)) else f"item {number}"
        if not isinstance(item, dict):
            yield (None, key, f"expected an object, got {type(item).__name__}")
            continue
        try:
            get = {name: _clean(item.get(name), name) for name in ("title", "abstract", "DOI", "URL", "note", "number",
                                                                    "container-title", "archive_location")}
            authors = [_csl_name(person) for person in item.get("author") or []]
        except (InvalidRecord, TypeError, AttributeError) as exc:
            yield (None, key, str(exc) if isinstance(exc, InvalidRecord) else "author must be a list of names")
            continue
        yield Reference(
            key=key, line=None, title=get["title"], abstract=get["abstract"], doi=bare_doi(get["DOI"]),
            arxiv=_first_arxiv(get["URL"], get["DOI"], get["number"], get["archive_location"], get["note"], get["container-title"]),
            authors=[name for name in authors if name], date=_csl_date(item.get("issued")), url=get["URL"] or None,
        )


def _csl_name(person: Any) -> str:
    if not isinstance(person, dict):
        raise InvalidRecord("an author must be an object such as {\"family\": ..., \"given\": ...}")
    if person.get("literal"):
        return _clean(person["literal"], "author")
    return " ".join(part for part in (_clean(person.get("given"), "author"), _clean(person.get("family"), "author")) if part)


def _csl_date(issued: Any) -> str | None:
    if not isinstance(issued, dict):
        return None
    parts = issued.get("date-parts")
    if isinstance(parts, list) and parts and isinstance(parts[0], list) and parts[0]:
        numbers = [p for p in parts[0][:3] if isinstance(p, (int, str)) and str(p).isdigit()]
        if numbers:
            return _date("-".join(f"{int(p):02d}" if i else f"{int(p):04d}" for i, p in enumerate(numbers)))
    return _date(issued.get("raw"))


_RIS_START = re.compile(r"^TY  - ")


def read_ris(text: str) -> Iterator[Reference | Failure]:
    """rispy, one record at a time (TY … ER), so a broken record is one skipped entry."""
    import rispy

    chunks: list[tuple[int, list[str]]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if _RIS_START.match(line):
            chunks.append((number, []))
        if chunks:
            chunks[-1][1].append(line)
    for number, (line, lines) in enumerate(chunks, start=1):
        try:
            records = rispy.loads("\n".join(lines) + "\n")
        except Exception as exc:  # rispy's errors on a malformed record are not one family; the record is skipped
            yield (line, None, f"{type(exc).__name__}: {exc}"[:200])
            continue
        if len(records) != 1:
            yield (line, None, "a record without its end ('ER  - ')")
            continue
        record = records[0]
        key = str(record.get("id") or f"record {number}")
        try:
            urls = [_clean(u, "UR") for u in record.get("urls") or []]
            notes = [_clean(n, "N1") for n in record.get("notes") or []]
            get = {name: _clean(record.get(name), name) for name in
                   ("title", "primary_title", "abstract", "notes_abstract", "doi", "journal_name", "secondary_title", "year", "date")}
            authors = [_person(_clean(a, "AU")) for a in (record.get("authors") or record.get("first_authors") or [])]
        except (InvalidRecord, TypeError) as exc:
            yield (line, key, str(exc))
            continue
        doi = bare_doi(get["doi"])
        yield Reference(
            key=key, line=line, title=get["title"] or get["primary_title"], abstract=get["abstract"] or get["notes_abstract"],
            doi=doi, arxiv=_first_arxiv(*urls, get["doi"], *notes, get["journal_name"], get["secondary_title"]),
            authors=[a for a in authors if a], date=_date(get["date"].replace("/", "-").strip("-"), get["year"][:4]),
            url=urls[0] if urls else None,
        )


READERS = {"bibtex": read_bibtex, "csl-json": read_csl_json, "ris": read_ris}


# --- matching and importing ----------------------------------------------------------------------


def match_references(library: Library, refs: list[Reference]) -> list[tuple[str, str] | None]:
    """For each reference (how, stored id): by DOI, then arXiv id, then normalised title; None when
    the index holds none of them."""
    asked = [f"DOI:{ref.doi}" for ref in refs if ref.doi] + [f"arXiv:{ref.arxiv}" for ref in refs if ref.arxiv]
    found = resolve_ids(library, asked, strict=False)
    titles = library.store.same_titles(title_key(ref.title) for ref in refs)
    stored = library.store.get_many(rows[0][0] for rows in titles.values())
    by_title = {key: stored[rows[0][0]].paper.id for key, rows in titles.items() if rows[0][0] in stored}
    matches: list[tuple[str, str] | None] = []
    for ref in refs:
        if ref.doi and f"DOI:{ref.doi}" in found:
            matches.append(("doi", found[f"DOI:{ref.doi}"]))
        elif ref.arxiv and f"arXiv:{ref.arxiv}" in found:
            matches.append(("arxiv", found[f"arXiv:{ref.arxiv}"]))
        elif ref.title and title_key(ref.title) in by_title:
            matches.append(("title", by_title[title_key(ref.title)]))
        else:
            matches.append(None)
    return matches


def new_paper(ref: Reference, fmt: str) -> Paper:
    """The paper an entry becomes: under its arXiv id, else its DOI (when a paper id may hold it),
    else the hashed id of its title and abstract, as the readers give papers without an id."""
    paper_id = ref.arxiv
    if paper_id is None and ref.doi:
        try:
            paper_id = validate_id(ref.doi)
        except InvalidInput:
            paper_id = None
    url = ref.url or (f"https://arxiv.org/abs/{ref.arxiv}" if ref.arxiv else None)
    return Paper(id=paper_id or content_id(ref.title, ref.abstract), title=ref.title, abstract=ref.abstract, authors=ref.authors,
                 date=ref.date, url=url, source=f"import:{fmt}", extra={"doi": ref.doi} if ref.doi else {})


def check_target(target: str | None, collection: str | None) -> tuple[str, str | None]:
    """('like' | 'save' | 'collection', the collection's name): a collection name alone means a collection."""
    target = target or ("collection" if collection else "like")
    if target not in TARGETS:
        raise InvalidInput(f"cannot import as {str(target)[:40]!r}; choose one of {', '.join(TARGETS)}")
    if target == "collection":
        if not collection:
            raise InvalidInput("name the collection to import into")
        return target, user_ops.check_collection_name(collection)
    if collection:
        raise InvalidInput(f"a collection name goes with importing as a collection, not as {target}s")
    return target, None


def import_library(library: Library, user_id: int, data: bytes, fmt: str | None = None, filename: str | None = None,
                   target: str | None = None, collection: str | None = None, limit_new: bool = False) -> ImportReport:
    """Import a reference file's entries for the user. All or nothing: the papers added and the
    interactions (or collection members) recorded commit together. ``limit_new``: the API's bound on
    papers per request also bounds the papers one import adds."""
    target, collection = check_target(target, collection)
    user_ops.get_user(library, user_id)
    if len(data) > library.settings.max_body_bytes:
        raise PayloadTooLarge(f"the file is {len(data):,} bytes; the limit is {library.settings.max_body_bytes:,} "
                              "(PAPERLENS_MAX_BODY_BYTES)")
    text = decode(data)
    fmt = fmt or detect_format(text, filename)
    refs, skipped = read_references(text, fmt)
    matches = match_references(library, refs)
    entries = [_entry(ref, *match) if match else None for ref, match in zip(refs, matches)]
    adding: list[tuple[int, Paper]] = []  # (entry, the paper it becomes)
    for n, ref in enumerate(refs):
        if entries[n] is not None:
            continue
        if not (ref.title and ref.abstract):
            entries[n] = _entry(ref, "unmatched", reason=UNMATCHED)
            continue
        paper = new_paper(ref, fmt)
        problem = paper_size_problem(library.settings, paper)
        if problem:
            entries[n] = _entry(ref, "skipped", reason=problem)
        else:
            adding.append((n, paper))
    if limit_new:
        check_paper_count(library.settings, len(adding))
    recorded = 0

    def record() -> None:
        nonlocal recorded
        final = resolve_ids(library, [paper.id for _, paper in adding], strict=False)  # an entry merged into another by ingest
        for n, paper in adding:
            entries[n] = _entry(refs[n], "added", final.get(paper.id, paper.id))
        ids = [entry.paper_id for entry in entries if entry.paper_id]
        if target == "collection":
            recorded = user_ops.fill_collection(library, user_id, collection, ids)
        else:
            recorded = user_ops.record_interactions(library, user_id, ids, target)

    added = 0
    if adding:
        added = len(ingest(library, [paper for _, paper in adding], within=record).added)
    else:
        with library.store.transaction():
            record()
    done = sorted([*entries, *skipped], key=lambda entry: entry.position)
    counts = {how: sum(entry.match == how for entry in done) for how in ("doi", "arxiv", "title", "added", "unmatched", "skipped")}
    return ImportReport(user_id, fmt, target, collection, recorded, added, counts, done)
