"""BM25 side of hybrid search: a tantivy index over title + abstract, beside the FAISS file.

Why tantivy. SQLite FTS5 (used before) scores every paper that shares a word with the query, so its
cost grows with the collection; tantivy keeps a top-k heap and skips whole blocks of postings that
cannot enter it (block-max WAND). Measured on scifact-subset abstracts copied with 20 % of their
words dropped, p50 of the top 100 for scifact's claims:

                              3-word query   15-word claim
    FTS5, 525,250 papers        112 ms          764 ms
    tantivy, 500,000 papers     1.4 ms          4.1 ms     (+0.6 ms reading 100 pks back)

Quality is the same: nDCG@10 on scifact-subset 0.791 (FTS5 + porter 0.789, bm25s + Snowball 0.789).

Like vectors.faiss, the folder is a cache of the store: written right after each commit of the
store, vouched for by the manifest's ``keyword_generation``, and rebuilt from the store when the
two disagree (a crash between the commits), so the SQLite file stays the one source of truth.

Stop words are removed from the query only (Lucene's 33-word English list): the terms are OR-ed,
and a query word like "the" would otherwise make every paper a candidate. Stemming (Snowball
English, as tantivy's ``en_stem``) matters: outside measurements on a held-out BEIR set gave
0.717 without and 0.742 with it.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import re
import shutil
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tantivy

from .filters import Filters
from .names import AUTHOR_DTYPE, author_key
from .papers import paper_text

# Lucene's default English stop set, the one bm25s and Elasticsearch use.
STOP_WORDS = frozenset(
    ["a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it", "no", "not", "of", "on", "or", "such", "that", "the", "their", "then", "there", "these", "they", "this", "to", "was", "will", "with"]
)
# Runs of letters and digits: the words tantivy's simple tokenizer cuts text into.
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
MAX_TERMS = 64  # a pasted abstract as a query: more terms only slow the search down
TOKENIZER = "paperlens_en"
# A filter is applied inside tantivy as a set of pks while that is cheaper than over-fetching:
# the set costs ~12 µs a pk at 1M papers, reading a hit's pk back ~10 µs, and an over-fetched list
# needs ~2k·N/|allowed| hits, so the set wins while |allowed|² <= FILTER_SET_FACTOR·k·N.
FILTER_SET_FACTOR = 2
# Date, category and popularity filters can also be applied inside the index (``filter_query``),
# which costs little for a narrow filter but scores every allowed paper that holds a query term,
# while a grown top list keeps block-max WAND. Measured at 1M papers, top 100 for scifact's
# claims (benchmarks/stages.py; unfiltered 6.7 ms): a 1 % filter 6.7 ms inside, 55 ms as pks;
# 8 % 9.5 against 25.5; 17 % 10.5 against 9.5; 23 % 14.5 against 9.7. Inside below this share.
INSIDE_FILTER_MAX_SHARE = 0.15
# Up to this many pks, a restriction to them (a fill-in's BM25 scores, a filter as pks) is a union of
# one-term queries: tantivy's term-set query walks the pk term dictionary as an automaton, which at
# 1M papers cost 1.50 against 0.32 ms for 35 pks, 11.9 against 4.7 for 1,000 and 40 against 31 for
# 6,000, but 59 against 129 for 20,000 (the same scores; a 3-word query, p50).
PK_UNION_MAX = 4096
WRITE_HEAP = 20_000_000  # bytes; one small batch per ingest
# tantivy's BM25 parameters (its explanations name them): PendingPapers scores as tantivy does.
BM25_K1, BM25_B = 1.2, 0.75
# A commit in flight changing more papers than this is waited for rather than read through a
# KeywordView: the view scores its papers in Python and over-fetches by as many.
PENDING_MAX = 1000
REBUILD_HEAP = 256_000_000

# (pk, title, abstract), then optionally (date, categories, popularity, author keys): the fields
# filters read inside the index (``filter_query``); a row without them passes no filter on them.
# The author keys are the store's packed names.AUTHOR_DTYPE records (names.author_entries).
Row = (tuple[int, str, str] | tuple[int, str, str, str | None, Sequence[str], float]
       | tuple[int, str, str, str | None, Sequence[str], float, bytes])
# A keyword query: stemmed terms, each with the weight its BM25 score is multiplied by.
Terms = list[tuple[str, float]]


@dataclass(frozen=True)
class MoreLikeThis:
    """How a paper becomes a keyword query, after Lucene's MoreLikeThis: its terms ranked by
    tf x idf against the collection, the best ``max_terms`` kept. ``min_doc_freq`` drops typos and
    ids that find nothing; ``max_doc_share`` drops words in most papers (a stop word of the field)."""

    max_terms: int = 25
    min_term_freq: int = 1
    min_doc_freq: int = 1
    max_doc_share: float = 0.5
    # Each term's BM25 is multiplied by (tf x idf / best tf x idf) ** boost_power: 0 is a plain
    # union of the terms, 1 Lucene's boostTerms; between, the paper's main words count more.
    boost_power: float = 1.0


@dataclass(frozen=True)
class TermStats:
    """What BM25's idf reads: papers held, and how many hold each term."""

    docs: int
    doc_freq: dict[str, int]

    @classmethod
    def summed(cls, parts: Iterable[TermStats]) -> TermStats:
        """The statistics of a collection split into parts (the shards of shards.py)."""
        docs, freq = 0, Counter()
        for part in parts:
            docs += part.docs
            freq.update(part.doc_freq)
        return cls(docs, dict(freq))


