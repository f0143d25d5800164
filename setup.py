"""The one compiled part: the TLS session-ticket callback (conf/_tickets.c, why in its header).
Optional: where it cannot be built, conf.openssl's Python callback does the same work."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("conf._tickets", ["conf/_tickets.c"], optional=True)])
