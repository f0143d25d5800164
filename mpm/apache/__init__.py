"""`mpmctl import-apache`: an Apache httpd configuration -> an mpm-proxy configuration.

reader (httpd syntax, Include, Define, IfModule -> a directive tree with FILE:LINE)
-> translate (scope, listen, proxypass, rewrite, balancers, server, ignored)
-> emit (YAML with a comment naming each value's source), checked by conf's loader.
"""

from .command import import_apache

__all__ = ["import_apache"]
