"""Upgraded connections: two endpoints spliced both ways (no imports from our other packages)."""

from tunnel.tunnel import Tunnel

__all__ = ["Tunnel"]
