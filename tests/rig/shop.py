"""Start the sample Django shop (``samples/shop``) as a real server.

    with start_shop({"SENTRY_DSN": ingest.dsn}) as shop:
        requests.get(shop.url("/orders/1/"))

By default it runs ``opentelemetry-instrument python manage.py runserver --noreload``
with ``OTEL_SERVICE_NAME=shop`` and a fresh SQLite file; ``server="gunicorn"`` runs
``gunicorn shop.wsgi`` instead (``--workers`` from ``workers``).
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path

from tests.rig.processes import REPO_ROOT, CompletedRun, InstrumentedServer, run_instrumented

__all__ = ["SHOP_DIR", "ShopServer", "run_shop_command", "shop_env", "start_shop"]

SHOP_DIR = REPO_ROOT / "samples" / "shop"

ShopServer = InstrumentedServer


def shop_env(env: Mapping[str, str] | None = None, db_dir: Path | None = None) -> dict[str, str]:
    """Defaults for the shop (service name, fresh DB, no exporters unless asked) + ``env``."""
    directory = db_dir or Path(tempfile.mkdtemp(prefix="shop-"))
    merged = {
        "OTEL_SERVICE_NAME": "shop",
        "SHOP_DB_PATH": str(directory / "shop.sqlite3"),
        "DJANGO_SETTINGS_MODULE": "shop.settings",
        # no OTLP collector runs on 4318: keep the default exporters from retrying there
        "OTEL_METRICS_EXPORTER": "none",
        # deliver within a fraction of a second instead of the batch processor's 5 s
        "OTEL_BSP_SCHEDULE_DELAY": "200",
    }
    merged.update(env or {})
    return merged


def start_shop(
    env: Mapping[str, str] | None = None,
    *,
    server: str = "runserver",
    workers: int = 2,
    instrument: bool = True,
    log_dir: Path | None = None,
    ready_path: str | None = None,
    ready_timeout: float = 30.0,
) -> InstrumentedServer:
    """Start the shop and wait until its port accepts connections (or, with
    ``ready_path="/health/"``, until that answers — which adds a transaction).
    The caller must ``stop()`` it (or use it as a context manager)."""
    if server == "runserver":
        args = ["python", "manage.py", "runserver", "--noreload", "127.0.0.1:{port}"]
    elif server == "gunicorn":
        args = [
            "gunicorn", "--bind", "127.0.0.1:{port}", "--workers", str(workers),
            "--no-control-socket", "shop.wsgi",
        ]
    else:
        raise ValueError(f"unknown server {server!r}: use 'runserver' or 'gunicorn'")
    shop = InstrumentedServer(
        args,
        env=shop_env(env, log_dir),
        cwd=SHOP_DIR,
        ready_path=ready_path,
        ready_timeout=ready_timeout,
        instrument=instrument,
        log_dir=log_dir,
    )
    shop.start()
    return shop


def run_shop_command(
    args: list[str],
    env: Mapping[str, str] | None = None,
    *,
    instrument: bool = True,
    db_dir: Path | None = None,
) -> CompletedRun:
    """Run ``python manage.py <args>`` (e.g. ``["shop_report"]``) to completion; the
    database goes in ``db_dir`` (a new temp dir if not given)."""
    return run_instrumented(
        ["python", "manage.py", *args], shop_env(env, db_dir), cwd=SHOP_DIR, instrument=instrument
    )
