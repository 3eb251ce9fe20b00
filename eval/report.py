"""Reports of a run: ``report.md`` (tables), ``report.html`` (the same tables plus matplotlib
plots embedded as base64 PNGs — no external assets), ``wrong.md`` (what each configuration
got wrong, with what it retrieved) and ``results.json`` (everything)."""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eval.metrics import BUDGETS, RECALL_KS

HEADLINE = "budget_any@3000"
TARGET_RECALL = 0.90
TARGET_ABSTENTION = 0.85
TARGET_FALSE_ABSTENTION = 0.10
TARGET_CITATION_VALIDITY = 0.95
TARGET_EVIDENCE_IN_ANSWER = 0.85  # issue 13, answerable items
RETRIEVAL_GROUPS: tuple[str, ...] = ("page", "linked", "multi", "typed", "followup")


@dataclass
class Table:
    """A titled table rendered to both Markdown and HTML."""

    title: str
    header: list[str]
    rows: list[list[str]]
    note: str = ""

    def markdown(self) -> str:
        """GitHub-flavoured Markdown."""
        lines = [f"### {self.title}", ""]
        if self.note:
            lines += [self.note, ""]
        if not self.rows:
            return "\n".join([*lines, "_none_", ""])
        lines.append("| " + " | ".join(self.header) + " |")
        lines.append("|" + "|".join("---" for _ in self.header) + "|")
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in self.rows]
        return "\n".join([*lines, ""])

    def html(self) -> str:
        """An HTML table with its title."""
        parts = [f"<h3>{html.escape(self.title)}</h3>"]
        if self.note:
            parts.append(f"<p>{html.escape(self.note)}</p>")
        if not self.rows:
            return "\n".join([*parts, "<p><em>none</em></p>"])
        head = "".join(f"<th>{html.escape(h)}</th>" for h in self.header)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
            for row in self.rows
        )
        return "\n".join(
            [*parts, f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"]
        )


def fmt(value: Any, digits: int = 2) -> str:
    """A number for a table cell ("–" for missing)."""
    if value is None:
        return "–"
    if isinstance(value, dict):
        return fmt(value.get("mean"), digits)
    return f"{float(value):.{digits}f}"


def fmt_ci(value: dict[str, Any] | None) -> str:
    """``mean [low, high]`` of a summarised metric."""
    if not value:
        return "–"
    return f"{value['mean']:.2f} [{value['low']:.2f}, {value['high']:.2f}]"


def fmt_p(value: float | None) -> str:
    """A p-value for a table cell."""
    if value is None:
        return "–"
    return f"{value:.3g}" if value >= 0.001 else "<0.001"


# --- tables --------------------------------------------------------------------------------


def retrieval_tables(results: dict[str, Any]) -> list[Table]:
    """Overall metrics, per-group recall, per-topic recall and paired comparisons."""
    summary = results["retrieval"]["summary"]
    tables: list[Table] = []
    header = ["retriever", "n", *(f"hit@{k}" for k in RECALL_KS), "all@5", "all@10", "MRR", "nDCG@10",
              *(f"≤{b} chars" for b in BUDGETS), "p50 ms", "p95 ms"]  # fmt: skip
    rows = []
    for name, entry in summary.items():
        o = entry["overall"]
        rows.append(
            [name, str(entry["n"]), *(fmt(o[f"recall_any@{k}"]) for k in RECALL_KS),
             fmt(o["recall_all@5"]), fmt(o["recall_all@10"]), fmt(o["mrr"]), fmt(o["ndcg@10"]),
             *(fmt_ci(o[f"budget_any@{b}"]) if b == 3000 else fmt(o[f"budget_any@{b}"]) for b in BUDGETS),
             fmt(entry["latency_ms"]["p50"], 1), fmt(entry["latency_ms"]["p95"], 1)]
        )  # fmt: skip
    tables.append(
        Table(
            "Retrieval, answerable items",
            header,
            rows,
            "hit@k: any evidence quote in the top k; all@k: every quote; ≤N chars: any quote within "
            "the first N characters of the ranked chunk texts (the fair comparison between "
            "chunkings), with a 95% bootstrap CI for 3,000. Latency includes query embedding.",
        )
    )
    # The answerable groups any retriever has, in report order (page/linked/multi always shown).
    present = {g for e in summary.values() for g in e["groups"]}
    groups = [g for g in RETRIEVAL_GROUPS if g in ("page", "linked", "multi") or g in present]
    group_rows = []
    for name, entry in summary.items():
        row = [name]
        for group in groups:
            g = entry["groups"].get(group)
            row.append(
                f"{fmt_ci(g[HEADLINE])} (n={g[HEADLINE]['n']})" if g and g[HEADLINE] else "–"
            )
            row.append(fmt(g["budget_all@3000"]) if g else "–")
        group_rows.append(row)
    tables.append(
        Table(
            "Recall within 3,000 characters by group",
            ["retriever", *(f"{g}: {w}" for g in groups for w in ("any", "all"))],
            group_rows,
        )
    )
    topics = sorted({t for e in summary.values() for t in e["topics"]})
    names = list(summary)
    topic_rows = []
    for topic in topics:
        n = next((e["topics"][topic]["n"] for e in summary.values() if topic in e["topics"]), 0)
        topic_rows.append(
            [
                topic,
                str(n),
                *(fmt(summary[nm]["topics"].get(topic, {}).get(HEADLINE)) for nm in names),
            ]
        )
    tables.append(
        Table("Recall within 3,000 characters by topic", ["topic", "n", *names], topic_rows)
    )
    comp_rows = [
        [c["a"], c["b"], c["metric"], fmt(c["mean_a"]), fmt(c["mean_b"]), fmt(c["diff"]),
         fmt_p(c["p_value"]), c["test"] or "–"]
        for c in results["retrieval"]["comparisons"]
    ]  # fmt: skip
    tables.append(
        Table(
            "Paired comparisons between retrievers",
            ["A", "B", "metric", "A", "B", "A−B", "p", "test"],
            comp_rows,
            "Same questions for both; exact McNemar for hit/miss outcomes, sign-flip permutation "
            "test for MRR. Seeded.",
        )
    )
    return tables


def answer_tables(results: dict[str, Any]) -> list[Table]:
    """Answer metrics per configuration and their paired comparisons."""
    summary = results["answers"]["summary"]
    judge = results["run"].get("judge_description") or results["run"].get("judge")
    rows = [
        [label, str(e["n"]), fmt_ci(e["correct_abstention"]), fmt_ci(e["false_abstention"]),
         fmt(e["citation_validity_pooled"]), str(e["citation_pairs"]), fmt(e["groundedness_pooled"]),
         fmt_ci(e.get("citation_recall")),
         fmt_ci(e["token_f1"]), fmt(e["embedding_similarity"]), fmt(e["latency_ms"]["p50"], 0),
         str(e["errors"])]
        for label, e in summary.items()
    ]  # fmt: skip
    tables = [
        Table(
            "Answers",
            [
                "config",
                "n",
                "abstention acc.",
                "false abstention",
                "citation validity",
                "cited pairs",
                "groundedness",
                "citation recall",
                "token F1",
                "emb. sim.",
                "p50 ms",
                "errors",
            ],
            rows,
            f"Citation validity and groundedness judged by: {judge}. Citation recall: share of "
            "answer sentences that cite a block supporting them (uncited = miss). Abstention accuracy on "
            "unanswerable items, false abstention on answerable ones; token F1 and embedding "
            "similarity against the reference, on answered answerable items.",
        )  # fmt: skip
    ]
    tables.append(group_table(summary))
    comp_rows = [
        [c["a"], c["b"], c["metric"], fmt(c["mean_a"]), fmt(c["mean_b"]), fmt(c["diff"]),
         fmt_p(c["p_value"]), c["test"] or "–"]
        for c in results["answers"]["comparisons"]
    ]  # fmt: skip
    tables.append(
        Table("Paired comparisons between answer configurations",
              ["A", "B", "metric", "A", "B", "A−B", "p", "test"], comp_rows)
    )  # fmt: skip
    return tables


def _group_cell(entry: dict[str, Any], metric: str) -> str:
    value = entry.get(metric)
    return "–" if value is None else f"{value:.2f} (n={entry.get(f'{metric}_n', entry['n'])})"


def group_table(summary: dict[str, Any]) -> Table:
    """Answer metrics per configuration and gold group (page, linked, multi, typed, followup,
    unanswerable, nearmiss, unlabelled)."""
    rows = []
    for label, entry in summary.items():
        for group, g in (entry.get("groups") or {}).items():
            rows.append(
                [label, group, str(g["n"]), _group_cell(g, "evidence_in_answer"),
                 _group_cell(g, "false_abstention"), _group_cell(g, "correct_abstention"),
                 fmt(g["citation_validity_pooled"]), _group_cell(g, "cites"),
                 fmt(g["latency_p50_ms"], 0)]
            )  # fmt: skip
    return Table(
        "Answers by group",
        ["config", "group", "n", "evidence in answer", "wrongly declined",
         "unanswerable declined", "citation validity", "answers that cite", "p50 ms"],
        rows,
        "Evidence in answer: the answer text plus the quotes its citations show contain ≥ 60 % of "
        "the words of a gold evidence quote (answerable items; a decline scores 0). Wrongly "
        "declined: answerable items that abstained. Unanswerable declined: unanswerable and "
        "near-miss items that abstained. Answers that cite: share of non-declined answers with "
        "at least one citation. Unlabelled items get only the reference-free columns.",
    )  # fmt: skip


def targets(results: dict[str, Any]) -> list[str]:
    """The issue's targets, each with its measured value and PASS/FAIL."""
    lines: list[str] = []
    summary = results["retrieval"]["summary"]
    candidates = {n: e for n, e in summary.items() if n != "baseline"}
    baseline = summary.get("baseline")
    if candidates:
        best = max(
            candidates, key=lambda n: (candidates[n]["overall"][HEADLINE] or {}).get("mean", 0)
        )
        for group in ("page", "linked"):
            value = (candidates[best]["groups"].get(group) or {}).get(HEADLINE)
            base = ((baseline or {}).get("groups", {}).get(group) or {}).get(HEADLINE)
            if value is None:
                lines.append(f"- recall ≤3,000 chars, {group} items: no items")
                continue
            ok = value["mean"] >= TARGET_RECALL and (base is None or value["mean"] > base["mean"])
            versus = f", baseline {base['mean']:.2f}" if base else ", baseline not run"
            lines.append(
                f"- recall ≤3,000 chars, {group} items ({best}): {value['mean']:.2f} "
                f"(target ≥ {TARGET_RECALL}{versus}) — {'PASS' if ok else 'FAIL'}"
            )
    for label, entry in results["answers"]["summary"].items():
        acc, false = entry["correct_abstention"], entry["false_abstention"]
        if acc:
            ok = acc["mean"] >= TARGET_ABSTENTION
            lines.append(
                f"- abstention accuracy {label}: {acc['mean']:.2f} (≥ {TARGET_ABSTENTION}) — {'PASS' if ok else 'FAIL'}"
            )
        if false:
            ok = false["mean"] <= TARGET_FALSE_ABSTENTION
            lines.append(
                f"- false abstention {label}: {false['mean']:.2f} (≤ {TARGET_FALSE_ABSTENTION}) — {'PASS' if ok else 'FAIL'}"
            )
        carried = entry.get("evidence_in_answer")
        if carried:
            ok = carried["mean"] >= TARGET_EVIDENCE_IN_ANSWER
            lines.append(
                f"- evidence in the answer {label}: {carried['mean']:.2f} (≥ {TARGET_EVIDENCE_IN_ANSWER}) — {'PASS' if ok else 'FAIL'}"
            )
        validity = entry["citation_validity_pooled"]
        if "extractive" in label and validity is not None:
            ok = validity >= TARGET_CITATION_VALIDITY
            lines.append(
                f"- citation validity {label}: {validity:.2f} (≥ {TARGET_CITATION_VALIDITY}) — {'PASS' if ok else 'FAIL'}"
            )
    return lines


def header_lines(results: dict[str, Any]) -> list[str]:
    """The run record in a few lines."""
    run = results["run"]
    return [
        f"- started {run['started']}, finished {run['finished']}; backend {run['backend']}",
        f"- split **{run['split']}**: {run['items']} items ({run['answerable']} answerable); "
        f"k = {run['k']}, retrieval depth {run['depth']}",
        f"- gold {', '.join(run['gold_files'])} (sha256 {run['gold_hash']})",
        f"- corpus version {json.dumps(run['corpus_version'])}; git {run['git_commit'] or 'unknown'}",
        f"- embedding model {run['models']['embedding']}; judge {run.get('judge_description') or run['judge']}",
    ]


# --- plots ---------------------------------------------------------------------------------


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def plots(results: dict[str, Any]) -> list[tuple[str, str]]:
    """(caption, base64 PNG) for recall@k curves, budget curves, latency and topics."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    summary = results["retrieval"]["summary"]
    if not summary:
        return []
    out = []
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for name, entry in summary.items():
        o = entry["overall"]
        axes[0].plot(
            RECALL_KS, [fmt_value(o[f"recall_any@{k}"]) for k in RECALL_KS], marker="o", label=name
        )
        axes[1].plot(
            BUDGETS, [fmt_value(o[f"budget_any@{b}"]) for b in BUDGETS], marker="o", label=name
        )
    axes[0].set(xlabel="k", ylabel="recall (any evidence)", title="recall@k", ylim=(0, 1.02))
    axes[1].set(xlabel="characters of ranked context", ylabel="recall (any evidence)",
                title="recall within a character budget", ylim=(0, 1.02))  # fmt: skip
    axes[0].legend(fontsize=8)
    out.append(("Recall@k and recall within a character budget per retriever", _png(fig)))

    fig, ax = plt.subplots(figsize=(6, 3.2))
    names = list(summary)
    x = np.arange(len(names))
    ax.bar(x - 0.2, [summary[n]["latency_ms"]["p50"] or 0 for n in names], 0.4, label="p50")
    ax.bar(x + 0.2, [summary[n]["latency_ms"]["p95"] or 0 for n in names], 0.4, label="p95")
    ax.set_xticks(x, names)
    ax.set(ylabel="ms", title="retrieval latency")
    ax.legend()
    out.append(("Retrieval latency per retriever", _png(fig)))

    topics = sorted({t for e in summary.values() for t in e["topics"]})
    if topics:
        matrix = np.array(
            [
                [summary[n]["topics"].get(t, {}).get(HEADLINE, np.nan) for n in names]
                for t in topics
            ],
            dtype=float,
        )
        fig, ax = plt.subplots(figsize=(1.6 + 1.1 * len(names), 0.9 + 0.32 * len(topics)))
        image = ax.imshow(matrix, vmin=0, vmax=1, cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(names)), names)
        ax.set_yticks(range(len(topics)), topics)
        for i in range(len(topics)):
            for j in range(len(names)):
                if not np.isnan(matrix[i, j]):
                    ax.text(
                        j,
                        i,
                        f"{matrix[i, j]:.2f}",
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="k" if matrix[i, j] > 0.6 else "w",
                    )
        fig.colorbar(image, ax=ax)
        ax.set_title("recall within 3,000 characters by topic")
        out.append(("Per-topic recall within 3,000 characters", _png(fig)))
    return out


def fmt_value(value: dict[str, Any] | None) -> float:
    """The mean of a summarised metric (NaN when missing), for plotting."""
    return float(value["mean"]) if value else float("nan")


# --- writers -------------------------------------------------------------------------------


def render_markdown(results: dict[str, Any]) -> str:
    """report.md."""
    parts = ["# mlrag evaluation report", "", *header_lines(results), ""]
    if results["skipped"]:
        parts += (
            ["## Skipped", ""] + [f"- **{k}**: {v}" for k, v in results["skipped"].items()] + [""]
        )
    parts += ["## Targets", "", *(targets(results) or ["- nothing to compare"]), ""]
    parts += ["## Retrieval", ""] + [t.markdown() for t in retrieval_tables(results)]
    parts += ["## Answers", ""] + [t.markdown() for t in answer_tables(results)]
    parts += ["## Judge agreement with hand labels", "", agreement_line(results), ""]
    return "\n".join(parts)


def agreement_line(results: dict[str, Any]) -> str:
    """The judge's agreement and Cohen's kappa with the hand-labelled sentences."""
    a = results.get("judge_agreement")
    if not a:
        return "No hand labels evaluated (eval/gold/judge_labels.jsonl missing or no answers run)."
    kappa = "undefined" if a["kappa"] is None else f"{a['kappa']:.2f}"
    c = a["confusion"]
    return (
        f"{a['judge']}: agreement {a['agreement']:.2f}, Cohen's kappa {kappa} on {a['n']} sentences "
        f"({a['human_supported']} labelled supported; judge-only supported {c['judge_only_supported']}, "
        f"human-only supported {c['human_only_supported']}); labels {a['labels']}."
    )


_STYLE = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:13px}th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}figure{margin:1em 0}figcaption{font-size:13px;color:#555}"""


def render_html(results: dict[str, Any]) -> str:
    """report.html: self-contained (inline CSS, base64 images)."""
    body = ["<h1>mlrag evaluation report</h1>", "<ul>"]
    body += [f"<li>{html.escape(line[2:])}</li>" for line in header_lines(results)]
    body.append("</ul>")
    if results["skipped"]:
        body.append("<h2>Skipped</h2><ul>")
        body += [
            f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>"
            for k, v in results["skipped"].items()
        ]
        body.append("</ul>")
    body.append("<h2>Targets</h2><ul>")
    body += [f"<li>{html.escape(line[2:])}</li>" for line in targets(results)]
    body.append("</ul><h2>Retrieval</h2>")
    for caption, png in plots(results):
        body.append(
            f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{png}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )
    body += [t.html() for t in retrieval_tables(results)]
    body.append("<h2>Answers</h2>")
    body += [t.html() for t in answer_tables(results)]
    body.append(
        f"<h2>Judge agreement with hand labels</h2><p>{html.escape(agreement_line(results))}</p>"
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>mlrag evaluation</title>'
        f"<style>{_STYLE}</style></head><body>{''.join(body)}</body></html>"
    )


def _retrieved_lines(hits: Sequence[dict[str, Any]], n: int = 3) -> list[str]:
    return [
        f"  {h['rank']}. {h.get('title') or h.get('source')} — {h.get('section') or ''}: “{h['snippet'][:140]}”"
        for h in hits[:n]
    ]


def render_wrong(results: dict[str, Any]) -> str:
    """wrong.md: per retriever the answerable items whose evidence was not within 3,000
    characters; per answer configuration wrong abstentions, answers to unanswerable items and
    answers with ungrounded sentences."""
    gold = results["gold"]
    parts = ["# What each configuration got wrong", ""]
    for name, records in results["retrieval"]["per_question"].items():
        misses = [r for r in records if not r["metrics"][HEADLINE]]
        parts += [
            f"## Retrieval: {name} — {len(misses)} of {len(records)} missed within 3,000 characters",
            "",
        ]
        for r in misses:
            item = gold[r["id"]]
            rank = r["metrics"]["first_relevant_rank"]
            parts.append(f"- **{r['id']}** ({r['topic']}) {item['question']}")
            parts.append(
                f"  - evidence: “{item['evidence'][0][:150]}”; first relevant rank: {rank or 'none'}"
            )
            parts += _retrieved_lines(r["hits"])
        parts.append("")
    for label, config in results["answers"]["per_question"].items():
        wrong = []
        for r in config["records"]:
            if r["error"]:
                wrong.append((r, f"error: {r['error']}"))
            elif r["answerable"] and r["abstained"]:
                wrong.append((r, "abstained on an answerable question"))
            elif not r["answerable"] and not r["abstained"]:
                wrong.append((r, "answered an unanswerable question"))
            elif any(not s["grounded"] for s in r["sentences"]):
                wrong.append((r, "ungrounded sentence(s)"))
            elif r.get("evidence_in_answer") is False:
                wrong.append((r, "the answer does not carry the evidence"))
        parts += [f"## Answers: {label} — {len(wrong)} of {len(config['records'])} wrong", ""]
        for r, why in wrong:
            parts.append(f"- **{r['id']}** ({r.get('group', '')}) {r['question']} — {why}")
            if r.get("history"):
                parts.append(f"  - after: {r['history'][-1]['content'][:150]}")
            parts.append(f"  - answer: {' '.join(r['answer'].split())[:300]}")
            parts.append(f"  - reference: {r['reference'][:200]}")
            parts += _retrieved_lines(r["context"])
        parts.append("")
    return "\n".join(parts)


def write_reports(results: dict[str, Any], out: Path) -> dict[str, Path]:
    """Write results.json, report.md, report.html and wrong.md into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "results": out / "results.json",
        "report_md": out / "report.md",
        "report_html": out / "report.html",
        "wrong": out / "wrong.md",
    }
    paths["results"].write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")
    paths["report_md"].write_text(render_markdown(results), encoding="utf-8")
    paths["report_html"].write_text(render_html(results), encoding="utf-8")
    paths["wrong"].write_text(render_wrong(results), encoding="utf-8")
    return paths
