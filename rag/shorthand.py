"""Chat shorthand in typed questions: the words that name nothing, the abbreviations the corpus
spells out, and :func:`spell_out`, which turns "whats the diff between precision n recall"
into "what is the difference between precision and recall" before it is searched.

Typed questions are searched, scored against context sentences and answered as the query the
pipeline builds, so shorthand costs three times: the embedding of "thm y does it matter 4 ml"
is far from any page about the central limit theorem, BM25 finds no "diff" where the page
says "difference", and the filler words ("whats", "n") dilute the share of question words a
context sentence repeats. The rewrite is deterministic and conservative: it only touches whole
words outside code (``np.where``, ``x[n]`` and ``n_estimators`` stay as they are), and the
one-letter words only where chat uses them ("precision n recall", "y does it matter"); a
model name typed without its hyphen gets the hyphenated form beside it ("gpt3 (gpt-3)").
"""

from __future__ import annotations

import re

# Chat shorthand and filler typed into questions ("np broadcasting rules plz", "kubeflow
# tl;dr?", "sigmoid whr do i use it"): they name nothing, so their absence from the context
# says nothing about coverage (rag.coverage).
FILLER_WORDS: frozenset[str] = frozenset(
    """pls plz plox pl thx ty tnx whats wats wat whr wher wht hw abt bout tl dr tldr idk imo
    imho btw asap ok okay eli5 ur ya yo hmm bc cuz coz ppl smth sth rly halp qs ques vs
    eg ie etc lol pls quick quickly explain explanation simple simply snippet snippets page
    section example examples tutorial guide article cheatsheet""".split()  # noqa: SIM905
)
# Shorthand for words the corpus spells out: covered when the context has the long form.
ABBREVIATIONS: dict[str, tuple[str, ...]] = {
    "params": ("parameters", "parameter"), "param": ("parameter", "parameters"),
    "hyperparams": ("hyperparameters",), "hyperparam": ("hyperparameter",),
    "np": ("numpy",), "pd": ("pandas",), "sns": ("seaborn",), "plt": ("matplotlib",),
    "tf": ("tensorflow",), "nn": ("neural",), "clf": ("classifier",), "lr": ("learning",),
    "img": ("image",), "imgs": ("images",), "dims": ("dimensions",), "dim": ("dimension",),
    "num": ("number",), "cols": ("columns",), "col": ("column",), "df": ("dataframe",),
    "arr": ("array",), "avg": ("average",), "config": ("configuration", "configure"),
    "cfg": ("configuration", "config"), "perf": ("performance",), "diff": ("difference",),
    "prob": ("probability",), "probs": ("probabilities",), "reg": ("regularization",),
    "opt": ("optimizer", "optimization"), "optim": ("optimizer",), "fn": ("function",),
    "func": ("function",), "docs": ("documentation",), "ex": ("example",),
}  # fmt: skip

