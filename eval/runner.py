"""``mlrag eval run``: score retrievers and (retriever, generator) configurations on a gold set
and write ``results.json``, ``report.md``, ``report.html`` and ``wrong.md``.

Retrieval is scored on answerable items (relevance by evidence quotes); answers on every item
(abstention on unanswerable ones, false abstention, evidence in the answer, citation validity,
groundedness and correctness on answerable ones; unlabelled items only on what needs no
reference), overall and per group (page, linked, multi, typed, followup, unanswerable, nearmiss,
unlabelled). Follow-up items pass their history to the pipeline. Search results are cached on disk, keyed by corpus version,
retriever, retrieval settings, depth and question, so re-scoring costs no retrieval.
"""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from eval.backends import Backend, HttpBackend, InProcessBackend
from eval.gold import GROUPS, GoldItem, gold_files, gold_hash, load_gold, select_split
from eval.judges.base import Judge, build_judge
from eval.metrics import BUDGETS, RECALL_KS, percentile
from eval.scoring import RETRIEVAL_METRICS, score_answers, score_retrieval
from eval.stats import bootstrap_ci, compare
from rag.config import PROJECT_ROOT
from rag.errors import InvalidInputError, MlragError, ModelUnavailableError

BaselineBuilder = Callable[[Any, Any, Path | None, bool], Sequence[str]]

if TYPE_CHECKING:
    from rag.config import Settings
    from rag.embeddings import Embedder
    from rag.pipeline import RAG

log = logging.getLogger(__name__)

# Per-group answer metrics (issue 13): each is a mean over the group's items that have it.
GROUP_ANSWER_METRICS: tuple[str, ...] = (
    "evidence_in_answer", "false_abstention", "correct_abstention", "cites",
)  # fmt: skip
HEADLINE = "budget_any@3000"  # the fair comparison between chunkings
# Settings that change what a retriever returns (part of the cache key).
RETRIEVAL_SETTINGS: tuple[str, ...] = (
    "collection", "chroma_url", "hnsw_ef_search", "embedding_model", "chunk_tokens", "chunk_overlap",
    "hybrid_weights", "rrf_k", "hybrid_candidates", "source_boost", "rerank_candidates", "reranker_model",
    "mmr_lambda",
)  # fmt: skip
# Settings that change an answer beyond retrieval (part of the answer cache key).
ANSWER_SETTINGS: tuple[str, ...] = (
    "abstain_threshold", "abstain_term_max_df", "support_threshold", "answer_support_floor",
    "answer_term_max_df", "llm_context_tokens", "local_model", "local_4bit", "local_max_new_tokens",
    "local_repetition_penalty", "claude_model", "claude_max_tokens",
)  # fmt: skip
BINARY_METRICS: frozenset[str] = frozenset(
    m for m in RETRIEVAL_METRICS if m.startswith(("recall_", "budget_"))
)


@dataclass
class RunOptions:
    """What to evaluate and where to write it."""

    gold: list[Path]
    out: Path
    retrievers: list[str] = field(default_factory=lambda: ["dense", "bm25", "hybrid"])
    generators: list[str] = field(default_factory=lambda: ["extractive"])
    adapter: str | None = None
    k: int = 5
    split: str = "test"
    depth: int = 20  # hits retrieved for retrieval metrics (≥ 10 for recall@10, and 6,000 chars)
    url: str | None = None
    api_key: str | None = None
    judge: str = "offline"
    nli_model: str | None = None
    seed: int = 0
    limit: int | None = None  # first N items only (slow generators)
    answer_limit: int | None = None  # first N items for answers only
    progress: bool = True
    use_cache: bool = True
    update_baseline: bool = True
    mirror: Path | None = None
    # Builds or updates the baseline collection: (settings, embedder, mirror, progress) ->
    # failed sources. The CLI passes ingest.baseline.update_baseline (eval never imports
    # ingest); without one the ``baseline`` retriever reads its collection as it is.
    baseline_builder: BaselineBuilder | None = None
    judge_labels: Path | None = (
        None  # hand labels for judge agreement (default: eval/gold/judge_labels.jsonl)
    )


