"""A throw-away self-signed certificate for 127.0.0.1 (S7: TLS terminated at every peer)."""

from __future__ import annotations

import datetime
import os
import subprocess

from bench import tools


def make_cert(workdir: str) -> tuple[str, str, str]:
    """Write cert.pem, key.pem and combined.pem (cert then key, for HAProxy); return their paths."""
    cert, key, combined = (os.path.join(workdir, n) for n in ("cert.pem", "key.pem", "combined.pem"))
    if tools.which("openssl"):
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                        "-addext", "basicConstraints=critical,CA:FALSE",
                        "-keyout", key, "-out", cert], check=True, capture_output=True)
    else:
        _make_with_cryptography(cert, key)
    os.chmod(key, 0o600)
    with open(combined, "wb") as out:
        for path in (cert, key):
            with open(path, "rb") as f:
                out.write(f.read())
    os.chmod(combined, 0o600)
    return cert, key, combined


def _make_with_cryptography(cert_path: str, key_path: str) -> None:
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                  serialization.NoEncryption()))
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
