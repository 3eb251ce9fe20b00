"""scripts/gpu-check.sh skips cleanly (exit 0, one line) without a GPU or without vLLM, and
builds the vLLM command line it would run."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from scripts.gpu_check import parse_adapters, vllm_command

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "scripts" / "gpu-check.sh"


def run_script(
    tmp_path: Path, nvidia_smi_exit: int | None, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run the script with PATH holding only a fake nvidia-smi (exiting ``nvidia_smi_exit``;
    None = no nvidia-smi at all) and the basic tools."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if nvidia_smi_exit is not None:
        fake = bin_dir / "nvidia-smi"
        fake.write_text(f"#!/bin/sh\necho 'GPU 0: Fake'\nexit {nvidia_smi_exit}\n")
        fake.chmod(0o755)
    path = os.pathsep.join([str(bin_dir), "/usr/bin", "/bin"])
    return subprocess.run(
        ["bash", str(SCRIPT), "base-model", "a=/x", "b=/y"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": path, **env},
    )


@pytest.mark.parametrize(
    ("nvidia_smi_exit", "reason"),
    [(None, "nvidia-smi not found"), (9, "nvidia-smi failed")],
)
def test_skips_without_a_gpu(tmp_path: Path, nvidia_smi_exit: int | None, reason: str) -> None:
    result = run_script(tmp_path, nvidia_smi_exit)
    assert result.returncode == 0
    assert result.stdout.strip().splitlines() == [f"SKIP gpu-check: no GPU: {reason}"]


def test_skips_without_vllm(tmp_path: Path) -> None:
    # A GPU that answers, and the project's interpreter, which has no vLLM.
    result = run_script(tmp_path, 0, VLLM_PYTHON=str(REPO_ROOT / ".venv" / "bin" / "python"))
    assert result.returncode == 0
    (line,) = result.stdout.strip().splitlines()
    assert line.startswith("SKIP gpu-check: no vLLM")


def test_vllm_command_serves_the_base_model_and_each_adapter() -> None:
    adapters = parse_adapters(["a=/adapters/a", "b=/adapters/b"])
    command = vllm_command("python3", "/models/base", adapters, 8011)
    assert command[-3:] == ["--lora-modules", "a=/adapters/a", "b=/adapters/b"]
    assert "--enable-lora" in command
    assert command[command.index("--host") + 1] == "127.0.0.1"
    assert command[command.index("--port") + 1] == "8011"
    with pytest.raises(SystemExit):
        parse_adapters(["no-equals-sign"])
