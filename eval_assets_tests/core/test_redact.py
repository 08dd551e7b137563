"""The one helper that decides what of a configured URL may be shown.

Every place that shows a tracking URI, a webhook or an artifact location goes through it, so what
it hides (userinfo, query values, a webhook's path) and what it keeps (enough to know which
service failed, and URLs with nothing to hide unchanged, byte for byte) is specified here once.
"""

from __future__ import annotations

import pytest

from eval_assets.core.redact import link_url, redact_url, scrub, url_secrets

TOKEN = "tok-8c1f2e9a"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"https://bob:{TOKEN}@mlflow.example.com/", "https://***@mlflow.example.com/"),
        (f"https://{TOKEN}@mlflow.example.com", "https://***@mlflow.example.com"),
        (
            f"http://127.0.0.1:5000/mlflow?token={TOKEN}&org=7",
            "http://127.0.0.1:5000/mlflow?token=***&org=***",
        ),
        (f"postgresql://ml:{TOKEN}@db:5432/mlflow", "postgresql://***@db:5432/mlflow"),
        (f"https://host/path#{TOKEN}", "https://host/path"),
        (f"https://host/?{TOKEN}", "https://host/?***"),
    ],
)
def test_credentials_in_a_url_are_replaced_and_the_service_stays_named(url: str, shown: str):
    assert redact_url(url) == shown
    assert TOKEN not in redact_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:5000",
        "https://mlflow.example.com/",
        "sqlite:////var/lib/eval/mlflow.db",
        "file:///tmp/mlruns",
        "databricks",
        "s3://bucket/models/fraud/1",
        "mlflow-artifacts:/3/abc/artifacts/model",
    ],
)
def test_a_url_with_nothing_to_hide_is_shown_unchanged(url: str):
    assert redact_url(url) == url
    assert url_secrets(url) == []


def test_a_webhook_shows_only_scheme_host_and_port():
    url = f"https://hooks.example.com/services/T01/B02/{TOKEN}?k={TOKEN}"

    assert redact_url(url, keep_path=False) == "https://hooks.example.com/***?k=***"
    assert redact_url("http://127.0.0.1:9", keep_path=False) == "http://127.0.0.1:9"


def test_a_link_base_keeps_no_credential_and_still_leads_to_the_service():
    assert link_url(f"https://bob:{TOKEN}@mlflow.example.com:8443/ml?token={TOKEN}#x") == (
        "https://mlflow.example.com:8443/ml"
    )
    assert link_url("http://127.0.0.1:5000") == "http://127.0.0.1:5000"


def test_scrub_removes_each_secret_piece_a_message_may_quote():
    url = f"http://user:{TOKEN}@127.0.0.1:9/hooks/{TOKEN}x?sig={TOKEN}y%21"
    secrets = url_secrets(url, path_is_secret=True)
    message = (
        f"nonnumeric port: '{TOKEN}@127.0.0.1:9'; url /hooks/{TOKEN}x?sig={TOKEN}y%21; "
        f"decoded {TOKEN}y!"
    )

    scrubbed = scrub(message, secrets)

    assert TOKEN not in scrubbed, scrubbed
    assert "nonnumeric port" in scrubbed  # the reason survives


def test_scrub_hides_the_userinfo_of_any_url_in_a_message_without_being_told_the_secret():
    message = f"API request to https://bob:{TOKEN}@mlflow.example.com/api/2.0/x failed"

    assert scrub(message) == "API request to https://***@mlflow.example.com/api/2.0/x failed"


def test_short_common_words_are_not_treated_as_secrets():
    # "hooks" and "v1" are path segments, not tokens: scrubbing them would garble every message.
    secrets = url_secrets(f"https://h/hooks/v1/{TOKEN}", path_is_secret=True)

    assert "hooks" not in secrets and "v1" not in secrets
    assert TOKEN in secrets


def test_what_is_not_a_url_is_hidden_whole_unless_it_cannot_hold_a_secret():
    assert redact_url(f"127.0.0.1:9/hooks/{TOKEN}", keep_path=False) == "***"
    assert redact_url(f"mlops:{TOKEN}@mlflow.example.com") == "***"
    assert redact_url("databricks") == "databricks"
