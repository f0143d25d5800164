"""The compiled parts, both optional, both about OpenSSL (why in each file's header):
the TLS session-ticket callback (conf/_tickets.c; where it cannot be built, conf.openssl's
Python callback does the same work) and the check that sees what TLS read-ahead holds
(conf/_readahead.c; where it cannot be built, listeners do not read ahead)."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("conf._tickets", ["conf/_tickets.c"], optional=True),
                   Extension("conf._readahead", ["conf/_readahead.c"], optional=True)])
