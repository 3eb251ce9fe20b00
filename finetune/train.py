"""LoRA / QLoRA training of the local model on grounded Q&A, saved as a named adapter.

Why a hand-written loop rather than ``transformers.Trainer``: the run here needs exactly a few
things — loss on answer tokens only (labels are prepared by :mod:`finetune.dataset`),
gradient accumulation normalised by answer tokens, a cosine schedule with warmup, a dev loss
per epoch with early stopping, a checkpoint per epoch that resumes to bit-identical weights,
and an adapter folder renamed into place only when complete. Each is a few lines of torch;
with ``Trainer`` they are callbacks, ``TrainingArguments`` flags whose defaults shift between
major versions (v5 here), and a checkpoint format that is not ours — more code to audit for
less control, and ``Trainer`` would still need a custom collator and loss.

Flow: validate the data (format, line numbers, overlap with the gold set) → build SFT
examples from retrieval (:class:`finetune.dataset.ExampleBuilder`) → load the base model
(fp32, or 4-bit nf4 + ``prepare_model_for_kbit_training`` for QLoRA) → check the target
modules → train with a dev split, checkpointing to ``<data_dir>/finetune/runs/<name>/`` →
save the best (lowest dev loss) adapter and ``mlrag.json`` to a temp folder beside
``settings.adapters_dir / name`` and rename it into place.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from finetune.dataset import (
    DEFAULT_K,
    DEFAULT_REMOVAL_FRACTION,
    IGNORE_INDEX,
    ContextFn,
    EvidenceIndex,
    ExampleBuilder,
    SearchFn,
    SFTExample,
    TokenizedExample,
    file_hash,
    is_sft_file,
    length_checker,
    read_examples,
    tokenize_example,
    write_examples,
)
from finetune.overlap import DEFAULT_GOLD, check_file, check_no_overlap
from rag.errors import CapacityError, InvalidInputError, MlragError, ModelUnavailableError
from rag.local_models import ADAPTER_METADATA, ADAPTER_NAME_PATTERN, resolve_local_model
from rag.prompt import PROMPT_VERSION

if TYPE_CHECKING:
    from rag.config import Settings
    from rag.types import Hit

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "state.pt"
DEFAULT_TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj")
ALL_LINEAR = "all-linear"  # peft's shorthand: every linear layer but the output head


@dataclass
class TrainConfig:
    """Hyper-parameters and options of one training run (recorded in ``mlrag.json``)."""

    name: str
    base: str = "HuggingFaceTB/SmolLM2-135M-Instruct"
    qlora: bool = False
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: tuple[str, ...] = DEFAULT_TARGET_MODULES
    # The defaults are the recipe measured in bench/finetune.py (SmolLM2-135M on 2 CPU cores,
    # ~30 minutes): LoRA on the attention projections wants a high rate for 124 steps, and
    # SmolLM2's prompts run ~930 tokens at k=4, so 512 would drop most distractors.
    epochs: int = 2
    lr: float = 1e-3
    batch: int = 4
    grad_accum: int = 1
    max_len: int = 1024
    warmup_ratio: float = 0.1
    weight_decay: float = 0.0
    seed: int = 0
    dev_fraction: float = 0.1
    patience: int = 2
    k: int = DEFAULT_K
    removal_fraction: float = DEFAULT_REMOVAL_FRACTION
    unanswerable: bool = True  # train on the unanswerable items (target: abstain)
    resume: bool = False
    force: bool = False

    def validate(self) -> None:
        """InvalidInputError for values that cannot train."""
        if not ADAPTER_NAME_PATTERN.match(self.name):
            raise InvalidInputError(
                f"bad adapter name {self.name!r}: use letters, digits, '.', '_' or '-' (max 128)"
            )
        checks = {
            "r": self.r >= 1,
            "alpha": self.alpha > 0,
            "dropout": 0.0 <= self.dropout < 1.0,
            "epochs": self.epochs >= 1,
            "lr": self.lr > 0,
            "batch": self.batch >= 1,
            "grad-accum": self.grad_accum >= 1,
            "max-len": self.max_len >= 16,
            "warmup-ratio": 0.0 <= self.warmup_ratio < 1.0,
            "dev-fraction": 0.0 <= self.dev_fraction < 1.0,
            "patience": self.patience >= 1,
            "k": self.k >= 1,
            "target-modules": bool(self.target_modules),
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise InvalidInputError(
                f"invalid training option(s): {', '.join('--' + b for b in bad)}"
            )

    def hyperparameters(self) -> dict[str, Any]:
        """The values that shape the adapter (everything but run flags)."""
        data = dataclasses.asdict(self)
        for key in ("name", "resume", "force"):
            data.pop(key)
        data["target_modules"] = list(self.target_modules)
        return data


@dataclass
class TrainResult:
    """What a finished run produced."""

    adapter_dir: Path
    metadata: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    model: Any = field(default=None, repr=False)  # the trained PeftModel (best weights)


# --- model ------------------------------------------------------------------------------


def linear_module_names(model: Any) -> list[str]:
    """Names (last path component) of the model's linear layers a LoRA may target; the
    output head is left out (peft's ``all-linear`` does the same)."""
    import torch

    names: set[str] = set()
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    for full_name, module in model.named_modules():
        if module is output:
            continue
        # bitsandbytes' Linear4bit subclasses nn.Linear; GPT-2 style Conv1D is linear too.
        if isinstance(module, torch.nn.Linear) or type(module).__name__ == "Conv1D":
            names.add(full_name.rsplit(".", 1)[-1])
    return sorted(names)


def check_target_modules(model: Any, targets: Sequence[str]) -> None:
    """InvalidInputError naming the available linear modules when a target does not exist."""
    if list(targets) == [ALL_LINEAR]:
        return
    available = linear_module_names(model)
    missing = [t for t in targets if t not in available]
    if missing:
        raise InvalidInputError(
            f"target module(s) not in the base model: {', '.join(missing)}; "
            f"its linear modules are: {', '.join(available)} (or use {ALL_LINEAR})"
        )


def _device() -> Any:
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_base_model(location: str, qlora: bool) -> tuple[Any, Any]:
    """Tokenizer and model ready for adapters: fp32 (bf16 on CUDA) or, for QLoRA, 4-bit nf4
    prepared with ``prepare_model_for_kbit_training``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cuda = torch.cuda.is_available()
    compute = torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float32
    kwargs: dict[str, Any] = {"dtype": compute}
    if qlora:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=compute
        )
        kwargs["device_map"] = {"": 0} if cuda else "cpu"
    try:
        tokenizer = AutoTokenizer.from_pretrained(location)
        model = AutoModelForCausalLM.from_pretrained(location, **kwargs)
    except Exception as exc:  # noqa: BLE001 - any load failure means the same to users
        first = (str(exc).strip().splitlines() or [""])[0]
        raise ModelUnavailableError(
            f"cannot load base model {location!r}: {type(exc).__name__}: {first}"
        ) from exc
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.chat_template is None:
        raise ModelUnavailableError(f"the base model {location!r} has no chat template")
    if qlora:
        from peft import prepare_model_for_kbit_training

        # Gradient checkpointing trades compute for memory; on a CPU run memory is not the
        # limit and the recomputation costs ~30%, so only GPUs get it.
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cuda)
    elif cuda:
        model.to(_device())
    return tokenizer, model


def attach_lora(model: Any, config: TrainConfig) -> Any:
    """The model wrapped in a fresh, trainable LoRA (``PeftModel``)."""
    from peft import LoraConfig, get_peft_model

    check_target_modules(model, config.target_modules)
    targets: Any = (
        ALL_LINEAR if list(config.target_modules) == [ALL_LINEAR] else list(config.target_modules)
    )
    lora = LoraConfig(
        r=config.r,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=targets,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)


# --- data -------------------------------------------------------------------------------


def rag_search(settings: Settings) -> tuple[SearchFn, EvidenceIndex, ContextFn]:
    """The RAG's ``hybrid`` retriever as a ``search(question, n)``, an evidence index over
    every stored chunk (EmptyIndexError when nothing is ingested), and the context cut that
    serving applies (rag.context.context_for at ``llm_context_tokens``)."""
    from rag.context import context_for
    from rag.pipeline import RAG

    rag = RAG(settings)

    def search(question: str, n: int) -> list[Hit]:
        return rag.search(question, k=n, retriever="hybrid")

    def context(question: str, hits: list[Hit], keep: Sequence[str]) -> list[Hit]:
        return context_for(
            question, hits, rag.embedder, rag.shared.sentences, settings.llm_context_tokens, keep
        )

    rag.search("warm up", k=1, retriever="hybrid")  # EmptyIndexError now, not mid-build
    return search, EvidenceIndex(rag.store.iter_chunks()), context


def build_training_examples(
    data: Path,
    config: TrainConfig,
    tokenizer: Any,
    settings: Settings,
    gold: Path = DEFAULT_GOLD,
    search: Callable[[str, int], list[Hit]] | None = None,
    evidence_index: EvidenceIndex | None = None,
    context: ContextFn | None = None,
) -> tuple[list[SFTExample], dict[str, Any]]:
    """SFT examples from ``data`` (Q&A items, or ready-made ``{"messages"}`` lines) after the
    format and overlap checks; returns them with build statistics."""
    if Path(data).is_file() and is_sft_file(data):
        from finetune.dataset import load_qa_items
        from rag.qa import QAItem

        examples = read_examples(data)
        questions = [QAItem(id=e.id, question=e.question, answerable=False) for e in examples]
        check_no_overlap(questions, load_qa_items(gold) if Path(gold).is_file() else [], str(data))
        return examples, {"prebuilt": len(examples)}
    items = check_file(data, gold)
    if search is None:
        search, evidence_index, context = rag_search(settings)
    builder = ExampleBuilder(
        search,
        evidence_index,
        k=config.k,
        seed=config.seed,
        removal_fraction=config.removal_fraction,
        fits=length_checker(tokenizer, config.max_len),
        unanswerable=config.unanswerable,
        context=context,
    )
    examples = builder.build(items)
    if builder.stats.skipped:
        log.warning(
            "%d item(s) skipped, no chunk holds their evidence: %s",
            len(builder.stats.skipped),
            ", ".join(builder.stats.skipped[:20]),
        )
    return examples, builder.stats.to_dict()


def split_dev(
    examples: Sequence[TokenizedExample], fraction: float, seed: int
) -> tuple[list[TokenizedExample], list[TokenizedExample]]:
    """(train, dev): a seeded share of the *items* goes to dev, with all their examples, so
    an item's evidence-removed copy never sits on the other side."""
    groups = sorted({e.id.split("#", 1)[0] for e in examples})
    n_dev = int(round(len(groups) * fraction)) if fraction > 0 else 0
    if n_dev >= len(groups):
        n_dev = len(groups) - 1
    dev_groups = set(random.Random(seed).sample(groups, n_dev)) if n_dev > 0 else set()
    train = [e for e in examples if e.id.split("#", 1)[0] not in dev_groups]
    dev = [e for e in examples if e.id.split("#", 1)[0] in dev_groups]
    return train, dev


def collate(batch: Sequence[TokenizedExample], pad_id: int) -> dict[str, Any]:
    """Right-padded ``input_ids``, ``attention_mask`` and ``labels`` tensors."""
    import torch

    width = max(len(e.input_ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, example in enumerate(batch):
        n = len(example.input_ids)
        ids[row, :n] = torch.tensor(example.input_ids)
        labels[row, :n] = torch.tensor(example.labels)
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def epoch_batches(
    examples: Sequence[TokenizedExample], batch: int, seed: int, epoch: int
) -> list[list[TokenizedExample]]:
    """The epoch's shuffled batches: the order depends only on (seed, epoch), so a resumed
    run sees the same batches as an uninterrupted one."""
    order = list(examples)
    random.Random(seed * 100_003 + epoch).shuffle(order)
    return [order[i : i + batch] for i in range(0, len(order), batch)]


def token_loss_sum(model: Any, batch: dict[str, Any]) -> tuple[Any, int]:
    """Summed cross-entropy over answer tokens (labels ≠ -100) and their count.

    Only the positions that predict an answer token in some row go through the output head
    (``logits_to_keep``): the prompt is most of every example, and a 49k-word vocabulary's
    logits over all of it cost a third of the step on a CPU for no loss."""
    import torch

    device = next(p for p in model.parameters()).device
    inputs = {k: v.to(device) for k, v in batch.items()}
    targets = inputs["labels"][:, 1:]  # the logits at position t predict token t + 1
    positions = (targets != IGNORE_INDEX).any(dim=0).nonzero().squeeze(-1)
    logits = model(
        input_ids=inputs["input_ids"],
        attention_mask=inputs["attention_mask"],
        logits_to_keep=positions,
    ).logits.float()
    picked = targets[:, positions]
    loss = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.size(-1)),
        picked.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="sum",
    )
    return loss, int((picked != IGNORE_INDEX).sum())


def dev_loss(
    model: Any, examples: Sequence[TokenizedExample], batch: int, pad_id: int
) -> float | None:
    """Mean answer-token loss on ``examples`` (None when there are none)."""
    import torch

    if not examples:
        return None
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(examples), batch):
            loss, n = token_loss_sum(model, collate(examples[i : i + batch], pad_id))
            total += float(loss)
            count += n
    model.train(was_training)
    return total / max(count, 1)


