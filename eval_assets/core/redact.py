"""Keeping configured secrets out of everything that is read back: logs, errors, metadata, reports.

A configured URL can carry a credential in three places: its userinfo (``https://user:token@host``,
as MLflow and database URIs allow), its query (``?token=...``) and, for webhooks, its path (Slack,
Discord and Teams put the token there). What is shown of a URL is only what locates the service:
scheme, host and port, and the path when the caller knows the path holds no secret.

Exception messages are not ours to word: urllib, requests, MLflow and botocore quote the URL, or
parts of it, as they see fit. `scrub` removes the known secret parts from such text and any
userinfo of any URL in it, so a message can be kept without keeping the secret.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, unquote, urlsplit

REDACTED = "***"
# Shorter pieces (a path segment "v1", a user name "ml") are not worth hiding, and scrubbing them
# out of every message would garble the message instead.
MIN_SECRET_LENGTH = 6
# Any URL's userinfo in free text: `scheme://user:password@` up to the `@`.
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^/\s@'\"<>]+@")


def redact_url(url: str, *, keep_path: bool = True) -> str:
    """`url` as it may be shown: userinfo and query values replaced by ``***``, the fragment
    dropped, and the path too unless `keep_path`. A URL with nothing to hide comes back as is."""
    parts = urlsplit(url)
    hides_path = not keep_path and parts.path not in ("", "/")
    if not parts.scheme or (not parts.netloc and "@" in url):
        # Not a URL this can take apart ("host:port/path", "user:token@host"): shown only when
        # it can hold no secret ("databricks").
        return url if keep_path and "@" not in url and "?" not in url else REDACTED
    if not ("@" in parts.netloc or parts.query or parts.fragment or hides_path):
        return url
    _, at, hostport = parts.netloc.rpartition("@")
    netloc = f"{REDACTED}@{hostport}" if at else hostport
    path = f"/{REDACTED}" if hides_path else parts.path
    # Names are kept (they say what was hidden); a bare value has no name and is hidden whole.
    query = "&".join(
        f"{pair.partition('=')[0]}={REDACTED}" if "=" in pair else REDACTED
        for pair in re.split("[&;]", parts.query)
        if pair
    )
    slashes = "//" if url[len(parts.scheme) + 1 :].startswith("//") else ""
    shown = f"{parts.scheme}:{slashes}{netloc}{path}"
    return f"{shown}?{query}" if query else shown


def link_url(url: str) -> str:
    """`url` without userinfo, query or fragment: a base to build links on that a browser can
    follow and that carries no credential."""
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return url.split("?", 1)[0].split("#", 1)[0]
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"


def url_secrets(url: str, *, path_is_secret: bool = False) -> list[str]:
    """The pieces of `url` that `redact_url` hides, raw and percent-decoded, to `scrub` them
    out of text that quotes them (an exception message quoting the URL or a part of it)."""
    parts = urlsplit(url)
    pieces = []
    userinfo, at, _ = parts.netloc.rpartition("@")
    if at:
        user, _, password = userinfo.partition(":")
        pieces += [userinfo, user, password]
    if parts.query:
        pieces.append(parts.query)
        pieces += [value for _, value in parse_qsl(parts.query, keep_blank_values=True)]
        pieces += parts.query.replace(";", "&").split("&")
    if parts.fragment:
        pieces.append(parts.fragment)
    if path_is_secret and parts.path not in ("", "/"):
        pieces.append(parts.path)
        pieces += parts.path.split("/")
    if pieces:
        pieces.append(url)
    found = {p for piece in pieces for p in (piece, unquote(piece)) if len(p) >= MIN_SECRET_LENGTH}
    return sorted(found, key=len, reverse=True)


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with every secret replaced by ``***`` and the userinfo of any URL in it hidden."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return _USERINFO.sub(lambda m: f"{m['scheme']}{REDACTED}@", text)