def bm25_idf(doc_freq: int, docs: int) -> float:
    """tantivy's (and Lucene's) BM25 idf."""
    return math.log(1.0 + (docs - doc_freq + 0.5) / (doc_freq + 0.5))


def like_terms(texts: Sequence[str], weights: Sequence[float] | None, how: MoreLikeThis, indexed: bool,
               stats: Callable[[Sequence[str]], TermStats]) -> Terms:
    """A keyword query for papers like ``texts`` (one paper, or several liked ones with weights):
    their terms by weighted term frequency x idf, the best ``how.max_terms``; ``stats`` gives the
    collection's document frequencies (one index's, or the sum over shards).

    ``indexed``: the texts are papers of the index, so a term counts only the other papers
    that hold it (a word of the paper's alone would otherwise top the list and find nothing)."""
    counts: Counter[str] = Counter()
    holders: Counter[str] = Counter()  # how many of the texts hold each term
    for text, weight in zip(texts, weights if weights is not None else [1.0] * len(texts)):
        for term, tf in Counter(stemmed_words(text)).items():
            holders[term] += 1
            if tf >= how.min_term_freq:
                counts[term] += weight * tf
    if not counts:
        return []
    found = stats(list(counts))
    docs = max(found.docs, 1)
    max_df = max(how.min_doc_freq, how.max_doc_share * docs)
    scored = []
    for term, tf in counts.items():
        df = found.doc_freq.get(term, 0)
        others = df - holders[term] if indexed else df
        if how.min_doc_freq <= others and df <= max_df:
            scored.append((tf * math.log(1.0 + (docs - df + 0.5) / (df + 0.5)), term))
    scored.sort(reverse=True)
    scored = scored[: how.max_terms]
    if not scored:
        return []
    best = scored[0][0]
    return [(term, (score / best) ** how.boost_power if how.boost_power else 1.0) for score, term in scored]


def collection_idf(terms: Terms, stats: TermStats | None, local_stats: Callable[[Sequence[str]], TermStats]) -> Terms:
    """``terms`` with each weight times idf(collection) / idf(here): a shard's BM25 scores as if
    it held the whole collection's document frequencies (shards.py). Its average length stays
    its own, which differs little between shards of a hashed split."""
    if stats is None or not terms:
        return terms
    here = local_stats([term for term, _ in terms])
    out = []
    for term, weight in terms:
        local = here.doc_freq.get(term, 0)
        factor = bm25_idf(stats.doc_freq.get(term, local), stats.docs) / bm25_idf(local, here.docs) if local else 1.0
        out.append((term, weight * factor))
    return out


