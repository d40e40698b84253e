"""A dashboard user logged in over plain HTTP (no browser): the cookie jar and the CSRF token."""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from http.cookiejar import CookieJar
from urllib.parse import urlencode


class HttpSession:
    def __init__(self, url: str, user: str, password: str) -> None:
        self.url = url
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
        form = self.opener.open(url + "/ui/login").read().decode()
        body = {"user": user, "password": password, "csrf": csrf_of(form)}
        home = self.opener.open(url + "/ui/login", urlencode(body).encode()).read().decode()
        self.csrf = csrf_of(home)

    def post(self, path: str, fields: dict[str, str], csrf: str | None = None) -> tuple[int, str]:
        """POST a form with the session's CSRF token (or ``csrf``: "" sends none)."""
        token = self.csrf if csrf is None else csrf
        sent = {**fields, "csrf": token} if token else fields
        try:
            with self.opener.open(self.url + path, urlencode(sent).encode(), timeout=60) as r:
                return int(r.status), r.read().decode()
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read().decode()


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found is not None, page[:500]
    return found.group(1)