def code_version(package: Path = PROJECT_ROOT / "rag") -> str:
    """A digest of the answering core's source (``rag/**/*.py``): part of the cache keys, so a
    code change is never scored with answers or search results of the code before it (the
    keys held only settings and the question: a changed verify step was "measured" on cached
    answers)."""
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def git_commit() -> str:
    """The project's HEAD commit, with ``+dirty`` when the tree has changes ("" outside git)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""
    return f"{head}+dirty" if dirty else head


class DiskCache:
    """JSON values on disk (search results, answers), one file per key."""

    def __init__(self, folder: Path, enabled: bool = True) -> None:
        self.folder = folder
        self.enabled = enabled
        self.hits = 0

    @staticmethod
    def key(parts: dict[str, Any]) -> str:
        """A digest of everything that determines a search result."""
        return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        """The cached value, or None."""
        if not self.enabled:
            return None
        try:
            value = json.loads(self._path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        self.hits += 1
        return value

    def put(self, key: str, value: dict[str, Any]) -> None:
        """Store a value atomically (an interrupted run never leaves half a file)."""
        if not self.enabled:
            return
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(value), encoding="utf-8")
        tmp.replace(path)


def summarize(values: Sequence[float | None], seed: int) -> dict[str, Any] | None:
    """Mean with a seeded 95% bootstrap interval of the non-None values."""
    interval = bootstrap_ci([v for v in values if v is not None], seed=seed)
    return interval.to_dict() if interval else None


def search_query(item: GoldItem) -> str:
    """What a retriever is asked for ``item``: the question, or for a follow-up the query the
    pipeline's heuristic condenser makes of it and its history."""
    if not item.history:
        return item.question
    from rag.query_rewrite import condense_query

    return condense_query(item.question, item.turns())


def _history_key(item: GoldItem) -> list[list[str]]:
    return [[t.role, t.content] for t in item.history]


def _bar(total: int, desc: str, enabled: bool) -> tqdm:
    return tqdm(total=total, desc=desc, unit="q", disable=not enabled, file=sys.stderr, leave=False)


def _hit_record(hit: dict[str, Any]) -> dict[str, Any]:
    """What results.json keeps of a hit (texts are long: a snippet only)."""
    return {
        "rank": hit.get("rank"),
        "chunk_id": hit.get("chunk_id"),
        "title": hit.get("title", ""),
        "section": hit.get("section", ""),
        "source": hit.get("source", ""),
        "topic": hit.get("topic", ""),
        "score": hit.get("score"),
        "chars": len(hit.get("text", "")),
        "snippet": " ".join(hit.get("text", "").split())[:200],
    }


