"""A one-view Django project driven through Django's ASGI handler (``AsyncClient``), with
otel-bridge configured from the environment as ``opentelemetry-instrument`` would.

    SENTRY_DSN=... python -m tests.services.django_async_errors

Django's async handler reports an unhandled exception from a worker thread where
``sys.exc_info()`` is empty; the error must still reach the ingest, once.
"""

from __future__ import annotations

import asyncio
import sys

import django
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import path


async def async_boom(request: HttpRequest) -> HttpResponse:
    raise ValueError("async boom")


urlpatterns = [path("async-boom/", async_boom)]


def main() -> int:
    settings.configure(
        DEBUG=False,
        ROOT_URLCONF=__name__,
        ALLOWED_HOSTS=["*"],
        MIDDLEWARE=[],
        DATABASES={},
        LOGGING_CONFIG=None,
    )
    from opentelemetry.instrumentation.django import DjangoInstrumentor

    from otel_bridge.configurator import configure

    configure()
    DjangoInstrumentor().instrument()
    django.setup()

    from django.test import AsyncClient

    async def request() -> int:
        client = AsyncClient(raise_request_exception=False)
        response = await client.get("/async-boom/")
        return response.status_code

    status = asyncio.run(request())
    print(f"STATUS {status}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
