"""The Paper record and one reader per input format.

Every reader yields ``Paper`` records and a list of ``Skipped`` records with line numbers, so a
bad line in a million-line dump costs one line, not the whole ingest.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import math
import re
import unicodedata
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import InvalidInput

FORMATS = ("jsonl", "json", "csv", "parquet", "beir", "arxiv", "oai", "listing")

# Text files are read as UTF-8 strictly (a byte-order mark allowed); anything else is detected or refused.
UTF8 = "utf-8-sig"
MAX_ID_CHARS = 200
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/\-]{0,199}$")
_ARXIV_NEW_ID = r"\d{4}\.\d{4,5}"  # 2401.00001
_ARXIV_OLD_ID = r"[a-z][a-z\-]*(?:\.[A-Z]{2})?/\d{7}"  # hep-th/9901001, math.GT/0309136
_ARXIV_NEW = re.compile(rf"^(?:arxiv:)?({_ARXIV_NEW_ID})(?:v\d+)?$", re.IGNORECASE)
_ARXIV_OLD = re.compile(rf"^(?:arxiv:)?({_ARXIV_OLD_ID})(?:v\d+)?$", re.IGNORECASE)
# An arXiv id inside other text, where something names arXiv: 'arXiv:2401.00001v3', 'arXiv preprint
# arXiv:hep-th/9901001', 'https://arxiv.org/abs/2401.00001', '.../pdf/2401.00001v2.pdf', arXiv's own DOI
# '10.48550/arXiv.2401.00001'. A bare number elsewhere (a page range, a report number) is not taken.
_ARXIV_IN_TEXT = re.compile(rf"(?:arxiv\.org/(?:abs|pdf)/|arxiv[:.]\s*|arxiv\s+)({_ARXIV_NEW_ID}|{_ARXIV_OLD_ID})(?:v\d+)?(?![\d/])",
                            re.IGNORECASE)


def paper_text(title: str | None, abstract: str | None) -> str:
    """Title and abstract as one text: the encoder's input and the keyword index's "text" field."""
    if title and abstract:
        return f"{title}. {abstract}"
    return title or abstract or ""


@dataclass
class Paper:
    id: str
    title: str
    abstract: str
    authors: list[str] = field(default_factory=list)
    date: str | None = None  # ISO 8601 day, YYYY-MM-DD
    categories: list[str] = field(default_factory=list)
    popularity: float = 0.0  # upvotes, citations: whatever the source counts
    url: str | None = None
    source: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        """What the encoder and the keyword index see."""
        return paper_text(self.title, self.abstract)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Skipped:
    line: int | None
    reason: str


@dataclass
class ReadResult:
    path: str
    format: str
    papers: list[Paper]
    skipped: list[Skipped]
    encoding: str = "utf-8"  # another one only when the file is not UTF-8 (see detect_encoding)
    layout: str | None = None  # CSV and TSV: the delimiter and the columns read (CsvLayout.describe)


class InvalidRecord(ValueError):
    """One record that cannot become a Paper; the reader skips it and reports why."""


# --- ids -------------------------------------------------------------------------------------


def arxiv_base_id(raw: str) -> str | None:
    """'2301.01234v2' → '2301.01234', so every version of a paper is one record."""
    raw = raw.strip()
    for pattern in (_ARXIV_NEW, _ARXIV_OLD):
        match = pattern.match(raw)
        if match:
            return match.group(1)
    return None


def arxiv_id_in(text: str) -> str | None:
    """The arXiv id a field of a reference names (a URL, a note, a journal line, a DOI), without its
    version; a field that is a bare id ('2401.00001v3', an eprint) is ``arxiv_base_id``'s."""
    return arxiv_base_id(text) or (match.group(1) if (match := _ARXIV_IN_TEXT.search(text)) else None)


