"""Tiny, random, locally saved models for tests of the local-LLM code path.

They follow the architecture users run with internet (Mistral) at a size that loads in well
under a second, with a word-level tokenizer that has a chat template. The fine-tuning tests
reuse them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.conftest import REPO_ROOT

# Where the packaged SmolLM2 is converted to (rag.local_models.SMOLLM2_FOLDER).
SMOLLM2_FOLDER = "smollm2-135m-instruct"

# Words the tiny tokenizer knows; everything else becomes <unk>. Enough for prompts built by
# rag.prompt plus the test questions.
_WORD_TEXT = """
the a an of to in on is are was be and or not it that this with for as by from at what
does do how why which when who where can could should would will may r rank lora low
adapter adapters matrix matrices controls control parameters parameter number model models
learning machine training train data answer question context sources source only use
if say you your i we they one two three four five six seven eight nine ten
"""
_WORDS = _WORD_TEXT.split()
_PUNCT = list(".,:;?!()[]-\"'/") + [str(d) for d in range(10)]
SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>", "<|system|>", "<|user|>", "<|assistant|>"]

# Jinja chat template in the shape of real instruct models: role tag, content, end of turn.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|{{ message['role'] }}|> {{ message['content'] }} </s> "
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|> {% endif %}"
)


def build_tiny_tokenizer() -> Any:
    """A small word-level ``PreTrainedTokenizerFast`` with eos/pad tokens and a chat template."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab: dict[str, int] = {}
    for token in SPECIAL_TOKENS + _WORDS + _PUNCT:
        vocab.setdefault(token, len(vocab))
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.WhitespaceSplit(),
            pre_tokenizers.Punctuation(),
            pre_tokenizers.Digits(individual_digits=True),
        ]
    )
    # Word-level tokens carry no spacing: join them with spaces when decoding.
    backend.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        additional_special_tokens=["<|system|>", "<|user|>", "<|assistant|>"],
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def save_tiny_mistral(folder: Path, seed: int = 0) -> Path:
    """Save a random 2-layer ``MistralForCausalLM`` and its tokenizer to ``folder``."""
    import torch
    from transformers import MistralConfig, MistralForCausalLM

    tokenizer = build_tiny_tokenizer()
    config = MistralConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=len(tokenizer),
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        # A wide init spreads the logits, so greedy decoding does not stop at once on eos.
        initializer_range=0.2,
    )
    torch.manual_seed(seed)
    model = MistralForCausalLM(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def save_random_lora(
    base_folder: Path,
    adapters_dir: Path,
    name: str,
    seed: int,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Save a LoRA adapter (q_proj, v_proj; r=4) with random, non-zero weights for the model
    in ``base_folder`` as ``adapters_dir/name`` with an ``mlrag.json``."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(base_folder), dtype=torch.float32)
    torch.manual_seed(seed)
    # init_lora_weights=False makes B random too, so the adapter changes the output.
    config = LoraConfig(
        target_modules=["q_proj", "v_proj"],
        r=4,
        lora_alpha=8,
        init_lora_weights=False,
        task_type="CAUSAL_LM",
    )
    peft_model = get_peft_model(base, config)
    target = adapters_dir / name
    peft_model.save_pretrained(str(target))
    meta = {"base_model": str(base_folder), "seed": seed, **(metadata or {})}
    (target / "mlrag.json").write_text(json.dumps(meta), encoding="utf-8")
    return target


def smollm2_data_dir(tmp_path_factory: Any) -> Path:
    """A data dir holding the converted SmolLM2 for slow tests: the project's ``data/`` when a
    conversion is already there, else one temp dir shared by the whole test session (the
    conversion is idempotent, so it runs at most once per session)."""
    project = REPO_ROOT / "data"
    if (project / "models" / SMOLLM2_FOLDER / "mlrag-conversion.json").exists():
        return project
    return Path(tmp_path_factory.getbasetemp()) / "smollm2-data"