class Runner:
    """One evaluation run (see :func:`run_eval`)."""

    def __init__(
        self,
        settings: Settings,
        options: RunOptions,
        *,
        backend: Backend | None = None,
        rag: RAG | None = None,
        judge: Judge | None = None,
        embedder: Embedder | None = None,
    ) -> None:
        self.settings = settings
        self.options = options
        self.rag = rag
        if backend is None:
            if options.url:
                backend = HttpBackend(options.url, api_key=options.api_key)
            else:
                from rag.pipeline import RAG

                self.rag = self.rag or RAG(settings, embedder=embedder)
                backend = InProcessBackend(self.rag)
        self.backend = backend
        self._embedder = embedder or (self.rag.embedder if self.rag is not None else None)
        self._judge = judge
        self.cache = DiskCache(settings.data_dir / "eval_cache" / "retrieval", options.use_cache)
        self.answer_cache = DiskCache(
            settings.data_dir / "eval_cache" / "answers", options.use_cache
        )
        self.skipped: dict[str, str] = {}
        self.code = code_version()  # in the cache keys: answers of other code are not reused

    @property
    def embedder(self) -> Embedder:
        """The embedding model used for answer similarity (and the offline judge)."""
        if self._embedder is None:
            from rag.embeddings import Embedder

            self._embedder = Embedder.from_settings(self.settings)
        return self._embedder

    @property
    def judge(self) -> Judge:
        """The support judge, built on first use."""
        if self._judge is None:
            self._judge = build_judge(
                self.options.judge,
                self.settings,
                embedder=self.embedder,
                nli_model=self.options.nli_model,
            )
        return self._judge

    # --- retrieval -----------------------------------------------------------------------
    def _ensure_baseline(self) -> None:
        """Build or update the baseline collection (in-process runs only)."""
        if not isinstance(self.backend, InProcessBackend) or not self.options.update_baseline:
            return
        builder = self.options.baseline_builder
        if builder is None:
            return
        mirror = self.options.mirror if self.options.mirror is not None else self.settings.mirror
        if mirror is None:
            from eval.check import default_mirror

            mirror = default_mirror(self.settings)
        failed = builder(self.settings, self.backend.rag.embedder, mirror, self.options.progress)
        if failed:
            log.warning("baseline: %d source(s) failed: %s", len(failed), failed[:3])

    def available_retrievers(self) -> list[str]:
        """The requested retrievers that can run; the others land in ``self.skipped``."""
        names = []
        for name in self.options.retrievers:
            if name == "baseline":
                try:
                    self._ensure_baseline()
                except MlragError as exc:
                    self.skipped[name] = f"baseline build failed: {exc}"
                    continue
            reason = self.backend.unavailable(name)
            if reason:
                self.skipped[name] = reason
            else:
                names.append(name)
        return names

    def _search(self, item: GoldItem, retriever: str, version: str) -> dict[str, Any]:
        settings = {k: getattr(self.settings, k) for k in RETRIEVAL_SETTINGS}
        key = DiskCache.key(
            {
                "backend": self.backend.label,
                "code": self.code,
                "corpus_version": version,
                "retriever": retriever,
                "settings": settings,
                "depth": self.options.depth,
                "question": search_query(item),
            }
        )
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        hits, latency = self.backend.search(search_query(item), self.options.depth, retriever)
        value = {"hits": hits, "latency_ms": round(latency, 3)}
        self.cache.put(key, value)
        return value

    def run_retrieval(
        self, items: list[GoldItem], retrievers: list[str]
    ) -> dict[str, list[dict[str, Any]]]:
        """Per retriever, one record per answerable item: metrics, latency and top hits."""
        answerable = [i for i in items if i.answerable]
        results: dict[str, list[dict[str, Any]]] = {}
        for name in retrievers:
            version = self.backend.corpus_version(name)
            records = []
            bar = _bar(len(answerable), f"retrieve {name}", self.options.progress)
            for item in answerable:
                found = self._search(item, name, version)
                texts = [h["text"] for h in found["hits"]]
                records.append(
                    {
                        "id": item.id,
                        "group": item.group,
                        "topic": item.topic,
                        "kind": item.kind,
                        "latency_ms": found["latency_ms"],
                        "metrics": score_retrieval(item, texts),
                        "hits": [_hit_record(h) for h in found["hits"][: max(self.options.k, 5)]],
                    }
                )
                bar.update(1)
            bar.close()
            results[name] = records
        return results

    # --- answers -------------------------------------------------------------------------
    def run_answers(
        self, items: list[GoldItem], retrievers: list[str]
    ) -> dict[str, dict[str, Any]]:
        """Per configuration ``retriever/generator[/adapter]``: one record per item."""
        limit = self.options.answer_limit
        chosen = items[:limit] if limit else items
        results: dict[str, dict[str, Any]] = {}
        for retriever in retrievers:
            for generator in self.options.generators:
                adapter = self.options.adapter if generator == "local" else None
                label = "/".join(p for p in (retriever, generator, adapter) if p)
                if retriever == "baseline":
                    # The pipeline's relevance check reads hit embeddings from the main
                    # collection; baseline chunks live elsewhere, so ask() would always abstain.
                    self.skipped[label] = (
                        "answers are not scored for the baseline retriever: rag.coverage reads hit "
                        "embeddings from the main collection, so every baseline answer abstains"
                    )
                    continue
                records = self._answer_config(chosen, retriever, generator, adapter, label)
                if records is not None:
                    results[label] = {
                        "retriever": retriever,
                        "generator": generator,
                        "adapter": adapter,
                        "records": records,
                    }
        return results

    def _answer_key(
        self, item: GoldItem, retriever: str, generator: str, adapter: str | None, version: str
    ) -> str:
        """Cache key of an answer: everything that determines it (slow generators make an
        interrupted run resumable and re-scoring with another judge cheap)."""
        settings = {k: getattr(self.settings, k) for k in (*RETRIEVAL_SETTINGS, *ANSWER_SETTINGS)}
        return DiskCache.key(
            {
                "backend": self.backend.label,
                "code": self.code,
                "corpus_version": version,
                "retriever": retriever,
                "generator": generator,
                "adapter": adapter,
                "k": self.options.k,
                "settings": settings,
                "question": item.question,
                **({"history": _history_key(item)} if item.history else {}),
            }
        )

    def _answer_config(
        self, items: list[GoldItem], retriever: str, generator: str, adapter: str | None, label: str
    ) -> list[dict[str, Any]] | None:
        answers: list[dict[str, Any]] = []
        errors: list[str | None] = []
        bar = _bar(len(items), f"answer {label}", self.options.progress)
        version = self.backend.corpus_version(retriever)
        try:
            for item in items:
                key = self._answer_key(item, retriever, generator, adapter, version)
                cached = self.answer_cache.get(key)
                if cached is not None:
                    answers.append(cached)
                    errors.append(None)
                    bar.update(1)
                    continue
                started = time.perf_counter()
                try:
                    if item.history:
                        answer = self.backend.ask(
                            item.question, self.options.k, retriever, generator, adapter,
                            history=item.turns(),
                        )  # fmt: skip
                    else:
                        answer = self.backend.ask(
                            item.question, self.options.k, retriever, generator, adapter
                        )
                    errors.append(None)
                except (ModelUnavailableError, InvalidInputError) as exc:
                    if not answers:  # the configuration cannot run at all
                        self.skipped[label] = str(exc)
                        return None
                    raise
                except MlragError as exc:
                    answer = {"text": "", "abstained": False, "citations": [], "hits": []}
                    errors.append(str(exc))
                answer["latency_ms"] = round((time.perf_counter() - started) * 1000, 2)
                if errors[-1] is None:
                    self.answer_cache.put(key, answer)
                answers.append(answer)
                bar.update(1)
        finally:
            bar.close()
        scores = score_answers(items, answers, self.judge, self.embedder)
        records = []
        for item, answer, score, error in zip(items, answers, scores, errors, strict=True):
            records.append(
                {
                    "id": item.id,
                    "group": item.group,
                    "topic": item.topic,
                    "kind": item.kind,
                    "answerable": item.answerable,
                    "question": item.question,
                    "history": [t.model_dump() for t in item.history],
                    "reference": item.reference,
                    "answer": answer.get("text", ""),
                    "error": error,
                    "latency_ms": answer["latency_ms"],
                    "citations": [
                        {
                            "n": c.get("n"),
                            "chunk_id": c.get("chunk_id"),
                            "title": c.get("title", ""),
                        }
                        for c in answer.get("citations", [])
                    ],
                    "context": [_hit_record(h) for h in answer.get("hits", [])],
                    **score,
                }
            )
        return records

    # --- aggregation ---------------------------------------------------------------------
    def summarize_retrieval(self, results: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
        """Means with CIs per retriever, overall and per group, plus latency and topics."""
        seed = self.options.seed
        summary: dict[str, Any] = {}
        for name, records in results.items():
            entry: dict[str, Any] = {"n": len(records), "overall": {}, "groups": {}, "topics": {}}
            for metric in RETRIEVAL_METRICS:
                entry["overall"][metric] = summarize([r["metrics"][metric] for r in records], seed)
            for group in GROUPS:
                subset = [r for r in records if r["group"] == group]
                if subset:
                    entry["groups"][group] = {
                        metric: summarize([r["metrics"][metric] for r in subset], seed)
                        for metric in RETRIEVAL_METRICS
                    }
            for topic in sorted({r["topic"] for r in records}):
                subset = [r for r in records if r["topic"] == topic]
                entry["topics"][topic] = {
                    "n": len(subset),
                    HEADLINE: sum(r["metrics"][HEADLINE] for r in subset) / len(subset),
                }
            latencies = [r["latency_ms"] for r in records]
            entry["latency_ms"] = {
                "p50": percentile(latencies, 50),
                "p95": percentile(latencies, 95),
            }
            summary[name] = entry
        return summary

    def compare_retrievers(self, results: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
        """Paired tests between every two retrievers on the headline budget recall (exact
        McNemar) and MRR (sign-flip permutation)."""
        out = []
        for a, b in combinations(results, 2):
            by_id = {r["id"]: r for r in results[b]}
            pairs = [(r, by_id[r["id"]]) for r in results[a] if r["id"] in by_id]
            for metric in (HEADLINE, "mrr"):
                test = compare(
                    [x["metrics"][metric] for x, _ in pairs],
                    [y["metrics"][metric] for _, y in pairs],
                    binary=metric in BINARY_METRICS,
                    seed=self.options.seed,
                )
                out.append({"a": a, "b": b, "metric": metric, **test})
        return out

    def summarize_answers(self, results: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """Means with CIs per configuration."""
        seed = self.options.seed
        summary: dict[str, Any] = {}
        for label, config in results.items():
            records = config["records"]
            entry: dict[str, Any] = {"n": len(records)}
            for metric in (
                "correct_abstention", "false_abstention", "citation_validity", "groundedness",
                "citation_recall", "token_f1", "embedding_similarity",
            ):  # fmt: skip
                entry[metric] = summarize([_num(r[metric]) for r in records], seed)
            pairs = [c for r in records for s in r["sentences"] for c in s["citations"]]
            entry["citation_pairs"] = len(pairs)
            entry["citation_validity_pooled"] = (
                sum(c["valid"] for c in pairs) / len(pairs) if pairs else None
            )
            sentences = [s for r in records for s in r["sentences"]]
            entry["sentences"] = len(sentences)
            entry["groundedness_pooled"] = (
                sum(s["grounded"] for s in sentences) / len(sentences) if sentences else None
            )
            entry["errors"] = sum(1 for r in records if r["error"])
            for metric in ("evidence_in_answer", "cites"):
                entry[metric] = summarize([_num(r.get(metric)) for r in records], seed)
            entry["groups"] = group_answer_summary(records)
            latencies = [r["latency_ms"] for r in records]
            entry["latency_ms"] = {
                "p50": percentile(latencies, 50),
                "p95": percentile(latencies, 95),
            }
            summary[label] = entry
        return summary

    def compare_answers(self, results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
        """Paired tests between every two configurations on token F1 (answerable items,
        unanswered = 0) and on abstaining correctly (every item)."""
        out = []
        for a, b in combinations(results, 2):
            ra = {r["id"]: r for r in results[a]["records"]}
            rb = {r["id"]: r for r in results[b]["records"]}
            ids = [i for i in ra if i in rb]
            f1 = [i for i in ids if ra[i]["answerable"]]
            out.append(
                {
                    "a": a, "b": b, "metric": "token_f1",
                    **compare([ra[i]["token_f1"] or 0.0 for i in f1], [rb[i]["token_f1"] or 0.0 for i in f1],
                              binary=False, seed=self.options.seed),
                }
            )  # fmt: skip
            labelled = [i for i in ids if ra[i]["answerable"] is not None]
            right_a = [ra[i]["abstained"] != ra[i]["answerable"] for i in labelled]
            right_b = [rb[i]["abstained"] != rb[i]["answerable"] for i in labelled]
            out.append(
                {"a": a, "b": b, "metric": "abstention_decision",
                 **compare(right_a, right_b, binary=True, seed=self.options.seed)}
            )  # fmt: skip
        return out

    def judge_agreement(self) -> dict[str, Any] | None:
        """Agreement and Cohen's kappa of this run's judge with the hand-labelled sentences
        (None when there is no labels file)."""
        from eval.judges.agreement import DEFAULT_LABELS, judge_agreement, load_labels

        path = self.options.judge_labels or DEFAULT_LABELS
        if not path.is_file():
            return None
        return {"labels": str(path), **judge_agreement(self.judge, load_labels(path))}

    # --- record --------------------------------------------------------------------------
    def run_record(
        self, items: list[GoldItem], retrievers: list[str], started: str
    ) -> dict[str, Any]:
        """Everything needed to reproduce or compare this run."""
        return {
            "started": started,
            "finished": datetime.now(UTC).isoformat(timespec="seconds"),
            "backend": self.backend.label,
            "corpus_version": {name: self.backend.corpus_version(name) for name in retrievers}
            or {"main": self.backend.corpus_version()},
            "git_commit": git_commit(),
            "gold_files": [str(p) for p in gold_files(self.options.gold)],
            "gold_hash": gold_hash(self.options.gold),
            "split": self.options.split,
            "items": len(items),
            "answerable": sum(1 for i in items if i.answerable),
            "unlabelled": sum(1 for i in items if i.answerable is None),
            "groups": {g: n for g in GROUPS if (n := sum(1 for i in items if i.group == g))},
            "k": self.options.k,
            "depth": self.options.depth,
            "retrievers": self.options.retrievers,
            "generators": self.options.generators,
            "adapter": self.options.adapter,
            "judge": self.options.judge,
            "judge_description": self._judge.describe() if self._judge is not None else None,
            "seed": self.options.seed,
            "models": {
                "embedding": self.settings.embedding_model,
                "reranker": self.settings.reranker_model,
                "local": self.settings.local_model,
                "claude": self.settings.claude_model,
            },
            "settings": self.settings.public_dict(),
            "cache_hits": self.cache.hits,
            "answer_cache_hits": self.answer_cache.hits,
            "recall_ks": list(RECALL_KS),
            "budgets": list(BUDGETS),
        }

    def run(self) -> dict[str, Any]:
        """Evaluate, write the reports, and return the results."""
        started = datetime.now(UTC).isoformat(timespec="seconds")
        items = select_split(load_gold(self.options.gold), self.options.split)
        if self.options.limit:
            items = items[: self.options.limit]
        if not items:
            raise InvalidInputError(f"no gold items in split {self.options.split!r}")
        retrievers = self.available_retrievers()
        retrieval = self.run_retrieval(items, retrievers)
        answers = self.run_answers(items, retrievers) if self.options.generators else {}
        agreement = self.judge_agreement() if answers else None
        results = {
            "run": self.run_record(items, retrievers, started),
            "judge_agreement": agreement,
            "skipped": dict(self.skipped),
            "retrieval": {
                "summary": self.summarize_retrieval(retrieval),
                "comparisons": self.compare_retrievers(retrieval),
                "per_question": retrieval,
            },
            "answers": {
                "summary": self.summarize_answers(answers),
                "comparisons": self.compare_answers(answers),
                "per_question": answers,
            },
            "gold": {i.id: i.model_dump() for i in items},
        }
        from eval.report import write_reports

        write_reports(results, self.options.out)
        return results


def group_answer_summary(records: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per report group (in :data:`eval.gold.GROUPS` order, present groups only): item count,
    the mean of each of :data:`GROUP_ANSWER_METRICS` over the items that have it (None when
    none has), pooled citation validity and latency p50."""
    out: dict[str, dict[str, Any]] = {}
    for group in GROUPS:
        subset = [r for r in records if r["group"] == group]
        if not subset:
            continue
        entry: dict[str, Any] = {"n": len(subset)}
        for metric in GROUP_ANSWER_METRICS:
            values = [float(r[metric]) for r in subset if r.get(metric) is not None]
            entry[metric] = sum(values) / len(values) if values else None
            entry[f"{metric}_n"] = len(values)
        pairs = [c for r in subset for s in r["sentences"] for c in s["citations"]]
        entry["citation_validity_pooled"] = (
            sum(c["valid"] for c in pairs) / len(pairs) if pairs else None
        )
        entry["latency_p50_ms"] = percentile([r["latency_ms"] for r in subset], 50)
        out[group] = entry
    return out


def _num(value: Any) -> float | None:
    if value is None:
        return None
    return float(value)


def run_eval(settings: Settings, options: RunOptions, **kwargs: Any) -> dict[str, Any]:
    """Run an evaluation (see :class:`Runner`); keyword arguments inject a backend, RAG,
    judge or embedder."""
    return Runner(settings, options, **kwargs).run()
