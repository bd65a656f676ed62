"""A workload using the PyPI `spiffe` package (py-spiffe), a Workload API client Vouch did not
write: fetch an X.509-SVID and a JWT-SVID from SPIFFE_ENDPOINT_SOCKET, validate both, then call
the database over mTLS with the SVID.

Usage: spiffe_client.py OUT_DIR DB_PORT
Prints one line per step; exits 3 when the Workload API refuses an identity.
"""
import socket
import ssl
import sys

from cryptography.hazmat.primitives import serialization
from spiffe import JwtSvid, TrustDomain, WorkloadApiClient

out, port = sys.argv[1], int(sys.argv[2])
td = TrustDomain("vouch.local")

with WorkloadApiClient() as client:
    try:
        svid = client.fetch_x509_svid()
    except Exception as e:  # the client wraps gRPC errors in its own types
        print(f"X509 REFUSED {type(e).__name__}: {e}")
        sys.exit(3)
    print(f"X509 {svid.spiffe_id} chain={len(svid.cert_chain)}")
    bundles = client.fetch_x509_bundles()
    bundle = bundles.get_bundle_for_trust_domain(td)
    # The leaf must be signed by an authority of the bundle.
    leaf = svid.leaf
    verified = False
    for ca in bundle.x509_authorities:
        try:
            leaf.verify_directly_issued_by(ca)
            verified = True
        except Exception:
            pass
    print(f"CHAIN {'ok' if verified else 'BROKEN'}")

    jwt = client.fetch_jwt_svid(audience={"database"})
    jwt_bundle = client.fetch_jwt_bundles().get_bundle_for_trust_domain(td)
    local = JwtSvid.parse_and_validate(jwt.token, jwt_bundle, {"database"})
    remote = client.validate_jwt_svid(jwt.token, "database")
    print(f"JWT {local.spiffe_id} agent-validated={remote.spiffe_id}")

    svid.save(f"{out}/py.pem", f"{out}/py.key", serialization.Encoding.PEM)
    bundle.save(f"{out}/py-bundle.pem", serialization.Encoding.PEM)

ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False  # SVIDs name a SPIFFE ID (URI SAN), not a host
ctx.verify_mode = ssl.CERT_REQUIRED
ctx.load_verify_locations(f"{out}/py-bundle.pem")
ctx.load_cert_chain(f"{out}/py.pem", f"{out}/py.key")
body = b'{"table":"customers"}'
with socket.create_connection(("127.0.0.1", port), timeout=20) as raw:
    with ctx.wrap_socket(raw) as tls:
        tls.sendall(
            b"POST /query HTTP/1.1\r\nHost: database\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        reply = tls.recv(4096).decode(errors="replace")
print("MTLS " + reply.splitlines()[0])