def normalise_text(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(re.sub(r"[^\w\s]", " ", text).split())


def title_key(title: str | None) -> str:
    """What two records of one paper share even when their sources spell the title differently
    (case, punctuation, Unicode forms): ingest merges records only when these are equal."""
    return normalise_text(title or "")


def content_id(title: str, abstract: str) -> str:
    """A stable id for papers whose source has none: same text (up to case and punctuation), same id."""
    digest = hashlib.sha1(f"{normalise_text(title)}\n{normalise_text(abstract)}".encode()).hexdigest()
    return f"h{digest[:16]}"


def validate_id(paper_id: str) -> str:
    """Ids appear in URLs and file names: keep them to a safe alphabet."""
    if not isinstance(paper_id, str) or not _ID_RE.match(paper_id) or ".." in paper_id:
        raise InvalidInput(
            f"invalid paper id {str(paper_id)[:80]!r}: use letters, digits and . _ : / - (at most {MAX_ID_CHARS})"
        )
    return paper_id


def normalise_id(raw: Any) -> str:
    if isinstance(raw, bool) or not isinstance(raw, (str, int)):
        raise InvalidRecord(f"id must be a string, got {type(raw).__name__}")
    text = str(raw).strip()
    base = arxiv_base_id(text)
    if base:
        return base
    try:
        return validate_id(text)
    except InvalidInput as exc:
        raise InvalidRecord(str(exc)) from None


# --- field coercion --------------------------------------------------------------------------

_DATE_FORMATS = ("%Y-%m-%d", "%Y-%m", "%Y", "%b %d, %Y", "%B %d, %Y", "%d %b %Y", "%a, %d %b %Y %H:%M:%S %Z")


def parse_date(value: Any) -> str | None:
    """Dates arrive as ISO strings, timestamps, '2023-04-01T12:00:00Z' or 'Jul 24, 2025'."""
    if value is None or value == "":
        return None
    if isinstance(value, (dt.date, dt.datetime)):
        return value.strftime("%Y-%m-%d")
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise InvalidRecord(f"date must be a string, got {type(value).__name__}")
    text = str(value).strip()
    if re.match(r"^\d{4}-\d{2}-\d{2}[T ]", text):
        text = text[:10]
    for fmt in _DATE_FORMATS:
        try:
            return dt.datetime.strptime(text, fmt).strftime("%Y-%m-%d")
        except ValueError:
            continue
    raise InvalidRecord(f"unreadable date {text[:40]!r}")


# Characters XML 1.0 forbids (C0 controls but tab, newline and CR; U+FFFE, U+FFFF): an Atom writer
# refuses them and a BibTeX or HTML reader chokes on them. Those Python counts as whitespace (vertical
# tab, form feed, the separators \x1c-\x1f) become a space, the rest are dropped.
_XML_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def clean_text(text: str) -> str:
    """Text every response and export can hold: unpaired surrogates (from a JSON '\\ud800' escape or
    undecodable argv bytes) become U+FFFD, for messages that echo input, and characters XML 1.0 forbids
    are dropped (``_XML_FORBIDDEN``). Stored text never holds a surrogate (``valid_text`` refuses it)."""
    return drop_xml_forbidden(text.encode("utf-8", "surrogatepass").decode("utf-8", "replace"))


def drop_xml_forbidden(text: str) -> str:
    return _XML_FORBIDDEN.sub(lambda match: " " if match.group().isspace() else "", text)


def clean_value(value: Any) -> Any:
    """``clean_text`` on every string of a JSON-like value (keys included)."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_text(str(key)): clean_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_value(item) for item in value]
    return value


def clean_paper(paper: Paper) -> Paper:
    """The paper with every text field cleaned: for exports of papers stored before ingest cleaned them."""
    return Paper(id=paper.id, title=clean_text(paper.title), abstract=clean_text(paper.abstract),
                 authors=clean_value(paper.authors), date=paper.date, categories=clean_value(paper.categories),
                 popularity=paper.popularity, url=clean_text(paper.url) if paper.url else paper.url,
                 source=clean_text(paper.source) if paper.source else paper.source, extra=clean_value(paper.extra))


def unicode_text(text: str, name: str) -> str:
    """Text as given, or InvalidRecord: an unpaired surrogate (a JSON '\\ud800' escape) is not Unicode,
    and replacing it would put a U+FFFD in the store in place of what the source meant."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidRecord(f"{name} holds an unpaired surrogate (\\u{ord(text[exc.start]):04x}), not valid Unicode") from None
    return text


def valid_text(text: str, name: str) -> str:
    """Text to store: Unicode (``unicode_text``) less the characters XML 1.0 forbids."""
    return drop_xml_forbidden(unicode_text(text, name))


def _clean_json(value: Any) -> Any:
    """``extra`` as plain JSON: no NaN or infinities (a JSON response cannot carry them), clean text."""
    try:
        return clean_value(json.loads(unicode_text(json.dumps(value, ensure_ascii=False, allow_nan=False), "extra")))
    except (TypeError, ValueError, RecursionError) as exc:
        if isinstance(exc, InvalidRecord):
            raise
        raise InvalidRecord(f"extra must be plain JSON ({exc.__class__.__name__})") from None


def _text_field(record: dict[str, Any], *names: str) -> str:
    for name in names:
        value = record.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            raise InvalidRecord(f"{name} must be a string, got {type(value).__name__}")
        return " ".join(valid_text(value, name).split())
    return ""


def _list_field(value: Any, name: str, split: Callable[[str], list[str]]) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [part.strip() for part in split(valid_text(value, name)) if part.strip()]
    if isinstance(value, (list, tuple)):
        # Semantic Scholar and OpenAlex-like records list authors as {"authorId", "name"} objects
        value = [item["name"] if isinstance(item, dict) and isinstance(item.get("name"), str) else item for item in value]
        if not all(isinstance(item, str) for item in value):
            raise InvalidRecord(f"{name} must be a list of strings")
        return [valid_text(item, name).strip() for item in value if item.strip()]
    raise InvalidRecord(f"{name} must be a list or a string, got {type(value).__name__}")


def split_authors(text: str) -> list[str]:
    return re.split(r",\s*|\s+and\s+|;\s*", " ".join(text.split()))


def _number_field(record: dict[str, Any], *names: str) -> float:
    for name in names:
        value = record.get(name)
        if value is None or value == "":
            continue
        if isinstance(value, bool):
            raise InvalidRecord(f"{name} must be a number")
        try:
            number = float(value)
        except (TypeError, ValueError, OverflowError):
            raise InvalidRecord(f"{name} must be a number, got {str(value)[:20]!r}") from None
        if not math.isfinite(number):
            raise InvalidRecord(f"{name} must be a finite number, got {str(value)[:20]!r}")
        return number
    return 0.0


_KNOWN_KEYS = {
    "id", "_id", "paper_id", "arxiv_id", "title", "abstract", "text", "summary", "authors",
    "author", "date", "published", "update_date", "created", "categories", "category", "tags",
    "popularity", "upvotes", "citations", "citation_count", "url", "link", "source", "extra",
    "versions", "authors_parsed", "metadata",
}


def paper_from_mapping(record: Any, source: str, default_id: Callable[[str, str], str] = content_id) -> Paper:
    """The one place where loosely shaped records (JSON, CSV, Parquet, API bodies) become Papers."""
    if not isinstance(record, dict):
        raise InvalidRecord(f"expected an object, got {type(record).__name__}")
    title = _text_field(record, "title")
    abstract = _text_field(record, "abstract", "text", "summary")
    if not title and not abstract:
        raise InvalidRecord("no title and no abstract")
    raw_id = next((record[k] for k in ("id", "_id", "paper_id", "arxiv_id") if record.get(k) not in (None, "")), None)
    paper_id = normalise_id(raw_id) if raw_id is not None else default_id(title, abstract)
    date = None
    for key in ("date", "published", "update_date", "created"):
        if record.get(key) not in (None, ""):
            date = parse_date(record[key])
            break
    categories = _list_field(
        next((record[k] for k in ("categories", "category", "tags") if k in record), None),
        "categories",
        str.split,
    )
    extra = record.get("extra") or {}
    if not isinstance(extra, dict):
        raise InvalidRecord("extra must be an object")
    extra = _clean_json({**extra, **{str(k): v for k, v in record.items() if k not in _KNOWN_KEYS and _jsonable(v)}})
    url = _text_field(record, "url", "link") or None
    if url is None and arxiv_base_id(paper_id) == paper_id and raw_id is not None:
        url = f"https://arxiv.org/abs/{paper_id}"
    return Paper(
        id=paper_id,
        title=title,
        abstract=abstract,
        authors=_list_field(record.get("authors", record.get("author")), "authors", split_authors),
        date=date,
        categories=categories,
        popularity=_number_field(record, "popularity", "upvotes", "citations", "citation_count"),
        url=url,
        source=_text_field(record, "source") or source,
        extra=extra,
    )


def _jsonable(value: Any) -> bool:
    """Only values that survive a JSON round trip go to ``extra`` (no NaN, no bytes, no deep nesting)."""
    try:
        json.dumps(value, allow_nan=False)
        return True
    except (TypeError, ValueError, RecursionError):
        return False


# --- readers: one function per format, each yielding (line, record-or-error) ----------------------

Row = tuple[int | None, "Paper | InvalidRecord"]


def _json_lines(path: Path, encoding: str = UTF8) -> Iterator[tuple[int, Any]]:
    with path.open(encoding=encoding) as handle:
        yield from _json_records(handle)


def _json_records(lines: Iterable[str]) -> Iterator[tuple[int, Any]]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, InvalidRecord(f"broken JSON: {exc.msg}")
        except RecursionError:
            yield number, InvalidRecord("JSON nested too deeply")


def _convert_rows(rows: Iterable[tuple[int | None, Any]], source: str, convert=paper_from_mapping) -> Iterator[Row]:
    for line, record in rows:
        if isinstance(record, InvalidRecord):
            yield line, record
            continue
        try:
            yield line, convert(record, source)
        except InvalidRecord as exc:
            yield line, exc


def read_jsonl(path: Path, encoding: str = UTF8) -> Iterator[Row]:
    return _convert_rows(_json_lines(path, encoding), "jsonl")


def read_json(path: Path, encoding: str = UTF8) -> Iterator[Row]:
    try:
        data = json.loads(path.read_text(encoding=encoding))
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except RecursionError:
        raise InvalidInput(f"{path}: JSON nested too deeply") from None
    if isinstance(data, dict) and isinstance(data.get("papers"), list):
        data = data["papers"]
    if not isinstance(data, list):
        raise InvalidInput(f"{path}: expected a list of papers or {{'papers': [...]}}")
    return _convert_rows(((i, record) for i, record in enumerate(data, start=1)), "json")


# Header names a CSV or TSV file may use for each field (compared lower-case, with spaces and
# hyphens as underscores); the first one present is used. Other columns go to ``extra``.
CSV_COLUMNS: dict[str, tuple[str, ...]] = {
    "id": ("id", "paper_id", "arxiv_id", "_id", "identifier"),
    "title": ("title", "paper_title", "name", "headline"),
    "abstract": ("abstract", "summary", "text", "description", "paper_abstract", "body"),
    "authors": ("authors", "author", "creators", "author_names"),
    "date": ("date", "published", "publication_date", "pub_date", "update_date", "created", "year"),
    "categories": ("categories", "category", "tags", "subjects"),
    "popularity": ("popularity", "upvotes", "citations", "citation_count"),
    "url": ("url", "link", "pdf_url"),
}
CSV_DELIMITERS = (",", "\t", ";", "|")


@dataclass
class CsvLayout:
    """How a CSV or TSV file is read: its delimiter and which header feeds which field."""

    delimiter: str
    headers: list[str]
    columns: dict[str, str]  # field -> the header it is read from

    def describe(self) -> str:
        """'tab-separated; title from "Name", abstract from "Summary"' for the ingest summary."""
        delimiter = {"\t": "tab", ",": "comma", ";": "semicolon", "|": "bar"}[self.delimiter]
        used = ", ".join(f"{field} from {header!r}" for field, header in self.columns.items())
        return f"{delimiter}-separated; {used}"


def _header_key(header: str) -> str:
    return re.sub(r"[\s\-]+", "_", header.strip().lower())


def csv_layout(path: Path, encoding: str = UTF8) -> CsvLayout:
    """The delimiter is the one the header line holds most of (headers rarely contain one, abstracts
    often do); a file with no title and no abstract column is refused once, with what it has."""
    with path.open(newline="", encoding=encoding) as handle:
        first = handle.readline()
    delimiter = max(CSV_DELIMITERS, key=first.count) if any(d in first for d in CSV_DELIMITERS) else (
        "\t" if path.suffix.lower() == ".tsv" else ",")
    headers = next(csv.reader([first], delimiter=delimiter), [])
    keys = {_header_key(h): h for h in headers if h.strip()}
    columns = {}
    for field_name, names in CSV_COLUMNS.items():
        found = next((keys[name] for name in names if name in keys), None)
        if found is not None:
            columns[field_name] = found
    if "title" not in columns and "abstract" not in columns:
        accepted = "; ".join(f"{field_name}: {', '.join(names)}" for field_name, names in CSV_COLUMNS.items()
                             if field_name in ("title", "abstract"))
        raise InvalidInput(f"{path}: no title or abstract column (found: {', '.join(headers) or 'none'}). "
                           f"Columns read: {accepted}")
    return CsvLayout(delimiter, headers, columns)


def read_csv(path: Path, encoding: str = UTF8) -> Iterator[Row]:
    layout = csv_layout(path, encoding)
    rename = {header: field_name for field_name, header in layout.columns.items()}

    def rows() -> Iterator[tuple[int, Any]]:
        with path.open(newline="", encoding=encoding) as handle:
            reader = csv.DictReader(handle, delimiter=layout.delimiter)
            for record in reader:
                # line_num counts the header, so it is the physical line of this row
                yield reader.line_num, {rename.get(k, _header_key(k)): v for k, v in record.items()
                                        if k and (k in rename or _header_key(k) not in _KNOWN_KEYS)}

    return _convert_rows(rows(), "csv")


def read_parquet(path: Path, encoding: str = UTF8) -> Iterator[Row]:  # binary: Parquet strings are UTF-8
    return _parquet_rows(path, str(path))


def _parquet_rows(source: Any, name: str) -> Iterator[Row]:
    """``source``: a path, or a pyarrow buffer of a file's bytes (``read_bytes``)."""
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(source)
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise InvalidInput(f"{name}: not a readable Parquet file ({exc})") from None
    return _convert_rows(((i, record) for i, record in enumerate(table.to_pylist(), start=1)), "parquet")


def read_beir(path: Path, encoding: str = UTF8) -> Iterator[Row]:
    corpus = beir_corpus(path)
    if not corpus.exists():
        raise InvalidInput(f"{path}: a BEIR folder needs corpus.jsonl")
    return _convert_rows(_json_lines(corpus, encoding), "beir")


def beir_corpus(path: Path) -> Path:
    return path / "corpus.jsonl" if path.is_dir() else path


def _arxiv_snapshot_record(record: Any, source: str) -> Paper:
    """The arXiv metadata snapshot: versions listed apart, authors as one string, date of v1."""
    if not isinstance(record, dict):
        raise InvalidRecord(f"expected an object, got {type(record).__name__}")
    fields = {k: v for k, v in record.items() if k not in ("update_date", "versions", "authors_parsed")}
    versions = record.get("versions")
    first = versions[0] if isinstance(versions, list) and versions and isinstance(versions[0], dict) else {}
    fields["date"] = first.get("created") or record.get("update_date")
    parsed = record.get("authors_parsed")
    if not fields.get("authors") and isinstance(parsed, list):
        fields["authors"] = [" ".join(p for p in reversed(parts[:2]) if p) for parts in parsed if isinstance(parts, list)]
    paper = paper_from_mapping(fields, source)
    if record.get("update_date"):
        paper.extra["updated"] = record["update_date"]
    return paper


def read_arxiv(path: Path, encoding: str = UTF8) -> Iterator[Row]:
    return _convert_rows(_json_lines(path, encoding), "arxiv", _arxiv_snapshot_record)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _children_text(element: ET.Element, name: str) -> list[str]:
    return [" ".join("".join(child.itertext()).split()) for child in element.iter() if _local(child.tag) == name]


def _oai_record(element: ET.Element) -> dict[str, Any]:
    """OAI-PMH record in the arXiv, arXivRaw or Dublin Core metadata format, read by local tag names."""
    header_id = next(iter(_children_text(element, "identifier")), "")
    if any(_local(child.tag) == "header" and child.get("status") == "deleted" for child in element):
        raise InvalidRecord("deleted record")
    arxiv_ids = [t for t in _children_text(element, "id") if t]
    authors = []
    for author in (child for child in element.iter() if _local(child.tag) == "author"):
        parts = {_local(p.tag): (p.text or "").strip() for p in author}
        authors.append(" ".join(filter(None, [parts.get("forenames"), parts.get("keyname"), parts.get("suffix")])))
    if not authors:  # arXivRaw: one string, 'A, B and C'; Dublin Core: a creator each
        raw_authors = " ".join(_children_text(element, "authors"))
        authors = split_authors(raw_authors) if raw_authors else _children_text(element, "creator")
    raw_id = arxiv_ids[0] if arxiv_ids else header_id.rsplit(":", 1)[-1] if header_id else None
    categories = " ".join(_children_text(element, "categories")).split() or _children_text(element, "subject")
    dates = _children_text(element, "created") or _children_text(element, "date") or _children_text(element, "datestamp")
    titles = _children_text(element, "title")
    abstracts = _children_text(element, "abstract") or _children_text(element, "description")
    dois = [t for t in _children_text(element, "doi") if t]
    # arXivRaw lists every version (<version version="v2">): the record is the text of the last one.
    versions = [child.get("version") for child in element.iter() if _local(child.tag) == "version" and child.get("version")]
    return {
        **({"doi": dois[0].split()[0]} if dois else {}),
        **({"version": versions[-1]} if versions else {}),
        "id": raw_id,
        "title": titles[0] if titles else "",
        "abstract": abstracts[0] if abstracts else "",
        "authors": authors,
        "categories": categories,
        "date": dates[0] if dates else None,
    }


def oai_paper(element: ET.Element, source: str = "oai") -> Paper:
    """One OAI-PMH <record> as a Paper, for a file (``read_oai``) and a harvest (harvest.py) alike.
    InvalidRecord for a deleted record or one with neither title nor abstract."""
    return paper_from_mapping(_oai_record(element), source)


def read_oai(path: Path, encoding: str = UTF8) -> Iterator[Row]:  # XML declares its own encoding
    number = 0
    try:
        for _event, element in ET.iterparse(path, events=("end",)):
            if _local(element.tag) != "record":
                continue
            number += 1
            try:
                yield number, oai_paper(element)
            except InvalidRecord as exc:
                yield number, exc
            element.clear()
    except ET.ParseError as exc:
        yield exc.position[0], InvalidRecord(f"broken XML, reading stopped: {exc}")


_LISTING_DATE = re.compile(r"^(?P<date>[A-Z][a-z]{2} \d{1,2}(?:, \d{4})?)(?: (?P<upvotes>\d+))?$")
_LISTING_AUTHORS = re.compile(r"^[•·]?\s*(\d+) authors?$")


def _listing_metadata(block: list[str]) -> dict[str, Any] | None:
    """'• 3 authors' or an organisation, '·', 'Jul 24, 2025 12' (12 upvotes); None if not metadata."""
    lines = [line.strip() for line in block if line.strip()]
    if not lines or not _LISTING_DATE.match(lines[-1]):
        return None
    match = _LISTING_DATE.match(lines[-1])
    day = match.group("date")
    if "," not in day:  # the site leaves the year out for the current year
        day = f"{day}, {dt.date.today().year}"
    meta: dict[str, Any] = {"date": dt.datetime.strptime(day, "%b %d, %Y").strftime("%Y-%m-%d")}
    meta["upvotes"] = int(match.group("upvotes") or 0)
    for line in lines[:-1]:
        if line in ("·", "•"):
            continue
        count = _LISTING_AUTHORS.match(line)
        if count:
            meta["author_count"] = int(count.group(1))
        else:
            words = line.lstrip("•· ").split()
            half = len(words) // 2
            # the page repeats an organisation as its handle and its name: "nvidia NVIDIA"
            if len(words) % 2 == 0 and [w.casefold() for w in words[:half]] == [w.casefold() for w in words[half:]]:
                words = words[half:]
            meta["organisation"] = " ".join(words)
    return meta


def read_listing(path: Path, encoding: str = UTF8) -> Iterator[Row]:
    """The daily-papers listing text: title, abstract, then an optional metadata block."""
    text = path.read_text(encoding=encoding)
    blocks: list[tuple[int, list[str]]] = []
    current: list[str] = []
    start = 1
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            if not current:
                start = number
            current.append(line)
        elif current:
            blocks.append((start, current))
            current = []
    if current:
        blocks.append((start, current))

    def is_prose(block: list[str], min_chars: int) -> bool:
        return _listing_metadata(block) is None and len(" ".join(block)) >= min_chars

    records: list[tuple[int, dict[str, Any]]] = []
    i = 0
    while i < len(blocks):
        line, block = blocks[i]
        meta = _listing_metadata(block)
        if meta is not None:
            if records and "date" not in records[-1][1]:
                records[-1][1].update(meta)
            i += 1
            continue
        title = " ".join(" ".join(block).split())
        nxt = blocks[i + 1][1] if i + 1 < len(blocks) else None
        # A title is one short paragraph followed by a long one; page chrome is short then short.
        if len(block) == 1 and len(title) <= 400 and nxt is not None and is_prose(nxt, 200):
            records.append((line, {"title": title, "abstract": " ".join(" ".join(nxt).split())}))
            i += 2
        else:
            i += 1

    def convert(record: dict[str, Any], source: str) -> Paper:
        extra = {k: record[k] for k in ("author_count", "organisation") if k in record}
        return paper_from_mapping(
            {"title": record["title"], "abstract": record["abstract"], "date": record.get("date"),
             "upvotes": record.get("upvotes", 0), "extra": extra},
            source,
        )

    return _convert_rows(iter(records), "listing", convert)


READERS: dict[str, Callable[[Path, str], Iterator[Row]]] = {
    "jsonl": read_jsonl,
    "json": read_json,
    "csv": read_csv,
    "parquet": read_parquet,
    "beir": read_beir,
    "arxiv": read_arxiv,
    "oai": read_oai,
    "listing": read_listing,
}


def detect_format(path: Path) -> str:
    """By extension first, then by a look at the content, so arXiv dumps and BEIR files need no flag."""
    if path.is_dir():
        if (path / "corpus.jsonl").exists():
            return "beir"
        raise InvalidInput(f"{path} is a folder without corpus.jsonl (not a BEIR folder)")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return "parquet"
    if suffix in (".csv", ".tsv"):
        return "csv"
    if suffix == ".xml":
        return "oai"
    with path.open("rb") as handle:
        head = handle.read(4096).decode("utf-8", errors="replace").lstrip()
    if head.startswith("<"):
        return "oai"
    if head.startswith("["):
        return "json"
    if head.startswith("{"):
        first = head.splitlines()[0]
        try:
            record = json.loads(first)
        except json.JSONDecodeError:
            return "json" if suffix == ".json" else "jsonl"
        if isinstance(record, dict) and "versions" in record and "update_date" in record:
            return "arxiv"
        if isinstance(record, dict) and "papers" in record and len(head.splitlines()) == 1:
            return "json"
        return "beir" if path.name == "corpus.jsonl" else "jsonl"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix == ".json":
        return "json"
    return "listing"


def source_format(path: Path, fmt: str | None = None) -> str:
    """The format ``path`` is read as (``fmt``, or detected), or InvalidInput if it cannot be read at all."""
    if not path.exists():
        raise InvalidInput(f"{path}: no such file or folder")
    fmt = fmt or detect_format(path)
    if fmt not in READERS:
        raise InvalidInput(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if path.is_dir() and fmt != "beir":
        raise InvalidInput(f"{path} is a folder; only the beir format reads folders")
    return fmt


# Formats whose records can be read from a file's bytes alone, on any machine (ray_ingest.py).
BYTES_FORMATS = ("jsonl", "beir", "parquet")


def read_bytes(data: bytes, fmt: str, name: str) -> Iterator[Row]:
    """The records of a JSONL file (or BEIR corpus.jsonl) or a Parquet file from its bytes, exactly as
    the path readers give them (same lines, same conversion, same skips). A JSONL file that is not
    UTF-8 raises UnicodeDecodeError: ``read_papers`` on the path finds its encoding."""
    if fmt not in BYTES_FORMATS:
        raise InvalidInput(f"{name}: the {fmt} format is read from its path, not its bytes")
    if fmt == "parquet":
        import pyarrow as pa

        return _parquet_rows(pa.BufferReader(data), name)
    # newline=None: the universal newlines of a file opened in text mode, so line numbers match read_jsonl's
    return _convert_rows(_json_records(io.StringIO(data.decode(UTF8), newline=None)), fmt)


def read_papers(path: str | Path, fmt: str | None = None) -> ReadResult:
    path = Path(path)
    fmt = source_format(path, fmt)
    encoding = UTF8
    try:
        papers, skipped = _read_all(READERS[fmt](path, encoding))
    except UnicodeDecodeError:
        # Not UTF-8: read it again whole in the encoding it is in, or refuse it. Never decoded with
        # replacement characters, which would be stored (and searched, and exported) as U+FFFD.
        source = beir_corpus(path)
        encoding = detect_encoding(source)
        try:
            papers, skipped = _read_all(READERS[fmt](path, encoding))
        except UnicodeDecodeError:
            raise InvalidInput(f"{source}: {undecodable_at(source.read_bytes(), encoding)} (tried {encoding}); "
                               "save it as UTF-8") from None
    layout = csv_layout(path, encoding).describe() if fmt == "csv" else None
    return ReadResult(str(path), fmt, papers, skipped, "utf-8" if encoding == UTF8 else encoding, layout)


def _read_all(rows: Iterable[Row]) -> tuple[list[Paper], list[Skipped]]:
    papers: list[Paper] = []
    skipped: list[Skipped] = []
    for line, item in rows:
        if isinstance(item, Paper):
            papers.append(item)
        else:
            skipped.append(Skipped(line, str(item)))
    return papers, skipped


# The most common encoding of Western text that is not UTF-8 (a superset of Latin-1's printable
# characters). On a short file charset-normalizer finds several single-byte code pages equally
# plausible (for "Café résumé of naïve methods": cp775, cp1250, cp1252 and cp1257, all without
# chaos); among those that fit equally well this one is taken.
PREFERRED_ENCODINGS = ("cp1252",)


def detect_encoding(path: Path) -> str:
    """The encoding of a file that is not UTF-8 (charset-normalizer), or InvalidInput naming the
    first line and byte that is not UTF-8 when no encoding fits."""
    from charset_normalizer import from_bytes

    data = path.read_bytes()
    matches = list(from_bytes(data))
    if matches:
        least = min(match.chaos for match in matches)
        plausible = [match for match in matches if match.chaos <= least + 0.02]
        for preferred in PREFERRED_ENCODINGS:
            if any(preferred in match.could_be_from_charset for match in plausible):
                return preferred
        return plausible[0].encoding
    raise InvalidInput(f"{path}: {undecodable_at(data, UTF8)} and no other encoding fits; save it as UTF-8")


def undecodable_at(data: bytes, encoding: str) -> str:
    """'line 3: byte 0xe9 is not cp1252', the first place where ``data`` does not decode."""
    try:
        data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        name = "UTF-8" if encoding == UTF8 else encoding
        return f"line {line}: byte 0x{data[exc.start]:02x} is not {name}"
    return f"it does not decode as {encoding}"


def papers_from_records(records: list[Any], source: str = "api") -> tuple[list[Paper], list[Skipped]]:
    """Bodies of POST /papers go through the same conversion as files."""
    papers, skipped = [], []
    for number, item in _convert_rows(((i, r) for i, r in enumerate(records, start=1)), source):
        if isinstance(item, Paper):
            papers.append(item)
        else:
            skipped.append(Skipped(number, str(item)))
    return papers, skipped


# --- the ids other services know a paper by ---------------------------------------------------

# Semantic Scholar's names for a paper's ids (its ``externalIds`` keys), by the lower-cased prefix
# its API accepts ('DOI:10.1/x', 'ARXIV:2301.00001', 'CorpusId:123'); 'S2PaperId' is S2's own sha.
EXTERNAL_ID_PREFIXES = {"arxiv": "ArXiv", "doi": "DOI", "corpusid": "CorpusId", "mag": "MAG", "acl": "ACL",
                        "pmid": "PubMed", "pmcid": "PubMedCentral", "dblp": "DBLP", "s2paperid": "S2PaperId"}
_S2_SHA = re.compile(r"^[0-9a-f]{40}$")
_DOI_URL = re.compile(r"^(?:https?://(?:dx\.)?doi\.org/|doi:)", re.IGNORECASE)
_DOI = re.compile(r"^(?:https?://(?:dx\.)?doi\.org/)?(10\.\d{4,9}/\S+)$", re.IGNORECASE)  # bare, or a doi.org link


def bare_doi(text: str) -> str | None:
    """'10.1145/123' from a DOI as references write it (bare, 'doi:10.…', a doi.org link), or None."""
    match = _DOI.match(_DOI_URL.sub("", text.strip()))
    return match.group(1) if match else None


def _id_value(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    text = str(value).strip()
    return text or None


def external_ids(paper: Paper) -> dict[str, str]:
    """The paper's ids under Semantic Scholar's names, from what the readers kept: an arXiv id as
    the paper's own id, 'doi' (arXiv snapshot, OAI-PMH, OpenAlex, as a bare DOI or a doi.org URL),
    and an S2 record's externalIds, corpusId and paperId (its sha, as 'S2PaperId')."""
    extra = paper.extra
    ids: dict[str, str] = {}
    given = extra.get("externalIds")
    if isinstance(given, dict):
        ids.update({str(key): text for key, value in given.items() if (text := _id_value(value))})
    openalex = extra.get("ids") if isinstance(extra.get("ids"), dict) else {}
    doi = _id_value(extra.get("doi")) or _id_value(openalex.get("doi"))
    if doi:
        ids.setdefault("DOI", _DOI_URL.sub("", doi))
    corpus = _id_value(extra.get("corpusId"))
    if corpus and corpus.isdigit():
        ids.setdefault("CorpusId", corpus)
    sha = _id_value(extra.get("paperId"))
    if sha and _S2_SHA.match(sha):
        ids["S2PaperId"] = sha
    arxiv = arxiv_base_id(paper.id) or (arxiv_base_id(ids["ArXiv"]) if "ArXiv" in ids else None)
    if arxiv:
        ids["ArXiv"] = arxiv
    return ids


def external_id_key(name: str, value: str) -> tuple[str, str]:
    """How an id is looked up: the lower-cased prefix, and the value as compared (DOIs ignore case)."""
    scheme = next((prefix for prefix, known in EXTERNAL_ID_PREFIXES.items() if known.lower() == name.lower()), name.lower())
    value = value.strip()
    if scheme == "doi":
        value = _DOI_URL.sub("", value).lower()
    elif scheme == "arxiv":
        value = arxiv_base_id(value) or value
    elif scheme == "s2paperid":
        value = value.lower()
    return scheme, value


def external_id_keys(paper: Paper) -> list[tuple[str, str]]:
    """The paper's external ids as the store keeps them (paper_external_ids): ``external_id_key`` of each."""
    return [external_id_key(name, value) for name, value in external_ids(paper).items()]


# A lookup key: (PAPERLENS, id) for a paperlens id, stored or the old id of a merged paper
# (paper_aliases); (scheme, value) as ``external_id_key`` writes it for another service's id
# (paper_external_ids).
PAPERLENS = "paperlens"
LookupKey = tuple[str, str]


def lookup_keys(raw: str) -> list[LookupKey]:
    """What an id a user or a client gives may name, most likely first: a paperlens id as ingest
    normalises it ('arXiv:2301.01234v2' → '2301.01234'), and the external ids it may be: an id with
    Semantic Scholar's prefix ('DOI:10.…', 'CorpusId:42', 'ARXIV:…', 'MAG:…'), a bare DOI or a doi.org
    link, S2's sha, an arXiv id (of a paper stored under another id). InvalidRecord when it is none."""
    text = unicode_text(raw, "id").strip()
    keys: list[LookupKey] = []
    try:
        keys.append((PAPERLENS, normalise_id(text)))
    except InvalidRecord as exc:
        malformed = exc
    prefix, _, value = text.partition(":")
    if value.strip() and prefix.lower() in EXTERNAL_ID_PREFIXES:
        keys.append(external_id_key(prefix, value))
    elif doi := _DOI.match(text):
        keys.append(("doi", doi.group(1).lower()))
    elif _S2_SHA.match(text.lower()):
        keys.append(("s2paperid", text.lower()))
    arxiv = arxiv_base_id(text)
    if arxiv and ("arxiv", arxiv) not in keys:
        keys.append(("arxiv", arxiv))
    if not keys:
        raise malformed
    return keys


def author_count(paper: Paper) -> int:
    """How many authors: the names when the source gives them, else the count a listing gives ('• 4 authors')."""
    if paper.authors:
        return len(paper.authors)
    count = paper.extra.get("author_count")
    return count if isinstance(count, int) and not isinstance(count, bool) and count > 0 else 0


def author_line(authors: list[str], count: int = 0, limit: int = 3) -> str:
    """The authors as people read them, made at the edge (CLI table, web page): 'A', 'A and B',
    'A, B and C', 'A, B, C et al.', or '4 authors' when only a count is known; '' when nothing is."""
    if authors:
        if len(authors) > limit:
            return ", ".join(authors[:limit]) + " et al."
        return authors[0] if len(authors) == 1 else ", ".join(authors[:-1]) + " and " + authors[-1]
    if count:
        return f"{count} author{'s' if count != 1 else ''}"
    return ""
