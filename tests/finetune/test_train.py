"""LoRA and QLoRA training on the tiny Mistral (CPU): saved adapter and metadata, reload with
identical logits, resume to the same weights, clear errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from finetune.dataset import EvidenceIndex
from finetune.train import TrainConfig, linear_module_names, run_dir, train_adapter
from rag.config import Settings
from rag.errors import CapacityError, InvalidInputError
from tests.finetune.conftest import ITEMS, word_overlap_search, write_jsonl


def config(base: Path, name: str = "tiny", **overrides: Any) -> TrainConfig:
    values: dict[str, Any] = {
        "name": name,
        "base": str(base),
        "r": 4,
        "alpha": 8,
        "dropout": 0.1,
        "epochs": 2,
        "lr": 5e-3,
        "batch": 2,
        "grad_accum": 2,
        "max_len": 400,
        "dev_fraction": 0.25,
        "seed": 7,
    }
    values.update(overrides)
    return TrainConfig(**values)


def train(
    settings: Settings, files: dict[str, Path], chunks: list, cfg: TrainConfig, **kwargs: Any
):
    return train_adapter(
        files["train"],
        cfg,
        settings,
        gold=files["gold"],
        search=word_overlap_search(chunks),
        evidence_index=EvidenceIndex(chunks),
        progress=False,
        **kwargs,
    )


def lora_weights(model: Any) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.named_parameters() if "lora_" in k}


def test_lora_trains_saves_and_reloads_with_identical_logits(
    tiny_settings, tiny_base, files, chunks
) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    result = train(tiny_settings, files, chunks, config(tiny_base))
    folder = tiny_settings.adapters_dir / "tiny"
    assert result.adapter_dir == folder
    assert (folder / "adapter_config.json").is_file()
    assert (folder / "adapter_model.safetensors").is_file()
    meta = json.loads((folder / "mlrag.json").read_text())
    assert meta["base_model"] == str(tiny_base) and meta["qlora"] is False
    assert len(meta["data_hash"]) == 64
    assert meta["hyperparameters"]["r"] == 4 and meta["hyperparameters"]["target_modules"] == [
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
    ]
    assert meta["examples"]["train"] + meta["examples"]["dev"] >= len(ITEMS)
    assert meta["examples"]["dev"] > 0
    assert [h["epoch"] for h in meta["history"]] == [1, 2]
    assert meta["final_train_loss"] > 0 and meta["final_dev_loss"] > 0
    assert meta["tokens_per_s"] > 0 and meta["wall_seconds"] >= meta["train_seconds"] > 0
    # Steps: ceil(ceil(train/batch)/grad_accum) per epoch.
    micro = -(-meta["examples"]["train"] // 2)
    assert meta["steps"] == 2 * -(-micro // 2)
    # No temp folders are left next to the adapter.
    assert [p.name for p in tiny_settings.adapters_dir.iterdir()] == ["tiny"]

    ids = torch.tensor([[4, 30, 14, 47, 93, 2, 6]])
    result.model.eval()
    with torch.no_grad():
        trained = result.model(input_ids=ids).logits
        base = AutoModelForCausalLM.from_pretrained(str(tiny_base), dtype=torch.float32)
        plain = base(input_ids=ids).logits.clone()
        reloaded = PeftModel.from_pretrained(base, str(folder))(input_ids=ids).logits
    torch.testing.assert_close(reloaded, trained)
    assert not torch.allclose(plain, trained)  # training changed something


def test_training_lowers_the_loss(tiny_settings, tiny_base, files, chunks) -> None:
    result = train(
        tiny_settings,
        files,
        chunks,
        config(tiny_base, epochs=4, lr=2e-2, dev_fraction=0.0, grad_accum=1, unanswerable=False),
    )
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < losses[0] * 0.9
    # --answerable-only reached the example builder.
    assert result.metadata["examples"]["abstain"] == 0
    assert result.metadata["examples"]["unanswerable_left_out"] >= 1
    assert result.metadata["hyperparameters"]["unanswerable"] is False


def test_qlora_trains_in_4bit_on_cpu(tiny_settings, tiny_base, files, chunks) -> None:
    import bitsandbytes as bnb

    result = train(tiny_settings, files, chunks, config(tiny_base, name="q", qlora=True, epochs=1))
    assert result.metadata["qlora"] is True
    assert any(isinstance(m, bnb.nn.Linear4bit) for m in result.model.modules())
    assert (tiny_settings.adapters_dir / "q" / "adapter_model.safetensors").is_file()
    assert result.metadata["final_train_loss"] > 0


def test_resume_reaches_the_same_weights_as_an_uninterrupted_run(
    tmp_path, tiny_base, files, chunks
) -> None:
    straight_settings = Settings(data_dir=tmp_path / "a", torch_threads=1)
    straight = train(
        straight_settings, files, chunks, config(tiny_base, epochs=3, dev_fraction=0.0)
    )

    settings = Settings(data_dir=tmp_path / "b", torch_threads=1)

    def stop_after_first(epoch: int, record: dict[str, Any]) -> None:
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(
            settings,
            files,
            chunks,
            config(tiny_base, epochs=3, dev_fraction=0.0),
            on_epoch_end=stop_after_first,
        )
    assert not (settings.adapters_dir / "tiny").exists()  # nothing half-written is registered
    saved = torch.load(run_dir(settings, "tiny") / "state.pt", weights_only=False)
    assert saved["state"]["epoch"] == 1 and saved["state"]["step"] > 0
    assert saved["optimizer"]["state"]  # Adam moments are in the checkpoint

    epochs_run: list[int] = []
    resumed = train(
        settings,
        files,
        chunks,
        config(tiny_base, epochs=3, dev_fraction=0.0, resume=True),
        on_epoch_end=lambda epoch, record: epochs_run.append(epoch),
    )
    assert epochs_run == [2, 3]
    assert resumed.metadata["steps"] == straight.metadata["steps"]
    assert [h["train_loss"] for h in resumed.history] == pytest.approx(
        [h["train_loss"] for h in straight.history]
    )
    a, b = lora_weights(straight.model), lora_weights(resumed.model)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-5, atol=1e-6)


def test_resume_refuses_a_checkpoint_of_other_settings(
    tiny_settings, tiny_base, files, chunks
) -> None:
    with pytest.raises(KeyboardInterrupt):
        train(
            tiny_settings,
            files,
            chunks,
            config(tiny_base),
            on_epoch_end=lambda e, r: (_ for _ in ()).throw(KeyboardInterrupt),
        )
    with pytest.raises(InvalidInputError, match="other data or hyper-parameters"):
        train(tiny_settings, files, chunks, config(tiny_base, r=8, resume=True))
    with pytest.raises(InvalidInputError, match="no checkpoint"):
        train(tiny_settings, files, chunks, config(tiny_base, name="fresh", resume=True))


def test_early_stopping_keeps_the_best_dev_epoch(tiny_settings, tiny_base, files, chunks) -> None:
    # A huge learning rate makes the dev loss climb after the first epoch.
    result = train(
        tiny_settings,
        files,
        chunks,
        config(tiny_base, epochs=6, lr=0.5, patience=1, dev_fraction=0.4),
    )
    history = result.history
    assert len(history) < 6
    assert result.metadata["best_dev_loss"] == min(h["dev_loss"] for h in history)


def test_unknown_target_modules_list_the_available_ones(
    tiny_settings, tiny_base, files, chunks
) -> None:
    with pytest.raises(InvalidInputError) as info:
        train(
            tiny_settings,
            files,
            chunks,
            config(tiny_base, target_modules=("q_proj", "query_key_value")),
        )
    message = str(info.value)
    assert "query_key_value" in message and "gate_proj" in message and "q_proj" in message
    assert "lm_head" not in message
    assert not tiny_settings.adapters_dir.exists() or not any(tiny_settings.adapters_dir.iterdir())


def test_linear_module_names_of_mistral(tiny_base) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_base))
    assert linear_module_names(model) == [
        "down_proj",
        "gate_proj",
        "k_proj",
        "o_proj",
        "q_proj",
        "up_proj",
        "v_proj",
    ]


def test_existing_name_needs_force(tiny_settings, tiny_base, files, chunks) -> None:
    train(tiny_settings, files, chunks, config(tiny_base, epochs=1))
    before = (tiny_settings.adapters_dir / "tiny" / "mlrag.json").read_text()
    with pytest.raises(InvalidInputError, match="--force"):
        train(tiny_settings, files, chunks, config(tiny_base, epochs=1))
    train(tiny_settings, files, chunks, config(tiny_base, epochs=1, seed=8, force=True))
    assert (tiny_settings.adapters_dir / "tiny" / "mlrag.json").read_text() != before
    assert [p.name for p in tiny_settings.adapters_dir.iterdir()] == ["tiny"]


def test_bad_training_files(tmp_path, tiny_settings, tiny_base, files, chunks) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(files["train"].read_text() + '{"id": "z", "question": \n', encoding="utf-8")
    with pytest.raises(InvalidInputError, match=rf"bad.jsonl:{len(ITEMS) + 1}: not valid JSON"):
        train(tiny_settings, {**files, "train": bad}, chunks, config(tiny_base))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(InvalidInputError, match="empty"):
        train(tiny_settings, {**files, "train": empty}, chunks, config(tiny_base))
    contaminated = write_jsonl(
        tmp_path / "c.jsonl",
        [
            *ITEMS,
            {
                **ITEMS[0],
                "id": "dup-of-gold",
                "question": "Which matrices does LoRA add to a layer?",
            },
        ],
    )
    with pytest.raises(InvalidInputError, match="overlaps the eval gold set.*dup-of-gold"):
        train(tiny_settings, {**files, "train": contaminated}, chunks, config(tiny_base))
    with pytest.raises(InvalidInputError, match="--batch"):
        train(tiny_settings, files, chunks, config(tiny_base, batch=0))


def test_out_of_memory_gives_one_line_advice(
    monkeypatch, tiny_settings, tiny_base, files, chunks
) -> None:
    import finetune.train as train_module

    def boom(model: Any, batch: dict[str, Any]) -> Any:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(train_module, "token_loss_sum", boom)
    with pytest.raises(CapacityError) as info:
        train(tiny_settings, files, chunks, config(tiny_base))
    assert "\n" not in str(info.value)
    assert "--batch 1 --grad-accum 4" in str(info.value) and "--qlora" in str(info.value)
    assert not (tiny_settings.adapters_dir / "tiny").exists()


def test_loss_over_kept_positions_equals_the_full_logit_loss(tiny_base) -> None:
    from transformers import AutoModelForCausalLM

    from finetune.dataset import IGNORE_INDEX, TokenizedExample
    from finetune.train import collate, token_loss_sum

    model = AutoModelForCausalLM.from_pretrained(tiny_base, dtype=torch.float32).eval()
    # Rows of different lengths whose answers sit at different positions (right padding).
    rows = [
        TokenizedExample("a", list(range(3, 15)), [IGNORE_INDEX] * 9 + list(range(12, 15))),
        TokenizedExample("b", list(range(5, 12)), [IGNORE_INDEX] * 3 + list(range(8, 12))),
    ]
    batch = collate(rows, pad_id=0)
    with torch.no_grad():
        loss, count = token_loss_sum(model, batch)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        expected = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.size(-1)),
            batch["labels"][:, 1:].reshape(-1),
            ignore_index=IGNORE_INDEX,
            reduction="sum",
        )
    assert count == 3 + 4
    assert torch.allclose(loss, expected, atol=1e-5)
