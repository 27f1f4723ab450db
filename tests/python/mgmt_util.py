"""A tiny client for the management HTTP API (urllib only) and helpers.

    api = Mgmt(broker.mgmt_url, "guest", "guest")
    status, headers, body = api.get("/api/overview")

Each call returns (status, headers, body): status an int (also for 4xx/5xx
answers, which urllib raises), headers an email.message.Message (case-
insensitive get), body the parsed JSON, or the text when it is not JSON,
or None when empty. Paths are given already %-encoded; q() encodes one
path segment ("/" -> "%2F")."""

import base64
import json
import time
import urllib.error
import urllib.parse
import urllib.request

HTTP_TIMEOUT_S = 30


def q(segment):
    """One %-encoded path segment: q("/") == "%2F"."""
    return urllib.parse.quote(segment, safe="")


class Mgmt:
    def __init__(self, base_url, username=None, password=None):
        self.base_url = base_url.rstrip("/")
        self.username = username
        self.password = password

    def as_user(self, username, password):
        return Mgmt(self.base_url, username, password)

    def request(self, method, path, body=None, headers=None, auth=True,
                raw_body=None):
        url = self.base_url + path
        hdrs = {}
        data = None
        if raw_body is not None:
            data = raw_body if isinstance(raw_body, bytes) else raw_body.encode()
            hdrs["Content-Type"] = "application/json"
        elif body is not None:
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        elif method in ("PUT", "POST"):
            data = b""
        if auth and self.username is not None:
            token = base64.b64encode(
                ("%s:%s" % (self.username, self.password)).encode()).decode()
            hdrs["Authorization"] = "Basic " + token
        if headers:
            hdrs.update(headers)
        req = urllib.request.Request(url, data=data, headers=hdrs, method=method)
        try:
            with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT_S) as resp:
                status, rhdrs, raw = resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as e:
            status, rhdrs, raw = e.code, e.headers, e.read()
        return status, rhdrs, _parse(raw)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def put(self, path, body=None, **kw):
        return self.request("PUT", path, body=body, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body=body, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    def ok(self, method, path, body=None, expect=(200, 201, 204), **kw):
        """request() asserting a status in `expect`; returns the body."""
        status, _, rbody = self.request(method, path, body=body, **kw)
        assert status in expect, "%s %s -> %d %r" % (method, path, status, rbody)
        return rbody


def _parse(raw):
    if not raw:
        return None
    text = raw.decode("utf-8", errors="replace")
    try:
        return json.loads(text)
    except ValueError:
        return text


def wait_for(predicate, timeout=15.0, interval=0.25, what="condition"):
    """Call predicate() until it returns something truthy and return that;
    fail after `timeout` s with the last value seen. (RabbitMQ's management
    statistics are emitted every 5 s, so counts lag behind AMQP.)"""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = predicate()
        if last:
            return last
        assert time.monotonic() < deadline, "%s not reached within %.0f s (last: %r)" % (
            what, timeout, last)
        time.sleep(interval)


def dig(obj, dotted, default=None):
    """dig({"a": {"b": 1}}, "a.b") == 1."""
    for part in dotted.split("."):
        if not isinstance(obj, dict) or part not in obj:
            return default
        obj = obj[part]
    return obj
