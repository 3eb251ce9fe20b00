"""`mlrag` commands print no third-party import warnings (bitsandbytes' hub-kernel notice)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from cli import main as cli


def _import_bitsandbytes(quiet: bool, offline: bool) -> str:
    code = "from cli.main import quiet_import_warnings; quiet_import_warnings()\n" if quiet else ""
    result = subprocess.run(
        [sys.executable, "-c", code + "import bitsandbytes"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HF_HUB_OFFLINE": "1" if offline else "0"},
    )
    assert result.returncode == 0, result.stderr
    return result.stderr


@pytest.mark.parametrize("offline", [True, False])
def test_bitsandbytes_import_is_quiet_after_quieting(offline: bool) -> None:
    loud = _import_bitsandbytes(quiet=False, offline=offline)
    if "kernels-community" not in loud:
        pytest.skip("this CPU has no AVX512-BF16, so bitsandbytes prints nothing to silence")
    assert "kernels-community" not in _import_bitsandbytes(quiet=True, offline=offline)


def test_main_quiets_before_building_the_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(cli, "quiet_import_warnings", lambda: calls.append("quiet"))

    def parser() -> None:
        calls.append("parser")
        raise SystemExit(0)

    monkeypatch.setattr(cli, "build_parser", parser)
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert calls == ["quiet", "parser"]
