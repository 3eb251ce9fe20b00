"""The flattened web page loader, on the user's ML page and on a small page of its own."""

from __future__ import annotations

import re

import pytest

from ingest.cleaning import iter_fence_state, normalize_for_match
from ingest.loaders import load_document
from ingest.loaders.webtext import is_code_line, reflow_code, webtext_to_markdown
from rag.types import Document
from tests.conftest import ML_PAGE


@pytest.fixture(scope="module")
def page() -> Document:
    if not ML_PAGE.exists():
        pytest.skip(f"{ML_PAGE} not found")
    return load_document(
        ML_PAGE.read_bytes(),
        fmt="webtext",
        doc_id="machine-learning",
        source="corpus/machine-learning.txt",
        title="Machine Learning",
    )


def _sections(text: str) -> list[tuple[str, str]]:
    """(heading line, body) pairs, splitting on headings outside fences."""
    sections: list[tuple[str, list[str]]] = [("", [])]
    for line, inside in iter_fence_state(text.split("\n")):
        if not inside and re.match(r"^#{1,6} ", line):
            sections.append((line, []))
        else:
            sections[-1][1].append(line)
    return [(h, "\n".join(body)) for h, body in sections]


def _prose(text: str) -> list[str]:
    return [ln for ln, inside in iter_fence_state(text.split("\n")) if not inside]


def test_known_headings_have_levels(page: Document) -> None:
    heads = [ln for ln in _prose(page.text) if ln.startswith("#")]
    for expected in (
        "## History & The AI Landscape",
        "### How Machine Learning Was Born",
        "## Mathematical Foundations",
        "### Linear Algebra — The Language of Data",
        "### Calculus — How Models Learn",
        "## Supervised Learning",
        "### Activation Functions",
        "## Reinforcement Learning",
        "### Deep RL Algorithms",
        "## Model Evaluation & Selection",
        "### Cross-Validation Strategies",
    ):
        assert expected in heads, expected
    assert all(h.startswith(("## ", "### ")) for h in heads)


def test_table_cells_and_lead_ins_are_not_headings(page: Document) -> None:
    heads = {ln.lstrip("# ") for ln in _prose(page.text) if ln.startswith("#")}
    for not_heading in (
        "Learn from labeled examples",
        "Branch",
        "Sigmoid",
        "Actor-Critic",
        "Key Idea",
        "Linear algebra in NumPy — the foundation",
        "Manual gradient descent — the concept",
        "Experiment Tracking",  # a mindmap node
        "Core concepts:",
        "Eigenvalues: Used in PCA for finding principal components",
    ):
        assert not_heading not in heads, not_heading


def test_tables_become_pipe_rows(page: Document) -> None:
    lines = page.text.split("\n")
    first = lines.index("Branch | What It Does | Key Models | Used In")
    assert lines[first + 1] == (
        "Supervised Learning | Learn from labeled examples | Random Forest, XGBoost, SVM "
        "| Classification, regression"
    )
    assert (
        "NLP | Understand language | BERT, GPT, T5 | Chatbots, translation, summarization" in lines
    )
    assert (
        "SAC | Actor-Critic | Continuous | Entropy regularization, sample efficient | Robotics"
        in lines
    )
    assert "Algorithm | Type | Action Space | Key Idea | Used In" in lines
    assert "Function | Formula | Range | Use Case | Problem" in lines
    assert "Softmax | e^xᵢ/Σe^xⱼ | (0,1) sum=1 | Multi-class output | Numerically unstable" in lines
    assert "Concept | Role in ML" in lines
    assert "Entropy | Decision tree splitting criterion (information gain)" in lines


def test_code_is_fenced_under_its_heading(page: Document) -> None:
    sections = dict(_sections(page.text))
    linalg = sections["### Linear Algebra — The Language of Data"]
    assert "Linear algebra in NumPy — the foundation\n\n```python\nimport numpy as np\n" in linalg
    assert "# Data matrix: 100 samples, 5 features\nX = np.random.randn(100, 5)\n" in linalg
    assert "# Weight vector: 5 features → 1 output\nW = np.random.randn(5)\nb = 0.0\n" in linalg
    cv = sections["### Cross-Validation Strategies"]
    assert (
        "Advanced cross-validation patterns\n\n```python\nfrom sklearn.model_selection import" in cv
    )
    # every collapsed code line of the page ends up inside a fence
    assert not [ln for ln in _prose(page.text) if is_code_line(ln)]
    assert not [ln for ln in _prose(page.text) if re.match(r"^(import|from) \w+", ln)]


def test_diagrams_and_boxes_are_fenced(page: Document) -> None:
    text = page.text
    assert (
        "```mermaid\ntimeline\ntitle Milestones in AI & Machine Learning\n1950 : Turing Test proposed"
        in text
    )
    assert "2017 : Transformer — Attention Is All You Need" in text
    assert (
        "```mermaid\ngraph TD\n" in text and "```mermaid\nmindmap\nroot((Machine Learning))" in text
    )
    mindmap = text.split("```mermaid\nmindmap\n", 1)[1].split("```", 1)[0]
    assert mindmap.rstrip().endswith("Experiment Tracking")  # the headings after it are free
    assert "Core concepts:\n\n```text\nVector: x = [x₁, x₂, ..., xₙ]" in text
    assert "SVD: Matrix factorization for recommendations, compression\n```" in text
    assert not [ln for ln in _prose(text) if "─────" in ln]