def _analyzer() -> tantivy.TextAnalyzer:
    """tantivy's en_stem, spelled out so that queries are tokenised by the very same chain."""
    return (
        tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
        .filter(tantivy.Filter.remove_long(40))
        .filter(tantivy.Filter.lowercase())
        .filter(tantivy.Filter.stemmer("english"))
        .build()
    )


_ANALYZER = _analyzer()


def stemmed_words(text: str, stop_words: frozenset[str] = STOP_WORDS) -> list[str]:
    """The text's stemmed words in order, stop words left out, repeats kept."""
    words = [w for w in (w.lower() for w in _WORD.findall(text)) if w not in stop_words]
    return _ANALYZER.analyze(" ".join(words)) if words else []


def query_terms(text: str, stop_words: frozenset[str] = STOP_WORDS) -> Terms:
    """Stemmed terms of a free-text query, each of weight 1, stop words and repeats left out, in order."""
    return [(term, 1.0) for term in dict.fromkeys(stemmed_words(text, stop_words))][:MAX_TERMS]


def _schema() -> tantivy.Schema:
    builder = tantivy.SchemaBuilder()
    builder.add_integer_field("pk", stored=True, indexed=True, fast=True)
    # Term frequencies without positions: BM25 needs no phrase queries, and the index is smaller.
    # "text" is title + abstract, the paper as the encoder sees it; "title" alone serves only an
    # extra title weight. One field per term keeps queries a plain union of term scorers, the
    # shape block-max WAND skips best (two fields per term cost 25 % more at 1M papers).
    builder.add_text_field("text", tokenizer_name=TOKENIZER, index_option="freq")
    builder.add_text_field("title", tokenizer_name=TOKENIZER, index_option="freq")
    # Filters, applied inside the search (``filter_query``): the date as the number YYYYMMDD and
    # the popularity as fast fields (column scans), categories as whole-name terms plus their
    # lowercased dotted prefixes ("cs.LG" also under "cs"), which is filters.category_matches.
    builder.add_integer_field("day", fast=True)
    builder.add_float_field("popularity", fast=True)
    builder.add_text_field("category", tokenizer_name="raw", index_option="basic")
    builder.add_text_field("category_prefix", tokenizer_name="raw", index_option="basic")
    # Authors as FilterColumns.by_authors compares them (names.author_key): "author" holds each
    # author's family-name hash, "author_initial" the hash and the first initial's code point (0 for
    # none), so a name with an initial matches that initial or none, and one without any initial.
    builder.add_text_field("author", tokenizer_name="raw", index_option="basic")
    builder.add_text_field("author_initial", tokenizer_name="raw", index_option="basic")
    return builder.build()


def day_number(date: str | None) -> int:
    """An ISO date (or its year / year-month) as YYYYMMDD, missing parts 0: ordered as the strings
    are, so "2020" < "2020-01-01" here as in FilterColumns. 0 for no date."""
    digits = (date or "").replace("-", "")[:8]
    return int(digits.ljust(8, "0")) if digits.isdigit() else 0


def category_prefixes(name: str) -> list[str]:
    """The lowercased dotted prefixes a category filter can name: "q-bio.GN" → ["q-bio"]."""
    parts = name.lower().split(".")
    return [".".join(parts[:n]) for n in range(1, len(parts))]


def author_terms(names: Iterable[str]) -> list[tuple[str, str]]:
    """(field, term) pairs of which a paper must hold one to have any of ``names`` among its authors."""
    terms = []
    for key in dict.fromkeys(key for key in map(author_key, names) if key is not None):
        if key.initial:
            terms += [("author_initial", f"{key.family_hash}.{ord(key.initial)}"), ("author_initial", f"{key.family_hash}.0")]
        else:
            terms.append(("author", str(key.family_hash)))
    return terms