# Words dropped from a search query: politeness and chat noise, nothing a page could say.
DROPPED: frozenset[str] = frozenset(
    "pls plz plox thx ty tnx idk imo imho btw asap lol eli5 tl dr tldr hmm halp".split()  # noqa: SIM905
)
# Replaced by what they stand for. Library aliases that are also code names ("np", "df",
# "plt") keep the alias beside the name, since the pages' code uses the alias.
SPELLED_OUT: dict[str, str] = {
    "whats": "what is", "wats": "what is", "wat": "what", "wht": "what", "whr": "where",
    "wher": "where", "hw": "how", "abt": "about", "bout": "about", "bc": "because",
    "cuz": "because", "coz": "because", "ppl": "people", "smth": "something",
    "sth": "something", "rly": "really", "ur": "your", "u": "you", "b4": "before",
    "thm": "theorem", "diff": "difference", "params": "parameters", "param": "parameter",
    "hyperparams": "hyperparameters", "hyperparam": "hyperparameter", "dims": "dimensions",
    "dim": "dimension", "cols": "columns", "avg": "average", "perf": "performance",
    "prob": "probability", "probs": "probabilities", "optim": "optimizer", "fn": "function",
    "func": "function", "docs": "documentation", "ml": "machine learning",
    "dl": "deep learning", "np": "NumPy (np)", "pd": "pandas (pd)", "sns": "seaborn (sns)",
    "plt": "matplotlib (plt)", "df": "DataFrame (df)", "nn": "neural network (nn)",
    "lr": "learning rate (lr)", "clf": "classifier (clf)", "img": "image", "imgs": "images",
    "btwn": "between", "betw": "between", "thru": "through", "tho": "though",
    "esp": "especially", "approx": "approximately", "algo": "algorithm", "algos": "algorithms",
    "fxn": "function",
}  # fmt: skip
# One-letter chat words, only between two words ("precision n recall", "train w dropout") or,
# for "y", before a verb ("y does it matter"): elsewhere they are variables (x and y, top n).
_BETWEEN_WORDS: dict[str, str] = {"n": "and", "w": "with"}
_COUNTED = frozenset(
    {"top", "first", "last", "every", "each", "size", "of", "the", "with", "choose", "pick"}
)
# A model name typed without its hyphen ("gpt3", "llama2"): the pages write "GPT-3", which the
# search indexes as "gpt" and "3"; the typed form is kept beside it (code may use it).
_NAME_AND_VERSION = re.compile(r"([a-z]{3,})(\d)")
_NOT_VERSIONED = frozenset(
    "int uint float complex log utf sha python conv top epoch layer step http ipv".split()  # noqa: SIM905
)
_Y_VERBS = frozenset({"do", "does", "did", "is", "are", "was", "would", "should", "can", "use"})
# A whole word: not part of code (a dot, underscore, bracket or call next to it).
_WORD = re.compile(r"(?<![\w.\[(/-])([A-Za-z0-9]+)(?![\w.\[(/-])")
_REPEATED_MARKS = re.compile(r"([?!])[?!]+")
# Shorthand written with punctuation, which the word pass below would cut in two ("tl;dr"
# became "tl", ";" and "dr", and the query "kubeflow tl;dr?" was searched as "kubeflow ;?").
_WITH_PUNCTUATION = ((re.compile(r"(?<![\w/])w/o(?![\w/])", re.I), "without"),
                     (re.compile(r"(?<![\w/])w/(?=\s)", re.I), "with"),
                     (re.compile(r"\s*(?<![\w/])tl\s*[;:]\s*dr(?!\w)", re.I), ""))  # fmt: skip


def _chat_between(before: str | None, after: str | None) -> bool:
    """Whether a one-letter word between ``before`` and ``after`` reads as chat ("precision n
    recall") rather than a variable ("top n results", "size n")."""
    return bool(
        before and after and before.isalpha() and after.isalpha() and len(before) >= 3
        and len(after) >= 3 and before.lower() not in _COUNTED
    )  # fmt: skip


def spell_out(question: str) -> str:
    """``question`` with chat shorthand spelled out and filler words dropped (see the module
    docstring); a question without shorthand comes back unchanged."""
    for pattern, words_for in _WITH_PUNCTUATION:
        question = pattern.sub(words_for, question)
    words = list(_WORD.finditer(question))
    out: list[str] = []
    last = 0
    for i, match in enumerate(words):
        word = match.group(1)
        lower = word.lower()
        before = words[i - 1].group(1) if i > 0 else None
        after = words[i + 1].group(1).lower() if i + 1 < len(words) else None
        replacement: str | None = None
        if lower in DROPPED:
            replacement = ""
        elif lower in SPELLED_OUT and (word.islower() or word.isupper()):
            replacement = SPELLED_OUT[lower]
        elif lower in _BETWEEN_WORDS and word.islower() and _chat_between(before, after):
            replacement = _BETWEEN_WORDS[lower]
        elif lower == "y" and word.islower() and after in _Y_VERBS:
            replacement = "why"
        elif (
            (named := _NAME_AND_VERSION.fullmatch(lower))
            and (word.islower() or word.isupper())
            and named.group(1) not in _NOT_VERSIONED
        ):
            replacement = f"{word} ({word[:-1]}-{word[-1]})"
        if replacement is None:
            continue
        before_word = question[last : match.start()]
        # A dropped word takes the space before it along ("kubeflow tldr?" -> "kubeflow?").
        out.append(before_word.rstrip() if not replacement else before_word)
        out.append(replacement)
        last = match.end()
    out.append(question[last:])
    text = _REPEATED_MARKS.sub(r"\1", "".join(out))
    return " ".join(text.split()).strip(" ,;:") or question
