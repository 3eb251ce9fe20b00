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


@pytest.mark.parametrize(
    ("argv", "disabled"),
    [(["ask", "x"], True), (["search", "x"], True), (["-v", "ask", "x"], False),
     (["ingest", "--status"], False)],
)  # fmt: skip
def test_one_shot_commands_hide_model_loading_bars(
    argv: list[str], disabled: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`mlrag ask` prints an answer, not transformers' "Loading weights" bar; commands with
    long work (ingest, serve, finetune) and -v keep progress bars."""
    import cli.main as cli

    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)
    parser = cli.build_parser()
    args = parser.parse_args(argv)
    monkeypatch.setattr(args, "func", lambda args, settings: 0)
    monkeypatch.setattr(parser, "parse_args", lambda argv: args)
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    assert cli.main(argv) == 0
    assert (os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS") == "1") is disabled