def _document(row: Row) -> tantivy.Document:
    pk, title, abstract = row[0], row[1], row[2]
    doc = tantivy.Document(pk=int(pk), text=paper_text(title, abstract), title=title or "")
    if len(row) > 3:
        date, categories, popularity = row[3], row[4], row[5]
        doc.add_integer("day", day_number(date))
        doc.add_float("popularity", float(popularity) if popularity is not None and popularity == popularity else float("-inf"))
        for name in categories:
            doc.add_text("category", name)
            for prefix in category_prefixes(name):
                doc.add_text("category_prefix", prefix)
    if len(row) > 6:
        for family, initial in np.frombuffer(row[6] or b"", dtype=AUTHOR_DTYPE).tolist():
            doc.add_text("author", str(family))
            doc.add_text("author_initial", f"{family}.{initial}")
    return doc


class KeywordIndex:
    """The BM25 index of one index folder. Searches read a snapshot; writes replace it whole."""

    def __init__(self, path: Path, index: tantivy.Index, schema: tantivy.Schema):
        self.path = path
        # The store write this index reflects; the manifest records it (see caches.KeywordCache).
        self.generation = -1
        self._index = index
        self._schema = schema
        self._searcher = index.searcher()
        self._write_lock = threading.Lock()

    @classmethod
    def open(cls, path: Path) -> KeywordIndex:
        """Open the folder, or create an empty index there. Raises ValueError if it is unreadable."""
        path.mkdir(parents=True, exist_ok=True)
        schema = _schema()
        index = tantivy.Index(schema, str(path), reuse=True)
        index.register_tokenizer(TOKENIZER, _ANALYZER)
        for field in ("text", "title", "category", "category_prefix", "author", "author_initial"):  # another schema: the caller rebuilds it
            tantivy.Query.term_query(index.schema, field, "")
        tantivy.Query.range_query(index.schema, "day", tantivy.FieldType.Integer, 0, None)
        tantivy.Query.range_query(index.schema, "popularity", tantivy.FieldType.Float, 0.0, None)
        return cls(path, index, index.schema)

    @classmethod
    def recreate(cls, path: Path, rows: Iterable[Row], generation: int) -> KeywordIndex:
        """A fresh index of ``rows`` in place of whatever the folder held (a stale or damaged copy).

        Built in a folder beside it, then renamed into place: removing the old folder in place
        raced with tantivy's own handles on it ("Directory not empty"), and a crash midway now
        leaves one whole folder, old or new."""
        fresh = path.with_name(path.name + ".new")
        shutil.rmtree(fresh, ignore_errors=True)
        cls.open(fresh).write(rows, (), generation, heap=REBUILD_HEAP, threads=0)
        if path.exists():
            os.replace(path, path.with_name(f"{path.name}.old-{os.getpid()}-{threading.get_ident()}"))
        os.replace(fresh, path)
        for old in path.parent.glob(f"{path.name}.old-*"):  # this one, and any an earlier crash left
            shutil.rmtree(old, ignore_errors=True)
        keywords = cls.open(path)
        keywords.generation = generation
        return keywords

    def __len__(self) -> int:
        return self._searcher.num_docs

    def reload(self) -> None:
        """See the commits made since the last reload, by this process or another one's writer."""
        self._index.reload()
        self._searcher = self._index.searcher()

    def snapshot(self) -> KeywordIndex:
        """This index as it reads now: a later commit (``write``, ``reload``) moves this object on, not the snapshot."""
        return copy.copy(self)

    def write(self, added: Iterable[Row], removed: Iterable[int], generation: int, heap: int = WRITE_HEAP, threads: int = 1) -> None:
        """One commit: ``removed`` pks deleted, then ``added`` papers (re)indexed.

        A writer is opened per call and closed after it: tantivy lets one writer hold a folder, and
        another process (the CLI beside a running server) must be able to take its turn."""
        with self._write_lock:
            writer = self._index.writer(heap_size=heap, num_threads=threads)  # 0: tantivy picks
            try:
                for pk in removed:
                    writer.delete_documents_by_term("pk", int(pk))
                for row in added:
                    writer.add_document(_document(row))
                writer.commit()
                writer.wait_merging_threads()
            except BaseException:
                with contextlib.suppress(Exception):  # release the folder; the error that matters is the first
                    writer.rollback()
                raise
            self._index.reload()
            self._searcher = self._index.searcher()
            self.generation = generation

    def _term(self, field: str, term: str, weight: float) -> tuple[tantivy.Occur, tantivy.Query]:
        query = tantivy.Query.term_query(self._schema, field, term)
        return tantivy.Occur.Should, query if weight == 1.0 else tantivy.Query.boost_query(query, weight)

    def _text_query(self, terms: Terms, title_weight: float) -> tantivy.Query:
        """Any of the terms, each term's BM25 over title + abstract times its weight; a title weight
        w > 1 adds (w - 1) x the title's own BM25 (costs the block-max skipping, so only when asked for)."""
        clauses = [self._term("text", term, weight) for term, weight in terms]
        if title_weight > 1.0:
            clauses += [self._term("title", term, weight * (title_weight - 1.0)) for term, weight in terms]
        return tantivy.Query.boolean_query(clauses)

    def more_like_this(self, texts: Sequence[str], weights: Sequence[float] | None = None, how: MoreLikeThis = MoreLikeThis(),
                       indexed: bool = False) -> Terms:
        """A keyword query for papers like ``texts``, by this index's term statistics (``like_terms``)."""
        return like_terms(texts, weights, how, indexed, self.term_stats)

    def doc_freq(self, term: str) -> int:
        """Papers holding ``term`` in the "text" field, deleted ones until a merge drops them (as BM25 counts)."""
        return self._searcher.doc_freq("text", term)

    def explain_term(self, term: str) -> dict | None:
        """tantivy's explanation of ``term``'s BM25 for the first paper holding it (None when none does)."""
        return _explain(self._searcher, tantivy.Query.term_query(self._schema, "text", term))

    def term_stats(self, terms: Sequence[str]) -> TermStats:
        """Papers held and, of each term, how many hold it (in the "text" field)."""
        searcher = self._searcher
        return TermStats(searcher.num_docs, {term: searcher.doc_freq("text", term) for term in dict.fromkeys(terms)})

    def with_collection_idf(self, terms: Terms, stats: TermStats | None) -> Terms:
        return collection_idf(terms, stats, self.term_stats)

    def filter_query(self, filters: Filters) -> tantivy.Query:
        """The papers that pass the filters, as one query that scores 0: what FilterColumns.allowed
        keeps (tests/test_filters.py, tests/test_authors.py compare the two)."""
        schema, Occur = self._schema, tantivy.Occur
        clauses = []
        if filters.since or filters.until:  # no date (0) fails any date filter, as in FilterColumns
            low, high = max(day_number(filters.since), 1), day_number(filters.until) if filters.until else None
            clauses.append((Occur.Must, tantivy.Query.range_query(schema, "day", tantivy.FieldType.Integer, low, high)))
        if filters.min_popularity is not None:
            clauses.append((Occur.Must, tantivy.Query.range_query(schema, "popularity", tantivy.FieldType.Float,
                                                                  float(filters.min_popularity), None)))
        if filters.categories:
            names = [(Occur.Should, tantivy.Query.term_query(schema, "category", name)) for name in filters.categories]
            names += [(Occur.Should, tantivy.Query.term_query(schema, "category_prefix", name.lower())) for name in filters.categories]
            clauses.append((Occur.Must, tantivy.Query.boolean_query(names)))
        if filters.authors:  # no name with letters: no paper passes, as in FilterColumns.by_authors
            people = [(Occur.Should, tantivy.Query.term_query(schema, field, term)) for field, term in author_terms(filters.authors)]
            clauses.append((Occur.Must, tantivy.Query.boolean_query(people)))
        return tantivy.Query.const_score_query(tantivy.Query.boolean_query(clauses), 0.0)

    def _within(self, query: tantivy.Query, pks: Iterable[int]) -> tantivy.Query:
        """``query`` restricted to ``pks``, its scores unchanged (the filter scores 0)."""
        only = self._any_of([int(pk) for pk in pks])
        return tantivy.Query.boolean_query([(tantivy.Occur.Must, query), (tantivy.Occur.Must, tantivy.Query.const_score_query(only, 0.0))])

    def _any_of(self, pks: list[int]) -> tantivy.Query:
        """The papers of these pks (PK_UNION_MAX says which query is cheaper)."""
        if len(pks) <= PK_UNION_MAX:
            return tantivy.Query.boolean_query([(tantivy.Occur.Should, tantivy.Query.term_query(self._schema, "pk", pk)) for pk in pks])
        return tantivy.Query.term_set_query(self._schema, "pk", pks)

    def _run(self, searcher: tantivy.Searcher, query: tantivy.Query, limit: int) -> tuple[np.ndarray, np.ndarray]:
        hits = searcher.search(query, limit, count=False).hits  # count=False keeps the block skipping
        # pk from its fast field in one call: loading each stored document costs ~6 µs a hit more
        pks = np.asarray(searcher.fast_field_values("pk", [address for _, address in hits]), dtype=np.int64).reshape(-1)
        scores = np.fromiter((score for score, _ in hits), dtype=np.float32, count=len(hits))
        return pks, scores

    def top(self, terms: Terms, k: int, title_weight: float = 1.0, allowed: np.ndarray | None = None,
            where: Filters | None = None) -> list[tuple[int, float]]:
        """(pk, BM25 score) of the k best papers with a query term, best first; ``allowed`` limits the
        pks. ``where`` is the filter ``allowed`` came from: it is then applied inside the index
        instead, if it keeps under INSIDE_FILTER_MAX_SHARE of the papers (or ``allowed`` is None)."""
        if not terms or k <= 0 or (allowed is not None and len(allowed) == 0):
            return []
        searcher = self._searcher
        query = self._text_query(terms, title_weight)
        if where is not None and where.active() and (allowed is None or len(allowed) < INSIDE_FILTER_MAX_SHARE * searcher.num_docs):
            query = tantivy.Query.boolean_query([(tantivy.Occur.Must, query), (tantivy.Occur.Must, self.filter_query(where))])
            allowed = None
        if allowed is None or len(allowed) ** 2 <= FILTER_SET_FACTOR * k * max(searcher.num_docs, 1):
            pks, scores = self._run(searcher, query if allowed is None else self._within(query, allowed), k)
        else:
            pks, scores = self._over_fetch(searcher, query, k, allowed)
        return [(int(pk), float(score)) for pk, score in zip(pks, scores)]

    def _over_fetch(self, searcher: tantivy.Searcher, query: tantivy.Query, k: int, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The top k among ``allowed``, from a top list grown until k of it pass (or it holds every match)."""
        share = len(allowed) / max(searcher.num_docs, 1)
        limit = max(4 * k, int(2 * k / share))
        while True:
            pks, scores = self._run(searcher, query, limit)
            keep = np.isin(pks, allowed)
            if keep.sum() >= k or len(pks) < limit:
                return pks[keep][:k], scores[keep][:k]
            limit *= 4

    def holding(self, pks: Iterable[int]) -> int:
        """How many of ``pks`` this index holds."""
        pks = [int(pk) for pk in pks]
        return len(self._searcher.search(self._any_of(pks), len(pks), count=False).hits) if pks else 0

    def scores(self, terms: Terms, pks: list[int], title_weight: float = 1.0) -> dict[int, float]:
        """BM25 score of each of ``pks`` that has a query term (the others score 0 and are left out)."""
        if not terms or not pks:
            return {}
        found, scores = self._run(self._searcher, self._within(self._text_query(terms, title_weight), pks), len(pks))
        return dict(zip(found.tolist(), scores.tolist()))


def _explained(node: dict, description: str) -> float | None:
    """The value of the first step of a tantivy explanation whose description starts so."""
    if node.get("description", "").startswith(description):
        return float(node["value"])
    for child in node.get("details", []):
        found = _explained(child, description)
        if found is not None:
            return found
    return None


def _explain(searcher: tantivy.Searcher, query: tantivy.Query) -> dict | None:
    """tantivy's explanation of the first paper ``query`` finds, as a dict; None when it finds none."""
    hits = searcher.search(query, 1, count=False).hits
    return json.loads(query.explain(searcher, hits[0][1]).to_json()) if hits else None


def stored_length(tokens: int) -> int:
    """A field's length as tantivy keeps it for BM25: in one byte, as Lucene's SmallFloat.intToByte4
    (24 lengths exact, then 3 bits of mantissa above a leading 1), rounded down."""
    if tokens < 24:
        return tokens
    excess = tokens - 24
    shift = max(excess.bit_length() - 4, 0)
    return 24 + (excess >> shift << shift)


@dataclass(frozen=True)
class _PendingPaper:
    pk: int
    counts: dict[str, int]  # term -> occurrences in title + abstract
    length: int  # their number, as tantivy's field norm stores it (stored_length)


class PendingPapers:
    """The papers a write was answered for whose keywords/ commit is still in flight (group commit
    answers first): their rows as the commit indexes them, and every pk it changes or removes.

    A search reads the committed snapshot without the pks and scores these few papers here, rather
    than wait for the commit: under a stream of writes commits run back to back, and every search
    used to wait for one. tantivy's statistics count replaced and deleted papers until a merge
    drops them, so once the commit lands N is the snapshot's plus these papers and a term's
    document frequency the snapshot's plus these papers that hold it: every paper of the view, the
    snapshot's too (``reweighted``), is scored with that idf. The average length stays the
    snapshot's for all of them (it moves by these few papers' share; the snapshot's papers cannot
    be re-normalised). Each paper is tokenised by the index's own analyzer when a search first
    reads them. Only the "text" field: a view is not used with a title weight."""

    def __init__(self, rows: Sequence[Row], hidden: Iterable[int]):
        self.rows = list(rows)
        self.pks = np.array(sorted(int(row[0]) for row in self.rows), dtype=np.int64)
        self.hidden = frozenset(int(pk) for pk in hidden)
        self._lock = threading.Lock()
        self._papers: dict[int, _PendingPaper] | None = None
        self._holders: Counter[str] = Counter()
        self._base_stats: tuple[float, float] | None = None  # the snapshot's N and average length, as its BM25 reads them
        self._count: int | None = None

    def _prepared(self) -> dict[int, _PendingPaper]:
        with self._lock:
            if self._papers is None:
                papers = {}
                for row in self.rows:
                    counts = dict(Counter(_ANALYZER.analyze(paper_text(row[1], row[2]))))
                    papers[int(row[0])] = _PendingPaper(int(row[0]), counts, stored_length(sum(counts.values())))
                self._holders = Counter(term for paper in papers.values() for term in paper.counts)
                self._papers = papers
            return self._papers

    def ready(self, base: KeywordIndex) -> bool:
        """Whether ``base``'s statistics could be read: from its explanation of a paper holding one
        of these papers' terms (tantivy does not expose N with deleted papers, nor average lengths)."""
        if self._base_stats is not None:
            return True
        papers = self._prepared()
        with self._lock:
            if self._base_stats is None:
                # The rarest of their terms that ``base`` holds: its first paper is found at once (the
                # count includes deleted papers, so a term may find none).
                held = sorted((freq, term) for term in self._holders if (freq := base.doc_freq(term)))
                for _, term in held[:20]:
                    explained = base.explain_term(term)
                    if explained is not None:
                        self._base_stats = (_explained(explained, "N,"), _explained(explained, "avgdl,"))
                        break
            return self._base_stats is not None or not papers

    def count(self, base: KeywordIndex) -> int:
        """Papers ``base`` holds once the commit lands (read once: every search of the view asks)."""
        with self._lock:
            if self._count is None:
                self._count = len(base) - base.holding(self.hidden) + len(self.rows)
            return self._count

    def doc_freq(self, base: KeywordIndex, term: str) -> int:
        """How many papers hold ``term`` once the commit lands, as tantivy counts them."""
        self._prepared()
        return base.doc_freq(term) + self._holders[term]

    def _idf(self, base: KeywordIndex, term: str) -> tuple[float, float]:
        """The term's idf in ``base`` and once the commit lands (the same when there is nothing to read)."""
        if not self.ready(base) or self._base_stats is None:
            return 1.0, 1.0
        docs = self._base_stats[0]
        before = base.doc_freq(term)
        return bm25_idf(before, docs), bm25_idf(before + self._holders[term], docs + len(self.rows))

    def reweighted(self, base: KeywordIndex, terms: Terms) -> Terms:
        """``terms`` for ``base`` with each weight times idf(once committed) / idf(base): its papers score
        with the idf these papers get (a term ``base`` lacks finds nothing there either way)."""
        out = []
        for term, weight in terms:
            before, after = self._idf(base, term)
            out.append((term, weight * after / before if before > 0 else weight))
        return out

    def scores(self, base: KeywordIndex, terms: Terms, pks: Iterable[int] | None = None) -> dict[int, float]:
        """BM25 of these papers (or of those of them among ``pks``) that hold a query term, tantivy's
        formula with the committed idf and ``base``'s average length."""
        papers = self._prepared()
        wanted = papers.values() if pks is None else [papers[pk] for pk in pks if pk in papers]
        if not wanted or not self.ready(base):
            return {}
        average = self._base_stats[1]
        idf = {term: self._idf(base, term)[1] for term, _ in terms}
        scores: dict[int, float] = {}
        for paper in wanted:
            norm = BM25_K1 * (1.0 - BM25_B + BM25_B * paper.length / average)
            found = [weight * idf[term] * (BM25_K1 + 1.0) * paper.counts[term] / (paper.counts[term] + norm)
                     for term, weight in terms if term in paper.counts]
            if found:
                scores[paper.pk] = sum(found)
        return scores


class KeywordView:
    """keywords/ as it reads once the commit in flight has landed: the committed snapshot less the
    papers that commit changes or removes, plus its changed papers scored here (``PendingPapers``).
    Answers the reads searches make of a KeywordIndex; with a title weight, ``settled`` (the index
    once the commit has landed) answers instead."""

    def __init__(self, base: KeywordIndex, pending: PendingPapers, allowed_for: Callable[[Filters], np.ndarray],
                 settled: Callable[[], KeywordIndex]):
        self.base, self.pending, self._allowed_for, self._settled = base, pending, allowed_for, settled

    def __len__(self) -> int:
        return self.pending.count(self.base)

    def term_stats(self, terms: Sequence[str]) -> TermStats:
        return TermStats(len(self), {term: self.pending.doc_freq(self.base, term) for term in dict.fromkeys(terms)})

    def with_collection_idf(self, terms: Terms, stats: TermStats | None) -> Terms:
        return collection_idf(terms, stats, self.term_stats)

    def more_like_this(self, texts: Sequence[str], weights: Sequence[float] | None = None, how: MoreLikeThis = MoreLikeThis(),
                       indexed: bool = False) -> Terms:
        return like_terms(texts, weights, how, indexed, self.term_stats)

    def top(self, terms: Terms, k: int, title_weight: float = 1.0, allowed: np.ndarray | None = None,
            where: Filters | None = None) -> list[tuple[int, float]]:
        if title_weight != 1.0:
            return self._settled().top(terms, k, title_weight, allowed, where)
        if not terms or k <= 0 or (allowed is not None and len(allowed) == 0):
            return []
        hidden = self.pending.hidden
        found = [(pk, score) for pk, score in self.base.top(self.pending.reweighted(self.base, terms), k + len(hidden), 1.0, allowed, where)
                 if pk not in hidden]
        if allowed is None and where is not None and where.active():
            allowed = self._allowed_for(where)
        candidates = self.pending.pks if allowed is None else self.pending.pks[np.isin(self.pending.pks, allowed)]
        added = self.pending.scores(self.base, terms, candidates.tolist())
        return sorted(found + list(added.items()), key=lambda hit: -hit[1])[:k]

    def scores(self, terms: Terms, pks: list[int], title_weight: float = 1.0) -> dict[int, float]:
        if title_weight != 1.0:
            return self._settled().scores(terms, pks, title_weight)
        hidden = self.pending.hidden
        found = self.base.scores(self.pending.reweighted(self.base, terms), [pk for pk in pks if pk not in hidden])
        return found | self.pending.scores(self.base, terms, pks)
