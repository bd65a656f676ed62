#!/usr/bin/env python3
"""A Docker registry token server for the registry authentication tests (the Docker token
flow: docker-registry answers 401 `Bearer realm=...`; the client asks this server for a
token with Basic credentials; docker-registry verifies the token's signature and claims).

  registry_token.py PORT TLS_CERT TLS_KEY SIGNER_KEY SIGNER_CERT ISSUER USER PASSWORD LOG

Serves HTTPS on 127.0.0.1:PORT, GET /token?service=S&scope=repository:NAME:ACTIONS. With the
right Basic credentials it answers {"token", "access_token", "expires_in"}: a JWT (ES256,
PyJWT) whose header carries the signer's certificate (x5c) and whose claims grant `pull` on
the repository; otherwise 401. Each request appends a line to LOG: `auth=<ok|bad|none>
scope=<scope>`.
"""
import base64, json, ssl, sys, time, uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization

port, tls_cert, tls_key, signer_key, signer_cert, issuer, user, password, log = sys.argv[1:10]
key = serialization.load_pem_private_key(open(signer_key, "rb").read(), None)
cert_der = x509.load_pem_x509_certificate(open(signer_cert, "rb").read()).public_bytes(
    serialization.Encoding.DER)
want = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        q = parse_qs(urlparse(self.path).query)
        scope = q.get("scope", [""])[0]
        got = self.headers.get("Authorization")
        auth = "none" if got is None else ("ok" if got == want else "bad")
        with open(log, "a") as f:
            f.write(f"auth={auth} scope={scope}\n")
        if auth != "ok":
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="token"')
            self.end_headers()
            return
        access = []
        parts = scope.split(":")
        if len(parts) == 3 and parts[0] == "repository":
            access.append({"type": "repository", "name": parts[1],
                           "actions": [a for a in parts[2].split(",") if a == "pull"]})
        now = int(time.time())
        token = jwt.encode(
            {"iss": issuer, "sub": user, "aud": q.get("service", [""])[0],
             "exp": now + 300, "nbf": now - 10, "iat": now, "jti": uuid.uuid4().hex,
             "access": access},
            key, algorithm="ES256",
            headers={"x5c": [base64.b64encode(cert_der).decode()]})
        body = json.dumps({"token": token, "access_token": token, "expires_in": 300}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


srv = ThreadingHTTPServer(("127.0.0.1", int(port)), Handler)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(tls_cert, tls_key)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
srv.serve_forever()
