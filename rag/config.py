"""One settings object for the whole project.

Values come from (highest first): explicit keyword arguments, ``MLRAG_*`` environment
variables, an optional ``mlrag.toml`` (path in ``MLRAG_CONFIG``, default ``./mlrag.toml``),
then the defaults below — every default works offline on a CPU-only machine.

Pass a :class:`Settings` explicitly to whatever needs it; there is no module-level instance.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import AliasChoices, BaseModel, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
S = TypeVar("S", bound=BaseModel)


class CoreSettings(BaseModel):
    """Where the index lives and the embedding model every part shares."""

    data_dir: Path = Field(
        Path("data"), description="Everything ingest writes (index, models, adapters, feedback)."
    )
    chroma_url: str | None = Field(
        None, description="Use a Chroma server (http://host:port) instead of the embedded store."
    )
    collection: str = Field("mlrag", description="Chroma collection name.")
    hnsw_ef_search: int = Field(
        1000,
        ge=1,
        description="Neighbours Chroma's HNSW index explores per query (set on the collection when the store opens). Chroma's default, 100, returned 78-96 of the exact 100 nearest chunks on this corpus (~3,900 chunks), missing even the second-best one for 'what is PPO', and a different set in each process; 1000 returned 99-100 in 3.4 ms instead of 2.8. Lower it for corpora of millions of chunks.",
    )
    embedding_model: str = Field(
        "sentence-transformers/all-MiniLM-L6-v2",
        description="Sentence-transformers model: hub name or local path (the packaged copy is used when installed).",
    )
    torch_threads: int = Field(
        0, ge=0, description="torch intra-op threads; 0 = number of CPU cores."
    )

    @field_validator("data_dir", mode="after")
    @classmethod
    def _expand_data_dir(cls, value: Path) -> Path:
        return value.expanduser()


class IngestSettings(BaseModel):
    """Loading, fetching and chunking the sources."""

    sources: Path = Field(
        PROJECT_ROOT / "corpus" / "sources.toml", description="The sources file to ingest."
    )
    mirror: Path | None = Field(
        None,
        description="Folder with MANIFEST.json mapping URL → local file; URLs resolve there instead of the network.",
    )
    chunk_tokens: int = Field(
        200,
        ge=32,
        le=512,
        description="Chunk size in embedding-model tokens (header included, must fit the model window).",
    )
    chunk_overlap: int = Field(
        32, ge=0, le=256, description="Overlap between neighbouring chunks, in tokens."
    )
    fetch_timeout_s: float = Field(
        15.0, gt=0, description="HTTP timeout per request when fetching URL sources."
    )
    fetch_max_bytes: int = Field(5_000_000, gt=0, description="Size cap per fetched page.")
    fetch_delay_s: float = Field(
        1.0, ge=0, description="Polite delay between requests to the same host."
    )
    user_agent: str = Field(
        "mlrag/0.1 (+https://github.com/mlrag)", description="User-Agent sent when fetching."
    )
    fetch_max_pages: int = Field(
        200,
        ge=1,
        description="Most pages one URL source's link crawl fetches (start page included).",
    )
    embed_batch_size: int = Field(32, ge=1, description="Chunks per embedding batch.")
    ingest_lock_timeout_s: float = Field(
        0.0,
        ge=0,
        description="Seconds an ingest waits for another ingest on the same data dir to finish before failing (0 = fail at once: a second concurrent ingest is usually a mistake).",
    )

    @field_validator("sources", "mirror", mode="after")
    @classmethod
    def _expand_paths(cls, value: Path | None) -> Path | None:
        return value.expanduser() if value is not None else None


class RetrievalSettings(BaseModel):
    """Retrievers and their fusion."""

    retriever: str = Field(
        "hybrid", description="Default retriever: dense, bm25, hybrid, or any of them + '+rerank'."
    )
    k: int = Field(5, ge=1, description="Default number of context chunks.")
    max_k: int = Field(50, ge=1, description="Largest k a caller may ask for.")
    hybrid_weights: tuple[float, float] = Field(
        (1.0, 1.0), description="RRF weights of (dense, bm25)."
    )
    rrf_k: int = Field(60, ge=1, description="RRF rank constant.")
    hybrid_candidates: int = Field(
        100,
        ge=1,
        description="Candidates each of dense and BM25 adds to the fusion (at least 4·k), the same for every k so that a smaller k gets a prefix of a larger k's hits. Dev split at 50 (what k ≤ 12 used before): recall@3000 chars 0.87, page items 0.90; at 100: 0.90 and 1.00 (150 and 250 no better).",
    )
    source_boost: dict[str, float] = Field(
        default_factory=lambda: {"machine-learning": 2.0},
        description="Score multiplier per topic for dense/hybrid scores: a prior for the user's own page, whose ~70 chunks otherwise drown among ~3,800 linked-page chunks (2.0 chosen on the gold dev split: test page recall@3000 chars 0.73 → 0.93, linked 0.78 → 0.77).",
    )
    reranker_model: str | None = Field(
        None,
        description="CrossEncoder for '+rerank' retrievers, path or hub name (e.g. cross-encoder/ms-marco-MiniLM-L6-v2).",
    )
    rerank_candidates: int = Field(30, ge=1, description="Candidates the reranker re-scores.")
    mmr_lambda: float | None = Field(
        None, ge=0, le=1, description="MMR relevance/diversity trade-off; None disables MMR."
    )
    pin_definitions: bool = Field(
        True,
        description='For a \'what is X?\' question, put the chunk that defines X ("X is a …", "X: …") in place of the last hit when no hit defines it (rag.definitions).',
    )


class GenerationSettings(BaseModel):
    """Answering: generators and their models, abstention, verification."""

    generator: str = Field(
        "auto", description="Default generator: auto, claude, openai, local, extractive."
    )
    offline_generator: str = Field(
        "auto",
        description="What 'auto' uses without an inference server or an Anthropic key: 'auto' (local, on llama.cpp, when the Qwen2.5-Coder-1.5B GGUF is installed in data_dir/models by `make model`, else extractive), 'extractive' or 'local'.",
    )
    max_question_chars: int = Field(2000, ge=1, description="Longest question accepted.")
    abstain_threshold: float = Field(
        0.2242,
        description="Best dense similarity between the query and the retrieved chunks below which the answer is 'not covered': a floor for off-topic questions, while abstain_term_max_df catches near-misses. 0.2242 with abstain_term_max_df=10 chosen on the gold dev split (`mlrag eval calibrate`; dev abstention accuracy 0.78, false abstention 0.00; held-out test 0.40 / 0.06, where similarity alone at 0.30 gave 0.30 / 0.02).",
    )
    abstain_term_max_df: int = Field(
        10,
        ge=-1,
        description="A question term written as a name or not an ordinary English word (DeepSpeed, AWS, dask) that occurs in at most this many corpus chunks must appear in the retrieved context, else the answer is 'not covered' (see rag.coverage; 10 chosen on the gold dev split with abstain_threshold); -1 turns this check off.",
    )
    support_threshold: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Answer sentences whose support (0.5*best embedding cosine to a cited sentence + 0.5*content-word recall in the cited text, see rag.grounding) is below this are unsupported; strict answers drop them.",
    )
    llm_context_tokens: int = Field(
        240,
        ge=0,
        description="Budget, in model tokens, of the retrieved context an LLM generator (local, openai) sees: the best sentence's chunk first, then the most relevant sentences of the others (rag.context), until the budget is spent; 0 = whole chunks. Dev split (bench/context_budget.py): evidence in context 0.67 at 240 (and at 260) against 0.78 for five whole chunks (~580 tokens); 240 keeps the 1.5B model's first token near 4 s on 2 cores. Raise it where prefill is cheap (a GPU server).",
    )
    answer_support_floor: float = Field(
        0.35,
        ge=0,
        le=1,
        description="After generation (rag.verify), an answer whose best-supported sentence scores below this is an abstention; sentences stating numbers, identifiers or names found in neither the context nor the question are always dropped. 0.35 chosen on the dev split with the 1.5B model (runs/dev-qwen-1, bench/answer_floor.py): unanswerable declined 0.81 -> 0.93, answerable declined 0.09 -> 0.15, evidence in the answer unchanged (0.51): the answers it declines carried no evidence.",
    )
    answer_term_max_df: int = Field(
        10,
        ge=-1,
        description="After generation, a question term written as a name or not an ordinary English word that occurs in at most this many corpus chunks must appear in a block the answer cites (abstain_term_max_df's rule, applied to the cited blocks), else the answer is 'not covered'; -1 turns this check off. 10 (abstain_term_max_df's value) chosen on the dev split with the 1.5B model (runs/dev-qwen-7-tdf-1 -> -tdf10): unanswerable declined 0.90 -> 0.94 ('gzip [1]' to a pandas to_parquet question, citing Celery's compression setting; a QLoRA memory question answered from spaCy's GPU note), answerable declined 0.15 -> 0.18 (three answers without the evidence: 'TIES merges adapters with merge_and_unload', 'en_core_web_sm [2]' to 'en_core_web_trf or en_core_web_sm?').",
    )
    condense_with_model: bool = Field(
        True,
        description="Rewrite follow-up questions into standalone queries with the configured LLM (local on llama.cpp, openai, claude); the heuristic condenser is the fallback and is used for extractive.",
    )
    answer_cache_size: int = Field(
        256,
        ge=0,
        description="Answers kept in memory, keyed on the condensed question, the answer settings and the corpus version (an ingest invalidates them); 0 = no cache.",
    )
    local_model: str = Field(
        "auto",
        description="Local LLM: 'auto' (Qwen2.5-Coder-1.5B GGUF when installed in data_dir/models by scripts/install_model.py, else SmolLM2), 'qwen2.5-coder-1.5b', 'smollm2' (the packaged GGUF), a path to a .gguf file, or a Hugging Face hub name / folder.",
    )
    local_runtime: str = Field(
        "auto",
        description="Runtime of the local LLM: 'auto' (GGUF files on llama.cpp, Hugging Face models on transformers), 'llamacpp' or 'transformers' (needed for PEFT adapters, 4-bit and LoRA training).",
    )
    llamacpp_threads: int = Field(
        0,
        ge=0,
        description="llama.cpp threads for prompt processing and decoding; 0 = number of CPU cores.",
    )
    llamacpp_n_ctx: int = Field(
        4096,
        ge=256,
        le=32768,
        description="llama.cpp context window in tokens (prompt + answer); a longer prompt is an error.",
    )
    local_4bit: bool = Field(True, description="Load the local LLM in 4-bit nf4 (bitsandbytes).")
    local_max_new_tokens: int = Field(
        200, ge=1, le=4096, description="Generation length limit of the local LLM."
    )
    local_queue_size: int = Field(
        4, ge=0, description="Requests that may wait for the local LLM before new ones are refused."
    )
    local_repetition_penalty: float = Field(
        1.1,
        ge=1.0,
        le=2.0,
        description="Repetition penalty of the local LLM's greedy decoding (small models loop without it).",
    )
    anthropic_api_key: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("MLRAG_ANTHROPIC_API_KEY", "ANTHROPIC_API_KEY"),
        description="Claude API key (ANTHROPIC_API_KEY); enables the 'claude' generator.",
    )
    anthropic_base_url: str | None = Field(
        None, description="Override the Anthropic API base URL (proxies, tests)."
    )
    claude_model: str = Field("claude-sonnet-4-5", description="Claude model name.")
    claude_max_retries: int = Field(3, ge=0, description="Retries on 429/500/529 and timeouts.")
    claude_timeout_s: float = Field(60.0, gt=0, description="Claude request timeout.")
    claude_max_tokens: int = Field(
        1024,
        ge=1,
        le=64000,
        description="Longest Claude answer in tokens; an answer cut off at this limit is an error, not a partial answer.",
    )
    openai_base_url: str | None = Field(
        None,
        description="Base URL of an OpenAI-compatible inference server for the 'openai' generator (vLLM, llama.cpp's server, TGI, Ollama), e.g. http://127.0.0.1:8080/v1; when set, generator 'auto' uses it.",
    )
    openai_api_key: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("MLRAG_OPENAI_API_KEY", "OPENAI_API_KEY"),
        description="API key the inference server expects (OPENAI_API_KEY; vLLM's --api-key); never logged.",
    )
    openai_model: str | None = Field(
        None,
        description="Base model name on the inference server (vLLM's served model name); None = the first model the server lists.",
    )
    openai_timeout_s: float = Field(
        60.0,
        gt=0,
        description="Inference-server timeout per request, and the longest wait for the next streamed token.",
    )
    openai_max_retries: int = Field(
        2,
        ge=0,
        description="Retries (exponential backoff, honouring Retry-After) on connection errors, 429 and 5xx before the first token; never after it.",
    )
    openai_max_tokens: int = Field(
        512, ge=1, le=32768, description="Longest answer the inference server may write, in tokens."
    )
    openai_models_ttl_s: float = Field(
        60.0,
        ge=0,
        description="Seconds the inference server's model list (GET /v1/models: base model and LoRA adapters) is cached.",
    )


class ServiceSettings(BaseModel):
    """The HTTP service: binding, keys, limits, timeouts."""

    host: str = Field("127.0.0.1", description="Address `mlrag serve` binds.")
    port: int = Field(8000, ge=1, le=65535, description="Port `mlrag serve` binds.")
    workers: int = Field(
        1,
        ge=1,
        description="API worker processes of `mlrag serve` (`--workers`); more than 1 needs MLRAG_CHROMA_URL. Each worker gets max_concurrent_generations / workers generation slots (rounded up) and cores / workers torch and llama.cpp threads; rate limits are per worker.",
    )
    public_url: str | None = Field(
        None,
        description="The service's externally visible base URL (e.g. https://rag.example.org); absolute links to /documents pages (Slack replies, chat completions) start with it. None = http://{host}:{port}.",
    )
    api_key_hashes: list[str] = Field(
        default_factory=list,
        description="sha256 hex digests of API keys; when set, every /v1 route and /metrics needs `Authorization: Bearer <key>`.",
    )
    admin_key_hashes: list[str] = Field(
        default_factory=list,
        description="sha256 hex digests of admin keys (ingest, feedback export); admin routes are refused while empty.",
    )
    rate_limit_per_minute: int = Field(
        0, ge=0, description="Requests per minute per API key or client IP (token bucket); 0 = off."
    )
    max_body_bytes: int = Field(
        65_536, ge=1024, description="Largest request body accepted (413 above)."
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="Origins allowed by CORS (none by default)."
    )
    ingest_roots: list[Path] = Field(
        default_factory=list,
        description="Folders whose files may be ingested over HTTP (empty = no local paths).",
    )
    allow_private_urls: bool = Field(
        False, description="Allow ingesting URLs on loopback, private or link-local addresses."
    )
    max_concurrent_generations: int = Field(
        2, ge=1, description="Answers generated at the same time by the API."
    )
    max_queued_generations: int = Field(
        8, ge=0, description="Answers that may wait for a generation slot before new ones get 503."
    )
    stream_idle_timeout_s: float = Field(
        120.0,
        gt=0,
        description="A streamed answer that produces no event for this long ends with an error event.",
    )
    body_timeout_s: float = Field(
        10.0,
        gt=0,
        description="Longest time to receive a request body, from the end of its headers to its last byte; a slower client gets 408 and its connection is closed (bounds slow-body connections).",
    )
    keep_alive_timeout_s: float = Field(
        5.0,
        gt=0,
        description="Seconds `mlrag serve` keeps an idle keep-alive connection open between requests (uvicorn's timeout_keep_alive).",
    )
    shutdown_grace_s: float = Field(
        30.0,
        ge=0,
        description="On SIGTERM, seconds in-flight answers, SSE streams and acknowledged Slack answers get to finish before they are cancelled (uvicorn's timeout_graceful_shutdown).",
    )
    docs_enabled: Literal["auto"] | bool = Field(
        "auto",
        description="Serve /docs (Swagger UI from local files, never a CDN) and /openapi.json: true, false, or auto = on only while no API keys are configured.",
    )


class SlackSettings(BaseModel):
    """The Slack bot."""

    slack_signing_secret: SecretStr | None = Field(
        None, description="Slack signing secret; enables the /slack/events route."
    )
    slack_bot_token: SecretStr | None = Field(
        None, description="Slack bot token (xoxb-...) used to reply."
    )
    slack_api_url: str = Field(
        "https://slack.com/api/",
        description="Slack Web API base URL (tests point it at a local fake).",
    )


class Settings(
    BaseSettings,
    CoreSettings,
    IngestSettings,
    RetrievalSettings,
    GenerationSettings,
    ServiceSettings,
    SlackSettings,
):
    """Every tunable of mlrag, read from one flat set of names (``MLRAG_<FIELD>``, the
    ``mlrag.toml`` keys) and grouped in sections: each part of the code receives only its
    section (``settings.retrieval``, ``settings.generation``, ...). See the README's table."""

    model_config = SettingsConfigDict(
        env_prefix="MLRAG_",
        extra="ignore",
        validate_default=True,
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_path = Path(os.environ.get("MLRAG_CONFIG", "mlrag.toml"))
        return (
            init_settings,
            env_settings,
            TomlConfigSettingsSource(settings_cls, toml_file=toml_path),
        )

    # --- sections --------------------------------------------------------------------------
    def _section(self, section: type[S]) -> S:
        return section.model_construct(
            **{name: getattr(self, name) for name in section.model_fields}
        )

    @property
    def core(self) -> CoreSettings:
        """The core section."""
        return self._section(CoreSettings)

    @property
    def ingest(self) -> IngestSettings:
        """The ingest section."""
        return self._section(IngestSettings)

    @property
    def retrieval(self) -> RetrievalSettings:
        """The retrieval section."""
        return self._section(RetrievalSettings)

    @property
    def generation(self) -> GenerationSettings:
        """The generation section."""
        return self._section(GenerationSettings)

    @property
    def service(self) -> ServiceSettings:
        """The service section."""
        return self._section(ServiceSettings)

    @property
    def slack(self) -> SlackSettings:
        """The slack section."""
        return self._section(SlackSettings)

    # --- derived paths -------------------------------------------------------------------
    @property
    def chroma_dir(self) -> Path:
        return self.data_dir / "chroma"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def adapters_dir(self) -> Path:
        return self.data_dir / "adapters"

    def effective_threads(self) -> int:
        return self.torch_threads or (os.cpu_count() or 1)

    def effective_llamacpp_threads(self) -> int:
        return self.llamacpp_threads or (os.cpu_count() or 1)

    def public_dict(self) -> dict[str, Any]:
        """Settings as JSON-safe values with secrets masked (for run records and logs)."""
        return self.model_dump(mode="json")
