"""The exact check of an answer's specifics (rag.specifics) and the verify stage (rag.verify)."""

from __future__ import annotations

from rag.specifics import missing_specifics, specifics, unbound_numbers, uncited_numbers
from rag.verify import (
    drop_empty,
    drop_invented,
    drop_orphans,
    drop_restating,
    drop_stitched,
    drop_uncited,
    only_restates,
    recite,
    states_nothing,
    verify,
)
from tests.rag.answering_corpus import hits_for

CONTEXT = [
    "r=16,  # rank — higher = more capacity, more params",
    "Use PR-AUC for fraud detection. torch.optim.Adam(lr=1e-3) is the default optimizer here.",
]


def test_numbers_identifiers_and_names_are_the_specifics() -> None:
    found = specifics(
        "Call torch.optim.Adam with lr=1e-3 and set lora_dropout like DeepSpeed does."
    )
    assert {"torch.optim.Adam", "1e-3", "lora_dropout", "DeepSpeed"} <= found
    assert "Call" not in found  # a sentence opener is not a name


def test_specifics_must_occur_in_the_context_or_the_question() -> None:
    assert missing_specifics("The example uses r=16.", CONTEXT) == []
    assert missing_specifics("The default momentum is 0.1.", CONTEXT) == ["0.1"]
    assert missing_specifics("It is 6.", CONTEXT) == ["6"]  # "6" inside "16" does not count
    assert missing_specifics("DeepSpeed ZeRO shards it.", CONTEXT) == ["DeepSpeed", "ZeRO"]
    assert missing_specifics("DeepSpeed shards it.", [*CONTEXT, "what about DeepSpeed?"]) == []


LORA_CONFIG = [
    "r=16,  # rank — higher = more capacity\nlora_alpha=32,  # scaling factor (usually 2×r)",
    "Train <1% of parameters vs full fine-tuning",
    "By default, 15 digits of precision are used, but you can pass any number to evalf.",
]


def test_a_number_must_come_with_what_it_is_attached_to() -> None:
    """The 1.5B model's near-miss failure: 32 is in the context, but as lora_alpha (sentences
    come plain, citation markers removed, as rag.verify passes them)."""
    question = "which learning rate does the page recommend for full fine-tuning without LoRA?"
    sources = [*LORA_CONFIG, question]
    assert unbound_numbers("The page recommends a learning rate of 32.", sources) == ["32"]
    said = "The page recommends a learning rate of 32 for full fine-tuning without LoRA."
    assert unbound_numbers(said, sources) == ["32"]  # the question's words after it do not bind
    # Paraphrases that keep a word of the number's context pass.
    assert unbound_numbers("LoRA uses a rank of 16.", sources) == []
    assert unbound_numbers("SymPy uses 15 digits of precision by default.", sources) == []
    assert unbound_numbers("Fewer than 1% of the parameters are trained.", sources) == []
    # The window counts content words, not stopwords.
    code = "learning_rate = 2e-4, fp16 = True, logging_steps = 10,"
    assert unbound_numbers("The learning rate used in the LoRA model is 2e-4.", [code]) == []
    # Numbers the question gives are bound by the question's words.
    assert unbound_numbers("Pass 100 to get pi to 100 digits.", ["pi to 100 digits?"]) == []
    # A number in no source is missing_specifics' business; a bare number checks nothing.
    assert unbound_numbers("The learning rate is 0.3.", sources) == []
    assert unbound_numbers("32.", sources) == []


def test_a_bare_number_must_come_with_the_words_of_the_question() -> None:
    # "and alpha?" answered "16 [3]" from a block whose 16 is the rank (r=16).
    asked = "What is the value of alpha in the LoRA model?"
    assert unbound_numbers("16", ["r=16,"], asked) == ["16"]
    assert unbound_numbers("16", ["r=16,\nlora_alpha=16,"], asked) == []
    assert unbound_numbers("16", ["r=16,"]) == []  # no question: nothing to check
    kept, invented = drop_invented("16 [1]", ["r=16,"], asked)
    assert kept == "" and invented == ["16"]


def test_a_short_fragment_with_a_number_must_be_about_the_question() -> None:
    # Seen on a dev near-miss: "how many images does ImageNet contain?" -> "175B parameters [1]",
    # lifted from the timeline's GPT-3 line (bound to "parameters", but not what was asked).
    timeline = (
        "2012 : AlexNet — ImageNet breakthrough 2014 : GANs invented by Goodfellow "
        "2017 : Transformer — attention is all you need 2020 : GPT-3 — 175B parameters "
        "2021 : DALL-E — text to image"
    )
    asked = "how many images does ImageNet contain?"
    assert unbound_numbers("175B parameters", [timeline], asked) == ["175"]
    assert unbound_numbers("175B parameters", [timeline], "how many parameters has GPT-3?") == []
    # A longer sentence says what its number is; the support check reads it.
    dated = "John McCarthy named the field at the Dartmouth Conference (1956)."
    assert unbound_numbers(dated, ["1956 : Dartmouth Conference"], "who named AI, and where?") == []


