"""A one-file Django service that puts what a request carries into every place a secret can
leak from: span attributes (headers, query, SQL), logs (stdlib and structlog keys), breadcrumbs,
the user, local variables and an exception message. Used by tests/test_scrub_e2e.py.

    cd tests/services && DJANGO_SETTINGS_MODULE=scrub_app \
        opentelemetry-instrument python scrub_app.py runserver --noreload 127.0.0.1:8000

``POST /login/`` with form fields ``password``, ``card_token``, ``session_note`` and
``new_session``; ``?fail=1`` makes it raise. The user's e-mail is :data:`USER_EMAIL`.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile

import structlog
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

DEBUG = False
SECRET_KEY = "scrub-e2e-not-a-secret"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "scrub_app"
INSTALLED_APPS: list[str] = []
MIDDLEWARE: list[str] = []
USE_TZ = True
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("SCRUB_APP_DB", os.path.join(tempfile.gettempdir(), "scrub_app.db")),
    }
}
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "INFO"},
}

# Personal data, not a secret: it must stay out unless SENTRY_SEND_DEFAULT_PII=true.
USER_EMAIL = "CANARYEMAIL.ada@example.com"

_log = logging.getLogger("scrub_app")


def _structlog() -> structlog.typing.FilteringBoundLogger:
    # The bridge's processors, as docs/logs.md shows; JSON to stderr like a real service.
    from otel_bridge.logs import bridge_processors

    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            *bridge_processors(),
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )
    return structlog.get_logger("scrub_app")  # type: ignore[no-any-return]


@csrf_exempt
def login(request: HttpRequest) -> HttpResponse:
    from otel_bridge import context

    password = request.POST.get("password", "")
    session_note = request.POST.get("session_note", "")
    context.set_user(id="42", email=USER_EMAIL)
    card_token = request.POST.get("card_token")
    context.add_breadcrumb("login form", category="auth", data={"card_token": card_token})
    _log.warning("login attempt", extra={"session_key": session_note})
    _structlog().warning("login attempt", api_token=session_note, user_id=42)
    with connection.cursor() as cursor:
        # a literal in SQL, exactly what db.query.text scrubbing exists for
        cursor.execute("SELECT '" + password.replace("'", "''") + "' AS pw")
        cursor.fetchall()
    if request.GET.get("fail"):
        raise ValueError(f"login failed for password={password}")
    response = HttpResponse("ok")
    response.set_cookie("sessionid", request.POST.get("new_session", ""))
    response["X-Auth-Token"] = request.POST.get("new_session", "")
    return response


def health(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


urlpatterns = [path("login/", login), path("health/", health)]


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scrub_app")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
