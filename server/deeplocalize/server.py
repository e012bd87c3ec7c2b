"""`deeplocalize-server` / `python -m deeplocalize.server`: the language server over stdio.

The IO loop is driven here rather than by `LanguageServer.start_io` so that, when
the editor vanishes (stdin EOF), every run is cancelled and its process tree
killed *before* asyncio's own cleanup (which can hang on a subprocess in flight).
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import sys


def main() -> int:
    from pygls.io_ import StdinAsyncReader, StdoutWriter, run_async

    from .lsp.app import server
    from .runner import kill_all

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    atexit.register(kill_all)

    async def serve() -> None:
        reader = StdinAsyncReader(sys.stdin.buffer, server.thread_pool)
        server.protocol.set_writer(StdoutWriter(sys.stdout.buffer))
        try:
            await run_async(stop_event=server.stop_event, reader=reader, protocol=server.protocol, logger=logging.getLogger("deeplocalize"),
                            error_handler=server.report_server_error)
        finally:
            await server.close()

    try:
        asyncio.run(serve())
    except (KeyboardInterrupt, SystemExit, BrokenPipeError):
        pass
    finally:
        kill_all()
        server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