def test_a_sentence_with_an_unbound_number_is_dropped_as_invented() -> None:
    text = "LoRA uses a rank of 16 [1]. The learning rate is 32 [1]."
    kept, invented = drop_invented(text, LORA_CONFIG)
    assert kept == "LoRA uses a rank of 16 [1]." and invented == ["The learning rate is 32."]


def test_invented_sentences_are_dropped_and_the_rest_kept() -> None:
    text = "Use PR-AUC for fraud [1]. Its default threshold is 0.37 [1]."
    kept, invented = drop_invented(text, CONTEXT)
    assert kept == "Use PR-AUC for fraud [1]." and invented == ["Its default threshold is 0.37."]


def test_sentences_that_state_nothing_are_recognised() -> None:
    # Seen with the 1.5B model: a bare "No [1]" to a question the corpus does not answer, and
    # "The default learning rate for Adam in the page is [2][3]." (markers where the value goes).
    for empty in (
        "No",
        "Yes.",
        "It depends.",
        "The default learning rate for Adam is",
        "The steps are:",
    ):
        assert states_nothing(empty), empty
    for stated in (
        "Yes, NumPy broadcasts arrays of different shapes.",
        "The learning rate is 1e-3.",
        "Set the rank with `r`.",
        "ReLU",
        "It is used for classification.",
    ):
        assert not states_nothing(stated), stated


def test_sentences_that_state_nothing_are_dropped_and_the_rest_kept() -> None:
    kept, empty = drop_empty("No [1]. PR-AUC is better for imbalanced fraud data [2].")
    assert kept == "PR-AUC is better for imbalanced fraud data [2]." and empty == ["No."]
    kept, empty = drop_empty("The default learning rate for Adam in the page is [1].")
    assert kept == "" and empty == ["The default learning rate for Adam in the page is."]
    assert drop_empty("Use PR-AUC for fraud [1].") == ("Use PR-AUC for fraud [1].", [])


def test_code_lines_are_neither_dropped_as_empty_nor_cited_one_by_one(embedder) -> None:
    # Seen with the 1.5B model: "```python [1]" and a closing fence dropped as "empty".
    hits = hits_for("Regularization", "Evaluation Metrics")
    text = (
        "PR-AUC is the better metric for imbalanced fraud detection [2]. For example:\n"
        "```python\nfrom sklearn.metrics import average_precision_score\n```"
    )
    assert drop_empty(text) == (text, [])
    cited, changed = recite(text, hits, embedder, None, 0.5)
    assert cited == text and changed == 0
    # A prose sentence that starts like code ("name=value ...") is still a sentence to cite.
    prose = "average=None makes PR-AUC the better metric for imbalanced fraud detection."
    cited, changed = recite(prose, hits, embedder, None, 0.5)
    assert cited == prose[:-1] + " [2]." and changed == 1


def test_a_wrong_or_missing_citation_moves_to_the_supporting_block(embedder) -> None:
    hits = hits_for("Regularization", "Evaluation Metrics")
    wrong = "PR-AUC is the better metric for imbalanced fraud detection [1]."
    fixed, changed = recite(wrong, hits, embedder, None, 0.5)
    assert (
        fixed == "PR-AUC is the better metric for imbalanced fraud detection [2]." and changed == 1
    )
    uncited, changed = recite(
        "PR-AUC is the better metric for fraud detection.", hits, embedder, None, 0.5
    )
    assert uncited == "PR-AUC is the better metric for fraud detection [2]." and changed == 1
    right, changed = recite(wrong.replace("[1]", "[2]"), hits, embedder, None, 0.5)
    assert right == wrong.replace("[1]", "[2]") and changed == 0


def test_of_several_cited_blocks_only_the_supporting_ones_stay(embedder) -> None:
    hits = hits_for("Regularization", "Evaluation Metrics")
    both = "PR-AUC is the better metric for imbalanced fraud detection [1][2]."
    narrowed, changed = recite(both, hits, embedder, None, 0.5)
    assert narrowed == "PR-AUC is the better metric for imbalanced fraud detection [2]."
    assert changed == 1


