"""A real server process for the shutdown tests: the app over a :class:`FakeRAG` that streams
slowly, run exactly as ``mlrag serve`` runs an app (:func:`api.server.serve_app`).

``python -m tests.api.slow_server PORT DATA_DIR TOKENS TOKEN_DELAY_S SHUTDOWN_GRACE_S``
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(argv: list[str]) -> None:
    from api.app import create_app
    from api.server import serve_app
    from rag.config import Settings
    from tests.api.conftest import FakeRAG

    port, data_dir, tokens, delay, grace = argv
    settings = Settings(data_dir=Path(data_dir), shutdown_grace_s=float(grace))
    rag = FakeRAG(tokens=[f"word{i} " for i in range(int(tokens))], token_delay_s=float(delay))
    serve_app(
        create_app(settings, rag=rag),
        settings,
        host="127.0.0.1",
        port=int(port),
        log_level="warning",
    )


if __name__ == "__main__":
    main(sys.argv[1:])
