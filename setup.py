"""The compiled parts, both optional, both about OpenSSL (why in each file's header):
the TLS session-ticket callback (conf/_tickets.c; where it cannot be built, conf.openssl's
Python callback does the same work) and the check that sees what TLS read-ahead holds, with
the close_notify sent before a TLS close (conf/_readahead.c; where it cannot be built,
listeners do not read ahead and no close_notify is sent)."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("conf._tickets", ["conf/_tickets.c"], optional=True),
                   Extension("conf._readahead", ["conf/_readahead.c"], optional=True)])
