"""Settings of the sample shop: a plain Django project, configured by env vars.

It knows nothing of otel-bridge: ``opentelemetry-instrument`` and the ``OTEL_*`` /
``SENTRY_*`` variables do all the instrumenting.

SHOP_DB_PATH    SQLite file (default: <tmp>/otel-bridge-shop.sqlite3), created with
                its tables and seed data at startup.
SHOP_DEBUG      "1" for Django's DEBUG (default "0").
SHOP_STRUCTLOG  "1" to route structlog through stdlib logging (default "0").
SHOP_LOG_LEVEL  level of the "shop" logger (default "INFO").
"""

import os
import tempfile
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("SHOP_SECRET_KEY", "sample-shop-not-a-secret")
DEBUG = os.environ.get("SHOP_DEBUG", "0") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = ["shop.apps.ShopConfig"]
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
ROOT_URLCONF = "shop.urls"
WSGI_APPLICATION = "shop.wsgi.application"
ASGI_APPLICATION = "shop.asgi.application"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get(
            "SHOP_DB_PATH", os.path.join(tempfile.gettempdir(), "otel-bridge-shop.sqlite3")
        ),
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "shop": {
            "handlers": ["console"],
            "level": os.environ.get("SHOP_LOG_LEVEL", "INFO"),
        },
        # tracebacks of unhandled errors on stderr also with DEBUG off
        "django.request": {"handlers": ["console"], "level": "ERROR", "propagate": False},
    },
}

if os.environ.get("SHOP_STRUCTLOG", "0") == "1":
    import structlog

    structlog.configure(
        processors=[
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.stdlib.render_to_log_kwargs,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
