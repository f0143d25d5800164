"""Finding 4: X-SSL-Client-S-DN orders a multi-valued RDN the other way round from
`openssl x509 -nameopt RFC2253` (and so from mod_ssl and nginx, which print with the same flags).

OpenSSL's RFC 2253 output (XN_FLAG_DN_REV) reverses the *entries* of the name, so the members of a
multi-valued RDN come out reversed too ("UID=42+CN=alice"); worker/clientcert.rfc4514 reverses
the RDNs but keeps each RDN's members in certificate order ("CN=alice+UID=42").  README: "in the
same format ... byte for byte what Apache sends".  A backend that compares the DN string with
what its Apache/nginx-fronted deployment stored (an allow-list, a user table) fails to match.

PASS when the field equals openssl's RFC2253 subject; FAIL otherwise."""
import datetime
import os
import subprocess
import time

from _common import mtls_proxy, read_response, ssl, tls_connect
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def multivalued_client_cert(ca, directory):
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([
        x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example")]),
        x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COMMON_NAME, "alice"),
                                        x509.NameAttribute(NameOID.USER_ID, "42")])])
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem.bytes())
    ca_key = serialization.load_pem_private_key(ca.private_key_pem.bytes(), None)
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=1))
            .sign(ca_key, hashes.SHA256()))
    cert_path, key_path = os.path.join(directory, "mv.pem"), os.path.join(directory, "mv.key")
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return cert_path, key_path


with mtls_proxy() as (proxy, backend, context, ca, directory, site):
    cert_path, key_path = multivalued_client_cert(ca, directory)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    client_context.load_cert_chain(cert_path, key_path)
    sock = tls_connect(proxy.port, client_context)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    read_response(sock)
    sock.close()
    time.sleep(0.3)
    ours = backend.header(0, "X-SSL-Client-S-DN")
    theirs = subprocess.run(["openssl", "x509", "-in", cert_path, "-noout", "-subject", "-nameopt", "RFC2253"],
                            capture_output=True, text=True, timeout=10, check=True).stdout.strip().split("=", 1)[1]
    print("X-SSL-Client-S-DN:", ours)
    print("openssl RFC2253  :", theirs)
    print("PASS" if ours == [theirs] else "FAIL")