def test_a_sentence_copied_from_an_uncited_block_cites_it_too(embedder) -> None:
    """The 1.5B model copied a line of block 1 and cited block 2, which supports it less but
    above the floor: block 1 is cited beside it, so the reader finds the line."""
    from rag.types import Chunk, Hit

    line = "The modern renaissance began with ImageNet (2012), when AlexNet halved the error rate."
    texts = [
        f"Two AI winters followed unrealistic expectations. {line}",
        "AlexNet and ImageNet started the modern renaissance of deep learning in 2012.",
    ]
    hits = [
        Hit(Chunk(id=f"d#{i}", doc_id="d", text=t, metadata={}), 1.0, i, "hybrid")
        for i, t in enumerate(texts, start=1)
    ]
    fixed, changed = recite(f"{line[:-1]} [2].", hits, embedder, None, 0.5)
    assert fixed == f"{line[:-1]} [2][1]." and changed == 1
    cited_right, changed = recite(f"{line[:-1]} [1].", hits, embedder, None, 0.5)
    assert cited_right == f"{line[:-1]} [1]." and changed == 0


def test_a_sentence_stating_a_number_cites_the_block_that_states_it(embedder) -> None:
    """The 1.5B model answered "2e-4 [1]" citing a line about learning rates; the number is in
    block 2, and support scores alone kept [1]."""
    from rag.types import Chunk, Hit

    texts = [
        "LoRA training can be optimized using LoRA+, which uses different learning rates for "
        "the adapter matrices A and B.",
        "learning_rate = 2e-4, fp16 = True, logging_steps = 10,",
    ]
    hits = [
        Hit(Chunk(id=f"d#{i}", doc_id="d", text=t, metadata={}), 1.0, i, "hybrid")
        for i, t in enumerate(texts, start=1)
    ]
    fixed, changed = recite(
        "The learning rate used in LoRA is 2e-4 [1].", hits, embedder, None, 0.5
    )
    assert fixed == "The learning rate used in LoRA is 2e-4 [2]." and changed == 1
    # A number in no block, or a sentence already citing the block with it, is left alone.
    same, changed = recite("The learning rate is 2e-4 [2].", hits, embedder, None, 0.5)
    assert same == "The learning rate is 2e-4 [2]." and changed == 0
    # Cited right but weakly supported, or not cited at all: the numbers still decide.
    weak, _ = recite("It is 2e-4 [2].", hits, embedder, None, 0.99)
    assert weak == "It is 2e-4 [2]."
    uncited, _ = recite("The learning rate used in LoRA is 2e-4.", hits, embedder, None, 0.5)
    assert uncited == "The learning rate used in LoRA is 2e-4 [2]."


def test_a_sentence_stitching_numbers_from_two_blocks_is_dropped() -> None:
    """By hand, "how much gpu memory do i need to qlora a 7b model" was answered "at least
    10GB … on a single 48GB GPU using QLoRA [1]": 10GB is spaCy's GPU note (block 2), the
    cited block is about a 65B model. No one block states both numbers, so the citation
    check could not move the citation; the sentence is dropped."""
    from rag.types import Chunk, Hit

    texts = [
        "This method allows you to finetune a 65B parameter model on a single 48GB GPU!",
        "Transformer pipelines are designed to run on a GPU with at least 10GB of memory.",
    ]
    hits = [
        Hit(Chunk(id=f"d#{i}", doc_id="d", text=t, metadata={}), 1.0, i, "hybrid")
        for i, t in enumerate(texts, start=1)
    ]
    question = "how much gpu memory do i need to qlora a 7b model"
    stitched = "You need at least 10GB of memory on a single 48GB GPU using QLoRA [1]."
    assert uncited_numbers(stitched.replace(" [1]", ""), [1], texts, question) == ["10"]
    kept, dropped = drop_stitched(stitched + " It runs on a single 48GB GPU [1].", hits, question)
    assert kept == "It runs on a single 48GB GPU [1]." and dropped == [stitched[:-5] + "."]
    # Citing both blocks, or numbers the question states, or numbers no block states: kept.
    both = "You need 10GB [2] and a single 48GB GPU [1][2]."
    assert drop_stitched(both, hits, question) == (both, [])
    assert uncited_numbers("A 7B model on a 48GB GPU", [1], texts, question) == []
    assert uncited_numbers("It needs 24GB on a 48GB GPU", [1], texts, question) == []


