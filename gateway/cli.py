"""``healthmed`` command: ``serve`` runs the gateway, ``rebuild`` rebuilds Redis from the store
on demand, ``seed`` fills a development or test deployment (refused in production)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from engine.config import Settings, SettingsError, load_settings

KEEP_ALIVE_SECONDS = 75
"""How long an idle kept-alive HTTP connection stays open (see ``_serve``)."""


def _serve(settings: Settings, workers: int) -> None:
    import uvicorn

    from gateway.app import create_app
    from gateway.drain import GRACEFUL_SECONDS, DrainingServer
    from gateway.http_limits import concurrency_limit, configure
    from gateway.logs import RequestLog
    from gateway.realtime import RealtimeProtocol
    from gateway.realtime.messages import max_frame_bytes

    logging.getLogger("healthmed.gateway").info(
        "healthmed serving on http://%s:%d  (API docs: http://%s:%d/schema)",
        settings.host,
        settings.port,
        settings.host,
        settings.port,
    )
    if workers > 1 and not settings.redis_url:
        raise SettingsError(
            "--workers > 1 needs HEALTHMED_REDIS_URL: the in-process Redis would be one per "
            "worker, and workers must share one Redis to book slots safely"
        )
    options = {
        "host": settings.host,
        "port": settings.port,
        "loop": "uvloop",
        # httptools plus a cap on the request head's size and on the time to read it
        # (gateway/http_limits.py); past the file limit, 503 at once rather than EMFILE.
        "http": configure(settings),
        "limit_concurrency": concurrency_limit(),
        # GET /v1/ws is served by the gateway's own websocket protocol (websockets' Sans-I/O
        # parser, no ASGI task per connection): gateway/realtime/edge.py says why.
        "ws": RealtimeProtocol,
        # Past this size websockets stops reading a message and fails the connection with
        # 1009 instead of buffering it (gateway/realtime/messages.py).
        "ws_max_size": max_frame_bytes(settings),
        "log_level": "warning",
        # Logging is configured once, by gateway.logs.configure_logging: uvicorn's own records
        # go through the same handler and format (JSON lines in production).
        "log_config": None,
        "access_log": False,  # gateway.logs.RequestLog writes the access line
        "timeout_graceful_shutdown": int(GRACEFUL_SECONDS),
        # An idle kept-alive connection stays open this long (uvicorn's default is 5 s). The
        # client side of a close is a race: a request sent as the server closes gets a reset,
        # and a client may not resend a POST. Longer than the load balancer's idle timeout
        # (ALB: 60 s) so that the balancer, which retries safely, closes first; under the
        # locust mix 5 s turned patients' cancels and uploads after a pause into failures.
        "timeout_keep_alive": KEEP_ALIVE_SECONDS,
        # With --workers, uvicorn kills a worker that does not answer its supervisor's ping
        # within this many seconds (default 5) and starts another. On a busy machine a worker's
        # start-up (imports, app build) or a burst of load outlasts 5 s: workers were killed in
        # a loop, dropping every connection they held. A hung worker is still replaced.
        "timeout_worker_healthcheck": 60,
        # The client address is decided in one place, gateway.deps.client_address, which
        # believes X-Forwarded-For only from HEALTHMED_TRUSTED_PROXIES. uvicorn's own proxy
        # handling (on by default, trusting loopback) would rewrite the address before it and
        # let a forged header dodge the per-address login limit.
        "proxy_headers": False,
    }
    if workers > 1:
        # Several workers each build their app from the environment in their own process;
        # uvicorn's supervisor owns the signals there, so there is no drain (gateway/drain.py).
        uvicorn.run("gateway.app:app_from_env", factory=True, workers=workers, **options)  # type: ignore[arg-type]
        return
    app = create_app(settings)
    config = uvicorn.Config(RequestLog(app), **options)  # type: ignore[arg-type]
    DrainingServer(config, app.state.drain, settings.drain_seconds).run()


async def _rebuild(settings: Settings) -> None:
    from engine.runtime import Engine

    engine = await Engine.start(settings, background=False)
    try:
        await engine.rebuild_redis(force=True)
    finally:
        await engine.close()


async def _seed(settings: Settings, args: argparse.Namespace) -> None:
    from engine import seed
    from engine.runtime import Engine

    seed.refuse_production(settings.env)
    logging.getLogger("healthmed").setLevel(logging.WARNING)  # not a line per account
    engine = await Engine.start(settings, background=False)
    try:
        if args.demo:
            cast = await seed.demo(engine)
            print("demo cast " + ("created" if cast.created else "already there"))
            for login in cast.logins:
                detail = f" ({login.detail})" if login.detail else ""
                print(f"  {login.role:8} {login.login:34} {login.name}{detail}")
            print(f"  password for all: {cast.password}")
        if args.doctors or args.patients:
            out = args.out or settings.data_dir / "seed-credentials.json"
            creds = await seed.seed(
                engine,
                doctors=args.doctors,
                patients=args.patients,
                days=args.days,
                past=args.past,
            )
            seed.write_credentials(out, creds)
            print(
                f"seeded {len(creds.doctors)} doctors ({creds.slots} slots) and "
                f"{len(creds.patients)} patients; credentials in {out}"
            )
    finally:
        await engine.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="healthmed", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the HTTP and websocket API")
    serve.add_argument("--workers", type=int, default=1)
    sub.add_parser("rebuild", aliases=["rehydrate"], help="rebuild Redis from the durable store")
    seed = sub.add_parser("seed", help="create seed accounts and slots (not in production)")
    seed.add_argument("--doctors", type=int, default=0, help="doctors, with slots")
    seed.add_argument("--patients", type=int, default=0)
    seed.add_argument("--days", type=int, default=14, help="days of slots per doctor")
    seed.add_argument("--past", type=int, default=0, help="patients with an ended appointment")
    seed.add_argument("--out", type=Path, help="credentials file (default: data dir)")
    seed.add_argument("--demo", action="store_true", help="the small demo cast, printed")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"healthmed: configuration error: {exc}", file=sys.stderr)
        return 2
    from gateway.logs import configure_logging

    configure_logging(settings)
    if args.command == "serve":
        try:
            _serve(settings, args.workers)
        except SettingsError as exc:
            print(f"healthmed: configuration error: {exc}", file=sys.stderr)
            return 2
    elif args.command in ("rebuild", "rehydrate"):
        asyncio.run(_rebuild(settings))
        print("rebuilt")
    elif args.command == "seed":
        if settings.production:
            print("healthmed: seed refuses to run with HEALTHMED_ENV=production", file=sys.stderr)
            return 2
        if not (args.demo or args.doctors or args.patients):
            parser.error("seed needs --demo or --doctors/--patients")
        asyncio.run(_seed(settings, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
