"""The README's first command: the proxy in front of the bundled demo backend."""
