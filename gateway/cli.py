"""``healthmed`` command: ``serve`` runs the gateway, ``rehydrate`` rebuilds Redis on demand."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from engine.config import Settings, SettingsError, load_settings


def _serve(settings: Settings, workers: int) -> None:
    import uvicorn

    from gateway.app import create_app

    print(
        f"healthmed serving on http://{settings.host}:{settings.port}  "
        f"(API docs: http://{settings.host}:{settings.port}/schema)",
        flush=True,
    )
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        ws="websockets-sansio",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=5,
        workers=workers if workers > 1 else None,
    )


async def _rehydrate(settings: Settings) -> None:
    from engine.runtime import Engine

    engine = await Engine.start(settings, background=False)
    try:
        await engine.rehydrate()
    finally:
        await engine.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="healthmed", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the HTTP and websocket API")
    serve.add_argument("--workers", type=int, default=1)
    sub.add_parser("rehydrate", help="rebuild Redis from the durable store")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"healthmed: configuration error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    if args.command == "serve":
        _serve(settings, args.workers)
    elif args.command == "rehydrate":
        asyncio.run(_rehydrate(settings))
        print("rehydrated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
