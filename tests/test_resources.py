"""The Heroku resource detector, alone and merged the way the SDK merges detectors."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from opentelemetry.sdk.resources import (
    OTELResourceDetector,
    Resource,
    ServiceInstanceIdResourceDetector,
    get_aggregated_resources,
)

from otel_bridge.resources import HerokuResourceDetector

HEROKU = {
    "DYNO": "web.2",
    "HEROKU_APP_NAME": "forecast",
    "HEROKU_APP_ID": "9daa2797-e49b-4624-932f-ec3f9688e3da",
    "HEROKU_RELEASE_VERSION": "v42",
    "HEROKU_SLUG_COMMIT": "2c3a0b24069af49b3de35b8e8c26765c1dba9ff0",
    "HEROKU_RELEASE_CREATED_AT": "2026-11-22T17:00:00Z",
}


def test_detects_heroku_metadata() -> None:
    attributes = HerokuResourceDetector(environ=HEROKU).detect().attributes
    assert dict(attributes) == {
        "cloud.provider": "heroku",
        "heroku.dyno": "web.2",
        "heroku.dyno.type": "web",
        "heroku.app.name": "forecast",
        "heroku.app.id": "9daa2797-e49b-4624-932f-ec3f9688e3da",
        "heroku.release.version": "v42",
        "heroku.release.commit": "2c3a0b24069af49b3de35b8e8c26765c1dba9ff0",
        "heroku.release.creation_timestamp": "2026-11-22T17:00:00Z",
        "service.name": "forecast",
        "service.version": "v42",
        "service.instance.id": "web.2",
        "vcs.ref.head.revision": "2c3a0b24069af49b3de35b8e8c26765c1dba9ff0",
    }


def test_dyno_id_wins_for_instance_id() -> None:
    env = {**HEROKU, "HEROKU_DYNO_ID": "1vac4117-c29f-4312-521e-ba4d8638c1ac"}
    attributes = HerokuResourceDetector(environ=env).detect().attributes
    assert attributes["service.instance.id"] == "1vac4117-c29f-4312-521e-ba4d8638c1ac"


def test_nothing_outside_heroku() -> None:
    assert dict(HerokuResourceDetector(environ={"HEROKU_APP_NAME": "x"}).detect().attributes) == {}


def test_explicit_otel_settings_win_in_any_order() -> None:
    env = {
        **HEROKU,
        "OTEL_SERVICE_NAME": "api",
        "OTEL_RESOURCE_ATTRIBUTES": "service.version=1.2.3,team=core",
    }
    attributes = HerokuResourceDetector(environ=env).detect().attributes
    assert "service.name" not in attributes
    assert "service.version" not in attributes
    assert attributes["heroku.app.name"] == "forecast"
    assert attributes["service.instance.id"] == "web.2"


def test_merge_order_as_the_sdk_does_it(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in HEROKU.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "api")
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    # the SDK's order: service_instance first, configured detectors, otel last; and after a
    # fork the process-dependent ones are merged again on top
    for order in (
        [ServiceInstanceIdResourceDetector(), HerokuResourceDetector(), OTELResourceDetector()],
        [ServiceInstanceIdResourceDetector(), OTELResourceDetector(), HerokuResourceDetector()],
    ):
        resource = get_aggregated_resources(order, Resource.get_empty())
        assert resource.attributes["service.name"] == "api"
        assert resource.attributes["service.version"] == "v42"
        assert resource.attributes["service.instance.id"] == "web.2"
    assert HerokuResourceDetector().is_process_dependent()


def test_selected_by_name_through_the_sdk(tmp_path) -> None:
    # The same entry point pyproject.toml declares, given to the child through a throw-away
    # dist-info so the SDK's own name lookup is exercised whatever is installed.
    dist = tmp_path / "heroku_detector_probe-0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: heroku-detector-probe\nVersion: 0\n"
    )
    (dist / "entry_points.txt").write_text(
        "[opentelemetry_resource_detector]\nheroku = otel_bridge.resources:HerokuResourceDetector\n"
    )
    code = (
        "from opentelemetry.sdk.resources import Resource;"
        "a = Resource.create().attributes;"
        "print(a['service.name'], a['service.instance.id'], a['cloud.provider'], a['os.type'])"
    )
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(tmp_path),
        **HEROKU,
        "OTEL_EXPERIMENTAL_RESOURCE_DETECTORS": "process,os,host,heroku",
    }
    output = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert output.split() == ["forecast", "web.2", "heroku", "linux"]


def test_the_release_sentry_sdk_would_guess_is_every_events(
    monkeypatch: pytest.MonkeyPatch, tmp_path: os.PathLike[str]
) -> None:
    # Left to sentry-sdk, errors and sessions got the guessed release (git, SOURCE_VERSION,
    # ...) and the transactions of the same requests none.
    from otel_bridge.config import load_config
    from otel_bridge.configurator import with_guessed_release

    monkeypatch.chdir(tmp_path)  # not a git checkout: the guess falls to the variables
    monkeypatch.setenv("SOURCE_VERSION", "3f2c1ab")
    monkeypatch.delenv("SENTRY_RELEASE", raising=False)
    dsn = {"SENTRY_DSN": "http://key@127.0.0.1:9/1"}
    guessed = with_guessed_release(load_config(dsn), Resource.create({}))
    assert guessed.release == "3f2c1ab"
    versioned = Resource.create({"service.version": "2.4.0"})
    assert with_guessed_release(load_config(dsn), versioned).release is None  # the resource's
    explicit = load_config({**dsn, "SENTRY_RELEASE": "shop@9"})
    assert with_guessed_release(explicit, Resource.create({})).release == "shop@9"
    assert with_guessed_release(load_config({}), Resource.create({})).release is None