# --- checkpoints ------------------------------------------------------------------------


def run_dir(settings: Settings, name: str) -> Path:
    """Where a run keeps its checkpoints and built examples."""
    return settings.data_dir / "finetune" / "runs" / name


def _atomic_torch_save(obj: Any, path: Path) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _trainable_state(model: Any) -> dict[str, Any]:
    from peft import get_peft_model_state_dict

    return {k: v.detach().cpu().clone() for k, v in get_peft_model_state_dict(model).items()}


def _load_trainable_state(model: Any, state: dict[str, Any]) -> None:
    from peft import set_peft_model_state_dict

    set_peft_model_state_dict(model, state)


# --- the run ----------------------------------------------------------------------------


def _oom_advice(config: TrainConfig) -> str:
    return (
        f"out of memory while training (batch {config.batch}, max-len {config.max_len}): "
        f"try --batch 1 --grad-accum {config.batch * config.grad_accum}, a smaller --max-len"
        + ("" if config.qlora else ", or --qlora")
    )


def _is_oom(exc: BaseException) -> bool:
    import torch

    if isinstance(exc, torch.OutOfMemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and (
        "out of memory" in text or "can't allocate memory" in text
    )


def train_adapter(
    data: Path,
    config: TrainConfig,
    settings: Settings,
    *,
    gold: Path = DEFAULT_GOLD,
    search: Callable[[str, int], list[Hit]] | None = None,
    evidence_index: EvidenceIndex | None = None,
    on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train a LoRA adapter on ``data`` and register it as ``config.name``.

    ``search``/``evidence_index`` replace the RAG's retrieval (tests); ``on_epoch_end(epoch,
    record)`` is called after each epoch's checkpoint is written.
    """
    config.validate()
    target = settings.adapters_dir / config.name
    if target.exists() and not config.force:
        raise InvalidInputError(
            f"adapter {config.name!r} already exists at {target}; pass --force to replace it"
        )
    if not Path(data).is_file():
        raise InvalidInputError(f"training file not found: {data}")

    import torch

    from rag.embeddings import configure_torch_threads

    configure_torch_threads(settings.effective_threads())
    started = time.perf_counter()
    random.seed(config.seed)
    torch.manual_seed(config.seed)
    location = str(resolve_local_model(config.base, settings))
    tokenizer, base_model = load_base_model(location, config.qlora)
    check_target_modules(base_model, config.target_modules)  # before the slow data build

    examples, build_stats = build_training_examples(
        data, config, tokenizer, settings, gold, search=search, evidence_index=evidence_index
    )
    folder = run_dir(settings, config.name)
    folder.mkdir(parents=True, exist_ok=True)
    write_examples(examples, folder / "sft.jsonl")
    tokenized = [
        t
        for t in (tokenize_example(e, tokenizer, config.max_len) for e in examples)
        if t is not None
    ]
    too_long = len(examples) - len(tokenized)
    if not tokenized:
        raise InvalidInputError(f"no training example fits --max-len {config.max_len}; raise it")
    if too_long:
        log.warning("%d example(s) longer than %d tokens were left out", too_long, config.max_len)
    train_set, dev_set = split_dev(tokenized, config.dev_fraction, config.seed)

    torch.manual_seed(config.seed)  # the LoRA init must not depend on the data build
    model = attach_lora(base_model, config)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    micro_per_epoch = math.ceil(len(train_set) / config.batch)
    steps_per_epoch = math.ceil(micro_per_epoch / config.grad_accum)
    total_steps = steps_per_epoch * config.epochs
    from transformers import get_cosine_schedule_with_warmup

    scheduler = get_cosine_schedule_with_warmup(
        optimizer, math.ceil(config.warmup_ratio * total_steps), total_steps
    )
    data_digest = file_hash(Path(data))
    state: dict[str, Any] = {
        "epoch": 0,
        "step": 0,
        "history": [],
        "best_dev": None,
        "best_state": None,
        "bad_epochs": 0,
        "tokens": 0,
        "train_seconds": 0.0,
    }
    checkpoint = folder / CHECKPOINT_FILE
    if config.resume:
        state = _resume(checkpoint, model, optimizer, scheduler, config, data_digest)
    elif checkpoint.exists():
        checkpoint.unlink()  # a fresh run must never resume a stale checkpoint by accident

    pad_id = int(tokenizer.pad_token_id)
    try:
        state = _epochs(
            model,
            optimizer,
            scheduler,
            params,
            train_set,
            dev_set,
            config,
            state,
            pad_id,
            checkpoint,
            data_digest,
            on_epoch_end,
            progress,
        )
    except Exception as exc:
        if _is_oom(exc):
            raise CapacityError(_oom_advice(config)) from exc
        raise

    if state["best_state"] is not None:
        _load_trainable_state(model, state["best_state"])
    last = state["history"][-1] if state["history"] else {}
    metadata = {
        "name": config.name,
        "base_model": config.base,
        # The prompt format the examples were rendered in (rag.prompt.PROMPT_VERSION): an
        # adapter trained on another format is reported as such when served.
        "prompt_version": PROMPT_VERSION,
        "base_location": location,
        "qlora": config.qlora,
        "data": str(data),
        "data_hash": data_digest,
        "examples": {
            "train": len(train_set),
            "dev": len(dev_set),
            "too_long": too_long,
            **build_stats,
        },
        "hyperparameters": config.hyperparameters(),
        "epochs_run": state["epoch"],
        "steps": state["step"],
        "final_train_loss": last.get("train_loss"),
        "final_dev_loss": last.get("dev_loss"),
        "best_dev_loss": state["best_dev"],
        "history": state["history"],
        "tokens_per_s": round(state["tokens"] / state["train_seconds"], 1)
        if state["train_seconds"]
        else None,
        "train_seconds": round(state["train_seconds"], 1),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "device": str(_device()),
        "metrics": {},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    adapter_dir = save_adapter(
        model, settings.adapters_dir, config.name, metadata, force=config.force
    )
    return TrainResult(adapter_dir, metadata, state["history"], model)


def _resume(
    checkpoint: Path,
    model: Any,
    optimizer: Any,
    scheduler: Any,
    config: TrainConfig,
    data_digest: str,
) -> dict[str, Any]:
    import torch

    if not checkpoint.is_file():
        raise InvalidInputError(f"--resume: no checkpoint at {checkpoint}")
    saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
    if saved["config"] != config.hyperparameters() or saved["data_hash"] != data_digest:
        raise InvalidInputError(
            "--resume: the checkpoint was made with other data or hyper-parameters; "
            "start again without --resume (or under another --name)"
        )
    _load_trainable_state(model, saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    torch.set_rng_state(saved["torch_rng"])
    random.setstate(saved["python_rng"])
    log.info(
        "resuming %s after epoch %d (step %d)",
        config.name,
        saved["state"]["epoch"],
        saved["state"]["step"],
    )
    return dict(saved["state"])


def _epochs(
    model: Any,
    optimizer: Any,
    scheduler: Any,
    params: list[Any],
    train_set: list[TokenizedExample],
    dev_set: list[TokenizedExample],
    config: TrainConfig,
    state: dict[str, Any],
    pad_id: int,
    checkpoint: Path,
    data_digest: str,
    on_epoch_end: Callable[[int, dict[str, Any]], None] | None,
    progress: bool,
) -> dict[str, Any]:
    import torch
    from tqdm.auto import tqdm

    micro_per_epoch = math.ceil(len(train_set) / config.batch)
    remaining = (config.epochs - state["epoch"]) * micro_per_epoch
    bar = tqdm(total=remaining, desc=f"finetune {config.name}", unit="batch", disable=not progress)
    try:
        for epoch in range(state["epoch"] + 1, config.epochs + 1):
            if state["bad_epochs"] >= config.patience:
                break
            batches = epoch_batches(train_set, config.batch, config.seed, epoch)
            epoch_loss, epoch_tokens = 0.0, 0
            epoch_started = time.perf_counter()
            for group_start in range(0, len(batches), config.grad_accum):
                group = batches[group_start : group_start + config.grad_accum]
                # Normalise by the group's answer tokens: every answer token weighs the same
                # whatever batch it fell into.
                answer_tokens = max(sum(e.answer_tokens for b in group for e in b), 1)
                for micro in group:
                    loss, _ = token_loss_sum(model, collate(micro, pad_id))
                    (loss / answer_tokens).backward()
                    loss_value = float(loss.detach())
                    epoch_loss += loss_value
                    seen = sum(len(e.input_ids) for e in micro)
                    state["tokens"] += seen
                    epoch_tokens += sum(e.answer_tokens for e in micro)
                    elapsed = state["train_seconds"] + time.perf_counter() - epoch_started
                    bar.set_postfix(
                        loss=f"{loss_value / max(sum(e.answer_tokens for e in micro), 1):.3f}",
                        tok_s=f"{state['tokens'] / max(elapsed, 1e-9):.0f}",
                    )
                    bar.update(1)
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                state["step"] += 1
            state["train_seconds"] += time.perf_counter() - epoch_started
            record = {
                "epoch": epoch,
                "step": state["step"],
                "train_loss": round(epoch_loss / max(epoch_tokens, 1), 5),
                "dev_loss": None,
                "lr": scheduler.get_last_lr()[0],
            }
            dev = dev_loss(model, dev_set, config.batch, pad_id)
            if dev is not None:
                record["dev_loss"] = round(dev, 5)
                if state["best_dev"] is None or dev < state["best_dev"]:
                    state["best_dev"] = round(dev, 5)
                    state["best_state"] = _trainable_state(model)
                    state["bad_epochs"] = 0
                else:
                    state["bad_epochs"] += 1
            state["epoch"] = epoch
            state["history"].append(record)
            log.info("epoch %d: %s", epoch, record)
            _atomic_torch_save(
                {
                    "model": _trainable_state(model),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "torch_rng": torch.get_rng_state(),
                    "python_rng": random.getstate(),
                    "config": config.hyperparameters(),
                    "data_hash": data_digest,
                    "state": state,
                },
                checkpoint,
            )
            if on_epoch_end is not None:
                on_epoch_end(epoch, record)
            if state["bad_epochs"] >= config.patience:
                log.info("early stop: dev loss has not improved for %d epoch(s)", config.patience)
                break
    finally:
        bar.close()
    return state


def save_adapter(
    model: Any, adapters_dir: Path, name: str, metadata: dict[str, Any], force: bool = False
) -> Path:
    """Write the adapter and ``mlrag.json`` into a temp folder under ``adapters_dir`` and
    rename it to ``adapters_dir / name`` (replacing an old one only with ``force``)."""
    adapters_dir.mkdir(parents=True, exist_ok=True)
    target = adapters_dir / name
    if target.exists() and not force:
        raise InvalidInputError(
            f"adapter {name!r} already exists at {target}; pass --force to replace it"
        )
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=adapters_dir))
    try:
        model.save_pretrained(str(tmp))
        (tmp / ADAPTER_METADATA).write_text(
            json.dumps(metadata, indent=2, default=str), encoding="utf-8"
        )
        tmp.chmod(0o755)
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{name}-old-", dir=adapters_dir))
            os.replace(target, old / name)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except MlragError:
        raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
