"""Talking to the admin listener (issue #14): one raw HTTP/1.1 request per connection, and
/metrics parsed with prometheus_client's own parser."""

from __future__ import annotations

import socket

from prometheus_client.parser import text_string_to_metric_families
from support import free_port


def admin_section(**extra) -> dict:
    """The `admin` config section on a free loopback port."""
    return {"listen": f"127.0.0.1:{free_port()}", **extra}


def admin_port(proxy) -> int:
    return int(proxy.config["admin"]["listen"].rsplit(":", 1)[1])


def get(port: int, path: str, timeout: float = 5.0, host: str = "127.0.0.1") -> tuple[int, dict, bytes]:
    """(status, headers, body) of GET `path` on 127.0.0.1:`port`."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: admin.test\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split(" ")[1]), headers, body


def scrape(proxy) -> dict:
    """{(sample name, frozenset of label items): value} of one /metrics scrape."""
    status, headers, body = get(admin_port(proxy), "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain"), (status, headers)
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(body.decode()) for sample in family.samples}


def value(samples: dict, name: str, **labels) -> float:
    """The sum of `name` over the series whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, items), v in samples.items() if n == name and wanted <= items)
