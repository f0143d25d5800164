"""Choosing a balancer member inside one worker (the server-wide version is issue #7).

Smooth weighted round-robin (nginx's): weights 3:1 give A A B A, not A A A B.
Sticky sessions, Apache style: a cookie or URL parameter named by `sticky` whose
value ends in `.ROUTE` picks the member with that route while it is usable.
"""

from __future__ import annotations

import re


class BalancerState:
    def __init__(self, balancer):
        self.balancer = balancer
        self.members = [m for m in balancer.members if m.status in ("enabled", "drain")]
        self.standby = [m for m in balancer.members if m.status == "hot-standby"]
        self.current = [0] * len(self.members)
        self.routes = {m.route: m for m in balancer.members if m.route and m.status != "disabled"}
        name = re.escape((balancer.sticky or "").encode())
        self.sticky = re.compile(rb"(?:^|[;&?\s])" + name + rb"=[^;&\s]*\.([^;&\s.]+)") if balancer.sticky else None

    def pick(self, head):
        if self.sticky is not None:
            for source in (head.get(b"cookie"), head.target):
                if source:
                    m = self.sticky.search(source)
                    if m and m.group(1).decode("latin-1") in self.routes:
                        return self.routes[m.group(1).decode("latin-1")].backend
        candidates = [i for i, m in enumerate(self.members) if m.status == "enabled"]
        if not candidates:
            return self.standby[0].backend if self.standby else None
        total = 0
        best = None
        for i in candidates:
            weight = self.members[i].weight
            self.current[i] += weight
            total += weight
            if best is None or self.current[i] > self.current[best]:
                best = i
        self.current[best] -= total
        return self.members[best].backend
