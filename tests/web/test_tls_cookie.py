"""Under TLS the session cookie is Secure (and HttpOnly, SameSite=Strict)."""

from __future__ import annotations

import http.client
import json
import re
import ssl
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from tests.server.test_tls import self_signed, tls_server, tls_server_proc  # noqa: F401 (fixtures)


def _conn(url: str, cert: Path) -> http.client.HTTPSConnection:
    where = urlsplit(url)
    ctx = ssl.create_default_context(cafile=str(cert))
    return http.client.HTTPSConnection(where.hostname or "", where.port, context=ctx, timeout=30)


def test_the_session_cookie_is_secure_under_tls(tls_server: tuple[str, str, Path]) -> None:  # noqa: F811
    url, admin, cert = tls_server
    conn = _conn(url, cert)
    body = json.dumps({"name": "alice", "role": "viewer", "password": "a long password"})
    conn.request("POST", "/v1/users", body, {"Authorization": f"Bearer {admin}"})
    reply = conn.getresponse()
    assert reply.status == 201, reply.read()
    reply.read()
    conn.request("GET", "/ui/login")
    reply = conn.getresponse()
    login_cookie = reply.getheader("set-cookie") or ""
    page = reply.read().decode()
    assert "; Secure" in login_cookie and "HttpOnly" in login_cookie
    nonce = re.search(r'name="csrf" value="([^"]+)"', page)
    assert nonce is not None
    form = urlencode({"csrf": nonce[1], "user": "alice", "password": "a long password"})
    conn.request(
        "POST",
        "/ui/login",
        form,
        {"Cookie": f"sr_login={nonce[1]}", "Content-Type": "application/x-www-form-urlencoded"},
    )
    reply = conn.getresponse()
    reply.read()
    assert reply.status == 303
    cookies = [v for k, v in reply.getheaders() if k.lower() == "set-cookie"]
    session = next(c for c in cookies if c.startswith("sr_session="))
    assert "; Secure" in session and "HttpOnly" in session and "SameSite=strict" in session
    conn.close()