def test_a_yes_or_no_that_only_restates_the_question_is_no_answer() -> None:
    # By hand: "is xgboost better than random forest" got "Yes, XGBoost is better than Random
    # Forest [1]." citing a table row that lists both, and "can numpy arrays hold mixed
    # types" got "Yes, … [2]" citing the line that says the elements share one data type.
    question = "is xgboost better than random forest"
    assert only_restates("Yes, XGBoost is better than Random Forest.", question)
    mixed = "can numpy arrays hold mixed types"
    assert only_restates("No, numpy arrays can't hold mixed types.", mixed)  # negated: a side
    assert not only_restates("No, every element shares one data type.", mixed)
    assert not only_restates("XGBoost is better than Random Forest.", question)  # no side taken
    assert not only_restates("Yes, boosting corrects the errors of earlier trees.", question)
    text, dropped = drop_restating("Yes, XGBoost is better than Random Forest [1].", question)
    assert text.strip() == "" and dropped == ["Yes, XGBoost is better than Random Forest."]
    # One more sentence says what the reply rests on: the answer stays whole.
    both = "Yes, XGBoost is better than Random Forest [1]. Boosting corrects earlier errors [1]."
    assert drop_restating(both, question) == (both, [])
    # Choosing one of the options the question names is an answer, not a restatement.
    assert drop_restating("PR-AUC [1].", "PR-AUC or ROC-AUC for fraud?") == ("PR-AUC [1].", [])


def test_a_sentence_leaning_on_a_dropped_one_goes_with_it() -> None:
    # By hand: "how do i compute the eigenvalues of a matrix in numpy" lost its first sentence
    # (invented: no passage names `eigvals`), and "This function returns a dictionary …",
    # about SymPy's `eigenvals`, was left to read as the answer.
    original = (
        "In NumPy, use `eigvals` [1]. This function returns a dictionary of eigenvalues [1]. "
        "It is fast [1]. SymPy's `eigenvals` gives multiplicities [2]."
    )
    left = (
        "This function returns a dictionary of eigenvalues [1]. It is fast [1]. "
        "SymPy's `eigenvals` gives multiplicities [2]."
    )
    kept, dropped = drop_orphans(original, left)
    assert kept.strip() == "SymPy's `eigenvals` gives multiplicities [2]."
    assert dropped == ["This function returns a dictionary of eigenvalues.", "It is fast."]
    # Nothing dropped before them, or the answer's first sentence: they stay.
    whole = "It is a library [1]. It is fast [1]."
    assert drop_orphans(whole, whole) == (whole, [])


def test_a_sentence_no_block_supports_is_dropped(embedder) -> None:
    # By hand and on dev: cv.Canny's thresholds "are used to filter out edges that are too
    # weak or too strong, respectively" (wrong) beside a cited sentence: no block supports it,
    # so the citation check left it citing nothing.
    text = "PR-AUC is the better metric [2]. It is used by every bank in Europe.\n```python\nx = 1\n```"
    kept, dropped = drop_uncited(text)
    assert dropped == ["It is used by every bank in Europe."]
    assert kept.startswith("PR-AUC is the better metric [2].") and "x = 1" in kept  # code stays
    # The first sentence is given the block that supports it; the second has none and goes.
    _assert_verified(
        embedder,
        hits_for("Regularization", "Evaluation Metrics"),
        "PR-AUC is the better metric for imbalanced fraud detection. "
        "Banks were the first to adopt it for their ledgers.",
        "PR-AUC is the better metric for imbalanced fraud detection [2].",
        "Banks were the first to adopt it for their ledgers.",
    )


def _assert_verified(embedder, hits, answer: str, kept: str, dropped: str) -> None:
    checked = verify(answer, hits, "PR-AUC or ROC-AUC for fraud?", embedder, 0.5)
    assert checked.text.strip() == kept
    assert checked.invented == [dropped]


def test_a_sentence_citing_only_an_unrelated_block_is_dropped(embedder) -> None:
    # By hand: "what is xgboost" got "It is a type of gradient boosting algorithm that uses
    # decision trees as its base learners. [2]" citing a SymPy block (its best line "x + 1").
    from rag.types import Chunk, Hit

    sympy = Hit(Chunk(id="s", doc_id="s", text="x = symbols('x')\nexpr = x + 1\nprint(expr)"), 0.5, 2, "dense")  # fmt: skip
    _assert_verified(
        embedder,
        [*hits_for("Evaluation Metrics"), sympy],
        "PR-AUC is the better metric for imbalanced fraud detection [1]. "
        "It was invented by bankers in the nineteenth century [2].",
        "PR-AUC is the better metric for imbalanced fraud detection [1].",
        "It was invented by bankers in the nineteenth century.",
    )
