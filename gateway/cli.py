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
    from gateway.realtime import RealtimeProtocol

    print(
        f"healthmed serving on http://{settings.host}:{settings.port}  "
        f"(API docs: http://{settings.host}:{settings.port}/schema)",
        flush=True,
    )
    if workers > 1 and not settings.redis_url:
        raise SettingsError(
            "--workers > 1 needs HEALTHMED_REDIS_URL: the in-process Redis would be one per "
            "worker, and workers must share one Redis to book slots safely"
        )
    uvicorn.run(
        # Several workers each build their app from the environment in their own process.
        "gateway.app:app_from_env" if workers > 1 else create_app(settings),
        factory=workers > 1,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        # GET /v1/ws is served by the gateway's own websocket protocol (websockets' Sans-I/O
        # parser, no ASGI task per connection): gateway/realtime/edge.py says why.
        ws=RealtimeProtocol,
        # Client messages are tiny (auth, subscribe, ping; bad_message above
        # ws_max_message_bytes, 4 KiB by default): past this size websockets stops reading
        # the message and fails the connection with 1009 instead of buffering it.
        ws_max_size=max(64 * 1024, 4 * settings.ws_max_message_bytes),
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=5,
        # The client address is decided in one place, gateway.deps.client_address, which
        # believes X-Forwarded-For only from HEALTHMED_TRUSTED_PROXIES. uvicorn's own proxy
        # handling (on by default, trusting loopback) would rewrite the address before it and
        # let a forged header dodge the per-address login limit.
        proxy_headers=False,
        workers=workers if workers > 1 else None,
    )


async def _rehydrate(settings: Settings) -> None:
    from engine.runtime import Engine

    engine = await Engine.start(settings, background=False)
    try:
        await engine.rehydrate(force=True)
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
        try:
            _serve(settings, args.workers)
        except SettingsError as exc:
            print(f"healthmed: configuration error: {exc}", file=sys.stderr)
            return 2
    elif args.command == "rehydrate":
        asyncio.run(_rehydrate(settings))
        print("rehydrated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
