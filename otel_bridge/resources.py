"""Resource detector for Heroku dynos.

Enabled by name through ``OTEL_EXPERIMENTAL_RESOURCE_DETECTORS`` (entry point
``opentelemetry_resource_detector`` ``heroku``). Follows the OpenTelemetry semantic conventions
for Heroku (``cloud.provider=heroku``, ``heroku.*``) and fills the service attributes the
Sentry pipeline reads: ``service.version`` becomes the release, ``service.name`` a tag.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from opentelemetry.sdk.resources import OTELResourceDetector, Resource, ResourceDetector


class HerokuResourceDetector(ResourceDetector):
    """Reads the dyno metadata Heroku sets (``heroku labs:enable runtime-dyno-metadata``).

    ===========================  ==========================================================
    Heroku variable              Resource attributes
    ===========================  ==========================================================
    ``DYNO``                     ``heroku.dyno``, ``heroku.dyno.type``, and
                                 ``service.instance.id`` when ``HEROKU_DYNO_ID`` is unset
    ``HEROKU_DYNO_ID``           ``service.instance.id``
    ``HEROKU_APP_NAME``          ``heroku.app.name``, ``service.name``
    ``HEROKU_APP_ID``            ``heroku.app.id``
    ``HEROKU_RELEASE_VERSION``   ``heroku.release.version``, ``service.version``
    ``HEROKU_SLUG_COMMIT``       ``heroku.release.commit``, ``vcs.ref.head.revision``
    ``HEROKU_RELEASE_CREATED_AT``  ``heroku.release.creation_timestamp``
    ===========================  ==========================================================

    ``service.*`` values that ``OTEL_SERVICE_NAME`` or ``OTEL_RESOURCE_ATTRIBUTES`` set are
    left alone whatever the detector order, so the user's explicit choice always wins.
    Nothing is detected outside Heroku (no ``DYNO``).
    """

    def __init__(self, raise_on_error: bool = False, environ: Mapping[str, str] | None = None):
        super().__init__(raise_on_error=raise_on_error)
        self._environ = environ

    def is_process_dependent(self) -> bool:
        # The SDK re-runs process-dependent detectors after a fork (gunicorn workers) and
        # merges them over the resource; the service_instance detector's fresh UUID would
        # then replace the dyno id unless this detector runs again after it.
        return True

    def detect(self) -> Resource:
        env = os.environ if self._environ is None else self._environ
        dyno = env.get("DYNO", "").strip()
        if not dyno:
            return Resource.get_empty()
        attributes: dict[str, str] = {"cloud.provider": "heroku", "heroku.dyno": dyno}
        attributes["heroku.dyno.type"] = dyno.split(".", 1)[0]
        optional = {
            "HEROKU_APP_NAME": "heroku.app.name",
            "HEROKU_APP_ID": "heroku.app.id",
            "HEROKU_RELEASE_VERSION": "heroku.release.version",
            "HEROKU_SLUG_COMMIT": "heroku.release.commit",
            "HEROKU_RELEASE_CREATED_AT": "heroku.release.creation_timestamp",
        }
        for variable, key in optional.items():
            if env.get(variable, "").strip():
                attributes[key] = env[variable].strip()
        service = {
            "service.name": attributes.get("heroku.app.name"),
            "service.version": attributes.get("heroku.release.version"),
            "service.instance.id": env.get("HEROKU_DYNO_ID", "").strip() or dyno,
            "vcs.ref.head.revision": attributes.get("heroku.release.commit"),
        }
        explicit = _explicit_keys(env)
        for key, value in service.items():
            if value and key not in explicit:
                attributes[key] = value
        return Resource(attributes)


def _explicit_keys(env: Mapping[str, str]) -> set[str]:
    """Keys set by OTEL_RESOURCE_ATTRIBUTES / OTEL_SERVICE_NAME (parsed the SDK's way)."""
    if env is os.environ:
        return set(OTELResourceDetector().detect().attributes)
    keys = set()
    for item in env.get("OTEL_RESOURCE_ATTRIBUTES", "").split(","):
        key, sep, _ = item.partition("=")
        if sep and key.strip():
            keys.add(key.strip())
    if env.get("OTEL_SERVICE_NAME"):
        keys.add("service.name")
    return keys