def test_all_prose_and_cells_survive(page: Document) -> None:
    """Every non-code line of the page is in the output (modulo markup and whitespace)."""
    flat = normalize_for_match(page.text)
    raw = ML_PAGE.read_text(encoding="utf-8").split("\n")
    missing = [
        ln
        for ln in raw
        if ln.strip()
        and not is_code_line(ln)
        and not re.fullmatch(r"[─━]+", ln.strip())
        and normalize_for_match(ln) not in flat
    ]
    assert not missing, missing[:5]


def test_generic_small_page() -> None:
    """The heuristics are not tuned to one page's headings: a made-up page works too."""
    src = "\n".join(
        [
            "Clustering Basics",
            "What Clustering Does",
            "Clustering groups unlabeled points so that points in a group are closer to each "
            "other than to points in other groups, with no labels needed at all.",
            "Method",
            "Shape",
            "Needs K",
            "K-Means",
            "Convex blobs",
            "Yes",
            "DBSCAN",
            "Arbitrary, with noise",
            "No",
            "Agglomerative",
            "Nested clusters",
            "Optional",
            "Running K-Means",
            "K-Means in scikit-learn",
            "from sklearn.cluster import KMeans# Fit three clustersmodel = KMeans(n_clusters=3, "
            "n_init=10)labels = model.fit_predict(X) # one label per rowprint(labels[:10])",
            "The inertia printed by the model measures how tight the clusters are, and it always "
            "falls as K grows, so use the elbow or silhouette score.",
        ]
    )
    out = webtext_to_markdown(src)
    assert "## Clustering Basics\n\n### What Clustering Does" in out
    assert (
        "Method | Shape | Needs K\nK-Means | Convex blobs | Yes\nDBSCAN | Arbitrary, with noise | No"
        in out
    )
    assert "### Running K-Means\n\nK-Means in scikit-learn\n\n```python\n" in out
    assert "from sklearn.cluster import KMeans\n# Fit three clusters\nmodel = KMeans(" in out
    assert "labels = model.fit_predict(X)  # one label per row\nprint(labels[:10])\n```" in out


@pytest.mark.parametrize(
    ("flat", "expected"),
    [
        (
            "import numpy as npimport pandas as pd# Load the datadf = pd.read_csv('x.csv')print(df.head())",
            "import numpy as np\nimport pandas as pd\n# Load the data\ndf = pd.read_csv('x.csv')\n"
            "print(df.head())",
        ),
        (
            "x = compute(1)y = x + 1 # add onetotal = y * 2print(total)",
            "x = compute(1)\ny = x + 1  # add one\ntotal = y * 2\nprint(total)",
        ),
        (
            's = "a # not a comment"t = 1',
            's = "a # not a comment"\nt = 1',
        ),
        (  # inline comments stay with their code; headings and block bodies get a line
            "lora = LoraConfig( r=16, # rank — higher = more capacity lora_alpha=32, # scaling)"
            "for x in xs: # Update each one x.step() # one step",
            "lora = LoraConfig( r=16,  # rank — higher = more capacity\nlora_alpha=32,  # scaling\n"
            ")\nfor x in xs:\n# Update each one\nx.step()  # one step",
        ),
        (
            "for i in range(3): print(i)",
            "for i in range(3):\nprint(i)",
        ),
        (  # an import's last name glued to the assignment after it (the user's page)
            "from sklearn.model_selection import train_test_splitdf = pd.read_csv('d.csv')"
            "X_tr, X_te = train_test_split(df)",
            "from sklearn.model_selection import train_test_split\ndf = pd.read_csv('d.csv')\n"
            "X_tr, X_te = train_test_split(df)",
        ),
        (
            "import numpy as npapp = FastAPI()@app.get('/')",  # np is never used: app decides
            "import numpy as np\napp = FastAPI()\n@app.get('/')",
        ),
        (  # a glued word that is not two names the code uses stays as it is
            "import numpy as npzz = 1",
            "import numpy as npzz = 1",
        ),
        (  # a comment's last word glued to a call on a module every use of which is glued
            "# Forces the network to learn redundant representationsnn.Dropout(p=0.5) # 50% zeroed"
            "# allows higher learning ratesnn.BatchNorm1d(n) # after Linear for tabularnn.BatchNorm2d(c)",
            "# Forces the network to learn redundant representations\nnn.Dropout(p=0.5)  # 50% zeroed\n"
            "# allows higher learning rates\nnn.BatchNorm1d(n)  # after Linear for tabular\n"
            "nn.BatchNorm2d(c)",
        ),
        (  # ... or to an imported name, or to a name the code uses again
            "from spacy import displacy# Visualize in browserdisplacy.serve(doc)",
            "from spacy import displacy\n# Visualize in browser\ndisplacy.serve(doc)",
        ),
        (
            "model = f()# Replace final layer for our number of classesmodel.fc = g(model)",
            "model = f()\n# Replace final layer for our number of classes\nmodel.fc = g(model)",
        ),
        (  # a name written twice is not a glued word
            "# set up the learningnn.step() # again learningnn.step()",
            "# set up the\nlearningnn.step()  # again\nlearningnn.step()",
        ),
    ],
)
def test_reflow_code(flat: str, expected: str) -> None:
    assert reflow_code(flat) == expected
