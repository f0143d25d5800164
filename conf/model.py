"""Typed, immutable configuration objects.

Everything a worker needs is decided here, before any process forks: addresses are
parsed, backend host names are resolved to socket addresses (a worker loop must
never do a DNS lookup), regular expressions are compiled, and `$N` templates are
checked against their regex's groups.  The loader (`conf.loader`) builds these from
YAML; nothing else constructs them except tests, and `Discover.backend`, which makes
the Backend of a balancer member the master found in DNS while it runs.

Names follow the Apache directives they stand for, in the comments.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field

import regex

# Route.upgrade values besides a set of protocol names (Apache mod_proxy_wstunnel's meanings).
UPGRADE_ANY = "ANY"    # tunnel whatever the client asked for
UPGRADE_NONE = "NONE"  # skip the header check and always tunnel

BALANCER_METHODS = ("byrequests", "bytraffic", "bybusyness", "hash")
MEMBER_STATUSES = ("enabled", "disabled", "drain", "hot-standby")
HEALTH_METHODS = ("TCP", "GET", "HEAD", "OPTIONS")
HASH_SOURCES = ("client", "header", "cookie")
DISCOVER_TYPES = ("SRV", "A", "AAAA")
LOG_FORMATS = ("combined", "json")
LOG_LEVELS = ("debug", "info", "warning", "error")
CLIENT_TABLE = 16384     # clients the per-client limits track at once, by default


@dataclass(frozen=True, slots=True)
class CertFiles:
    cert: str   # absolute path
    key: str    # absolute path


@dataclass(frozen=True, slots=True)
class ListenerTLS:
    """SSLEngine on a listener: default certificate, per-name certificates (SNI)."""
    cert: str
    key: str
    sni: Mapping[str, CertFiles] = field(default_factory=dict)
    client_ca: str | None = None
    alpn: tuple[str, ...] = ("http/1.1",)   # offered in preference order: ("h2", "http/1.1") with http2: true


# TLS 1.3 suites in the server's order: AES-128-GCM first, as Mozilla's "intermediate" list,
# BoringSSL and Go order them (OpenSSL's own default puts AES-256-GCM-SHA384 first; see conf.openssl).
TLS13_CIPHERSUITES = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"


@dataclass(frozen=True, slots=True)
class TLSSettings:
    """What every TLS listener shares: the session-ticket keys (nginx's ssl_session_ticket_key)
    and the TLS 1.3 cipher suites (`ssl_conf_command Ciphersuites`)."""
    ticket_key_rotation: float = 43200.0    # seconds a generated key encrypts; 0 = never rotated
    ticket_key_files: tuple[str, ...] = ()  # the operator's keys (48 or 80 bytes each); the first encrypts
    ticket_keys: tuple[bytes, ...] = field(default=(), repr=False)   # their bytes, read when the file loaded
    ciphersuites: str = TLS13_CIPHERSUITES  # TLS 1.3 only; TLS 1.2 keeps Python's cipher list
    session_timeout: float = 300.0          # seconds a session resumes (nginx's ssl_session_timeout)


@dataclass(frozen=True, slots=True)
class Listener:
    """Listen: one address the master binds before forking."""
    host: str            # numeric address as given ("127.0.0.1", "::1", "0.0.0.0")
    port: int
    family: int          # socket.AF_INET or socket.AF_INET6
    tls: ListenerTLS | None = None
    line: int = 0        # line in the config file, for messages
    # Protocols (Apache's `Protocols h2 http/1.1`): "h2" = ALPN offers h2 first (TLS only; the
    # default on TLS listeners), "h2c" = HTTP/2 with prior knowledge beside HTTP/1.1 (plain only),
    # "" = HTTP/1.1 only.
    http2: str = ""
    proxy_protocol: bool = False   # a PROXY protocol v1/v2 header is required first (HAProxy's accept-proxy)

    @property
    def address(self) -> tuple[str, int]:
        """Identity across reloads: a listener with the same address is never re-bound."""
        return (self.host, self.port)

    def __str__(self) -> str:
        host = f"[{self.host}]" if self.family == socket.AF_INET6 else self.host
        return f"{host}:{self.port}"


# Seconds between a worker's scoreboard writes, which are also the heartbeat the master's
# watchdog reads (worker.process); a watchdog shorter than two of them kills healthy workers.
HEARTBEAT_INTERVAL = 0.5
WATCHDOG_MIN = 2 * HEARTBEAT_INTERVAL


@dataclass(frozen=True, slots=True)
class MPM:
    workers: int = 2                   # StartServers
    server_limit: int = 16             # ServerLimit
    threads_per_child: int = 1024      # ThreadsPerChild: concurrent connections per worker loop
    max_request_workers: int = 2048    # MaxRequestWorkers: server-wide connection cap
    graceful_timeout: float = 30.0     # GracefulShutdownTimeout
    max_connections_per_child: int = 0  # MaxConnectionsPerChild (0 = never recycle)
    watchdog: float = 30.0             # seconds without a heartbeat before a worker is replaced (0 = off)


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float = 5.0          # ProxyPass connectiontimeout=
    proxy: float = 300.0          # ProxyTimeout: backend read/write, and tunnel idle
    client_header: float = 20.0   # RequestReadTimeout header=
    keepalive: float = 5.0        # KeepAliveTimeout
    handshake: float = 10.0       # TLS handshake on a listener
    lingering: float = 5.0        # nginx's lingering_timeout: a closed client's quiet time (0 = no lingering)


@dataclass(frozen=True, slots=True)
class RequestRate:
    """nginx's limit_req: a token bucket refilled at `rate` per second, holding `burst`."""
    rate: float                    # requests per second (rate=)
    burst: int                     # requests a client may send at once (burst=)


@dataclass(frozen=True, slots=True)
class PerClient:
    """Per-client limits (nginx's limit_conn / limit_req, HAProxy's stick tables), counted for
    all workers together.  0 = no limit.  On a route they replace the global ones for requests
    on that route, counted apart."""
    connections: int = 0           # open connections (limit_conn); on a route: its requests and tunnels open
    tunnels: int = 0               # open tunnels (WebSocket and other upgrades)
    requests: RequestRate | None = None   # 429 + Retry-After beyond
    table: int = CLIENT_TABLE      # clients tracked at once (the shared table's size; global only)

    @property
    def any(self) -> bool:
        return bool(self.connections or self.tunnels or self.requests)


@dataclass(frozen=True, slots=True)
class Limits:
    request_line: int = 8190       # LimitRequestLine (414 beyond)
    header_field: int = 8190       # LimitRequestFieldSize (431 beyond)
    header_fields: int = 100       # LimitRequestFields (431 beyond)
    request_body: int = 0          # LimitRequestBody, bytes; 0 = unlimited (413 beyond)
    http2_streams: int = 100       # H2MaxSessionStreams: concurrent streams per HTTP/2 connection
    per_client: PerClient | None = None
    trusted_proxies: tuple = ()    # ipaddress networks whose X-Forwarded-For names the client (mod_remoteip)


@dataclass(frozen=True, slots=True)
class Control:
    pidfile: str   # absolute
    socket: str    # absolute


@dataclass(frozen=True, slots=True)
class Log:
    level: str = "info"       # LogLevel
    access: str = "-"         # CustomLog; "-" = stdout, "off" = none, else an absolute path
    error: str = "-"          # ErrorLog; "-" = stderr, else an absolute path
    format: str = "combined"  # combined | json
    error_line: int = field(default=0, compare=False)    # where log.error is, for messages (0: not in the file)


@dataclass(frozen=True, slots=True)
class Admin:
    """The master's admin listener (Apache's mod_status + `Require ip`, HAProxy's stats socket,
    Envoy's admin port): /metrics, /server-status, /healthz, served by the master itself."""
    host: str
    port: int
    family: int
    allow: tuple = ()    # ipaddress networks a client's address must be in (otherwise 403)
    line: int = 0

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def __str__(self) -> str:
        host = f"[{self.host}]" if self.family == socket.AF_INET6 else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class BackendTLS:
    """SSLProxyEngine settings for an https:// or wss:// target."""
    verify: bool = True
    ca: str | None = None            # absolute path; None = system CAs
    server_name: str | None = None   # SNI and host-name check; None = the target's host


@dataclass(frozen=True, slots=True)
class Backend:
    """One origin: the scheme/host/port part of a target URL, resolved up front."""
    scheme: str                  # http | https | ws | wss
    host: str                    # as written (used for Host: and TLS SNI)
    port: int
    sockaddr: tuple              # resolved, ready for socket.connect()
    family: int                  # AF_INET / AF_INET6
    tls: BackendTLS | None = None  # set for https/wss
    proxy_protocol: int = 0      # 1 or 2: a PROXY protocol header goes first (HAProxy's send-proxy[-v2])

    @property
    def host_header(self) -> str:
        """The Host header a request to this backend carries (port omitted when default)."""
        default = 443 if self.scheme in ("https", "wss") else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"

    @property
    def origin(self) -> str:
        """`http://host:port` form, for logs and for `reverse:` rewriting."""
        plain = {"ws": "http", "wss": "https"}.get(self.scheme, self.scheme)
        return f"{plain}://{self.host_header}"

    @property
    def key(self) -> tuple:
        """Identity of the connection pool this backend's connections go back to: what the
        connection is, TLS settings included (its SNI, and the checks its handshake passed)."""
        return (self.sockaddr, self.tls, self.host, self.proxy_protocol)


@dataclass(frozen=True, slots=True)
class Target:
    """Where a route sends a request: a backend plus a base path, or a balancer."""
    url: str                      # as written in the config (`to:`)
    backend: Backend | None       # None when balancer is set
    path: str                     # base path (ProxyPass) or `$N` template (ProxyPassMatch); "/" at least
    balancer: str | None = None   # name, for balancer://NAME/


@dataclass(frozen=True, slots=True)
class HeaderCondition:
    """RewriteCond %{HTTP:Name} regex [NC]."""
    name: bytes                   # lower-case header name, e.g. b"upgrade"
    pattern: regex.Pattern        # the regex module's, from bytes, IGNORECASE; searched (worker.regexlimit)


@dataclass(frozen=True, slots=True)
class Route:
    """ProxyPass / ProxyPassMatch (+ RewriteCond), first match wins in file order."""
    target: Target
    path: bytes | None = None            # prefix (ProxyPass), as bytes, compared to the raw request path
    match: regex.Pattern | None = None   # ProxyPassMatch: the regex module's, from bytes, searched in the raw path
    when: tuple[HeaderCondition, ...] = ()
    upgrade: frozenset[str] | str = frozenset({"websocket"})  # lower-case names, or UPGRADE_ANY / UPGRADE_NONE
    reverse: bool = False                # ProxyPassReverse
    preserve_host: bool = False          # ProxyPreserveHost
    timeout: float | None = None         # per-route ProxyTimeout (and tunnel idle); None = timeouts.proxy
    line: int = 0
    origins: tuple[str, ...] | None = None   # WebSocket Origin allow-list ("https://*.example.com"); None: any
    origins_required: bool = False       # an upgrade without Origin is refused too
    per_client: PerClient | None = None  # replaces limits.per_client for requests on this route

    @property
    def name(self) -> str:
        """How logs name this route: its prefix or pattern."""
        if self.match is not None:
            return self.match.pattern.decode("latin-1")
        return (self.path or b"/").decode("latin-1")


@dataclass(frozen=True, slots=True)
class Member:
    """BalancerMember."""
    url: str
    backend: Backend
    route: str | None = None      # route= (sticky sessions)
    weight: int = 1               # loadfactor=
    status: str = "enabled"       # enabled | disabled | drain | hot-standby
    max_connections: int = 0      # max= ; 0 = unlimited
    line: int = 0


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """mod_proxy_hcheck, run by the master: hcmethod=, hcuri=, hcexpr= (here a regex on the
    status code), hcinterval=, hcpasses=, hcfails=; `timeout` bounds one check."""
    method: str = "TCP"                  # TCP (connect only) | GET | HEAD | OPTIONS
    path: str = "/"                      # hcuri
    expect: re.Pattern | None = None     # searched in the status code ("200"); None = 2xx or 3xx
    interval: float = 5.0                # hcinterval
    passes: int = 1                      # hcpasses: successes in a row to come back
    fails: int = 1                       # hcfails: failures in a row to go down
    timeout: float = 2.0


@dataclass(frozen=True, slots=True)
class HashKey:
    """What lbmethod `hash` hashes: the client address, a request header, or a cookie."""
    source: str = "client"               # client | header | cookie
    name: str | None = None              # header or cookie name


@dataclass(frozen=True, slots=True)
class Discover:
    """Members from DNS, resolved by the master (HAProxy's server-template + resolvers, nginx's
    `server ... resolve`): each answer fills up to `slots` member rows of the balancer."""
    dns: str                         # the name asked, without the trailing dot
    rtype: str = "SRV"               # SRV (port, weight, priority from each record) | A | AAAA
    port: int = 0                    # A/AAAA: the members' port (an SRV record carries its own)
    scheme: str = "http"             # http | https | ws | wss, as a member URL's
    tls: BackendTLS | None = None    # for https/wss
    slots: int = 32                  # member rows kept for what DNS finds (server-template's count)
    interval: float = 5.0            # seconds between lookups; longer when the records' TTL says so ...
    max_ttl: float = 60.0            # ... up to this (nginx's `resolver valid=` overrides the TTL)
    resolvers: tuple[tuple[str, int], ...] = ()   # (address, port); default: /etc/resolv.conf's
    hold: float = 30.0               # seconds a member gone from DNS keeps draining before it is cut
    weight: int = 1                  # A/AAAA members' weight (SRV members: the record's)
    timeout: float = 2.0             # seconds one query waits before the next resolver is asked
    line: int = 0

    @property
    def fixed(self) -> bool:
        """`dns` is an IP address (conf.discover wrote it so): one member, never asked."""
        try:
            ipaddress.ip_address(self.dns)
        except ValueError:
            return False
        return True

    @property
    def source(self) -> tuple:
        """What the members found depend on: a reload that keeps it keeps them."""
        return (self.dns, self.rtype, self.port, self.scheme)

    def url(self, name: str, port: int) -> str:
        """How a found member is named: the SRV target, or the address an A/AAAA record gave."""
        host = f"[{name}]" if ":" in name else name
        return f"{self.scheme}://{host}:{port}"

    def route(self, name: str, port: int) -> str:
        """A sticky route every instance derives alike from the same record (no names leak to cookies)."""
        return "d" + hashlib.blake2b(f"{name}:{port}".encode(), digest_size=5).hexdigest()

    def backend(self, name: str, address: str, port: int) -> Backend:
        """The Backend of a found member; `Host:` and SNI are the SRV target, or the name asked."""
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sockaddr = (address, port, 0, 0) if family == socket.AF_INET6 else (address, port)
        host = name if self.rtype == "SRV" else self.dns
        return Backend(self.scheme, host, port, sockaddr, family, self.tls)


@dataclass(frozen=True, slots=True)
class Balancer:
    """<Proxy balancer://NAME>."""
    name: str
    members: tuple[Member, ...]
    method: str = "byrequests"    # lbmethod=
    sticky: str | None = None     # stickysession= (the cookie / URL parameter name)
    line: int = 0
    sticky_insert: bool = False   # the proxy sets the sticky cookie itself (HAProxy's `cookie NAME insert`)
    sticky_param: str | None = None   # stickysession=COOKIE|PARAM: the URL parameter's name, when not the cookie's
    nofailover: bool = False      # nofailover=On: a sticky client whose member is down gets 503
    failonstatus: tuple[int, ...] = ()   # failonstatus=: these statuses put the member in error state
    retry: float = 60.0           # retry=: seconds a member stays in error state
    health: HealthCheck | None = None    # mod_proxy_hcheck; None = passive detection only
    hash_key: HashKey = field(default_factory=HashKey)   # for method: hash
    discover: Discover | None = None     # members from DNS besides (or instead of) `members`


@dataclass(frozen=True, slots=True)
class Config:
    file: str                            # absolute path of the YAML file ("<default>" for the embedded one)
    listeners: tuple[Listener, ...]
    mpm: MPM
    timeouts: Timeouts
    limits: Limits
    control: Control
    log: Log
    routes: tuple[Route, ...]
    balancers: Mapping[str, Balancer] = field(default_factory=dict)
    admin: Admin | None = None           # off when absent
    tls: TLSSettings = field(default_factory=TLSSettings)

    @property
    def client_table_size(self) -> int:
        """Entries of the shared client table, or 0 when no per-client limit is set.  A route's
        `per_client` alone needs the table too (review 2026-12-03-rewrite #3: without it, the
        route's limit was silently never applied, as nginx's limit_req in one location is)."""
        per = self.limits.per_client
        if (per is not None and per.any) or any(r.per_client is not None and r.per_client.any for r in self.routes):
            return per.table if per is not None else CLIENT_TABLE
        return 0
