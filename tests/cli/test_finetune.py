"""``mlrag finetune train|list|check|synth`` through the real entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli.main import main
from finetune.dataset import ExampleBuilder, write_examples
from rag.qa import QAItem
from tests.finetune.conftest import GOLD, ITEMS, write_jsonl


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_base: Path) -> Path:
    data_dir = tmp_path / "data"
    monkeypatch.setenv("MLRAG_DATA_DIR", str(data_dir))
    monkeypatch.setenv("MLRAG_TORCH_THREADS", "1")
    monkeypatch.setenv("MLRAG_LOCAL_MODEL", str(tiny_base))
    return data_dir


def test_train_from_sft_file_then_list(
    env: Path, tmp_path: Path, search, evidence_index, capsys
) -> None:
    items = [QAItem.model_validate({"split": "train", **row}) for row in ITEMS]
    sft = tmp_path / "sft.jsonl"
    write_examples(ExampleBuilder(search, evidence_index, removal_fraction=0).build(items), sft)
    gold = write_jsonl(tmp_path / "gold.jsonl", GOLD)
    argv = ["finetune", "train", "--data", str(sft), "--name", "cli-a", "--gold", str(gold), "--r", "2",
            "--epochs", "1", "--batch", "4", "--max-len", "400", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    assert "saved adapter 'cli-a'" in capsys.readouterr().out
    assert (env / "adapters" / "cli-a" / "adapter_config.json").is_file()

    assert main(argv) == 1  # the name exists
    assert "--force" in capsys.readouterr().err

    assert main(["finetune", "list"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:4] == ["name", "base", "prompt", "r"]
    assert "cli-a" in out and " 2 " in out
    from rag.prompt import PROMPT_VERSION

    assert main(["finetune", "list", "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["name"] == "cli-a" and row["r"] == 2
    assert row["prompt"] == PROMPT_VERSION  # new adapters record the prompt format they learnt


def test_check_accepts_clean_and_refuses_contaminated_files(
    env: Path, tmp_path: Path, capsys
) -> None:
    gold = write_jsonl(tmp_path / "gold.jsonl", GOLD)
    clean = write_jsonl(tmp_path / "clean.jsonl", ITEMS)
    assert main(["finetune", "check", "--data", str(clean), "--gold", str(gold)]) == 0
    assert f"ok: {clean}: {len(ITEMS)} items" in capsys.readouterr().out
    dirty = write_jsonl(
        tmp_path / "dirty.jsonl",
        [*ITEMS, {**ITEMS[0], "id": "leak", "question": GOLD[1]["question"]}],
    )
    assert main(["finetune", "check", "--data", str(dirty), "--gold", str(gold)]) == 1
    err = capsys.readouterr().err
    assert "leak" in err and err.count("\n") == 1


def test_train_with_unknown_modules_fails_in_one_line(env: Path, tmp_path: Path, capsys) -> None:
    data = write_jsonl(tmp_path / "train.jsonl", ITEMS)
    gold = write_jsonl(tmp_path / "gold.jsonl", GOLD)
    code = main(["finetune", "train", "--data", str(data), "--name", "x", "--gold", str(gold),
                 "--target-modules", "c_attn", "--no-progress"])  # fmt: skip
    assert code == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after transformers' load bar
    assert last.startswith("mlrag finetune: error: target module(s) not in the base model: c_attn")
    assert "q_proj" in last


def test_synth_without_key_fails_clearly(env: Path, tmp_path: Path, capsys) -> None:
    assert main(["finetune", "synth", "--out", str(tmp_path / "s.jsonl"), "--n", "2"]) == 1
    assert "ANTHROPIC_API_KEY" in capsys.readouterr().err
