"""Certificates for the TLS tests, made with the openssl command: a private
CA and leaf certificates (RSA or ECDSA P-256) signed by it, each with its
names in subjectAltName. Files go to a directory the caller removes.
Also the HTTPS client helpers the TLS tests share (an explicit SNI, the
certificate a handshake presents, one request on a new connection)."""
import http.client
import os
import socket
import subprocess


def _run(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _newkey(alg):
    return ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"] if alg == "ec" else ["-newkey", "rsa:2048"]


class Pki:
    def __init__(self, directory):
        self.dir = directory
        self.ca_key = os.path.join(directory, "ca.key")
        self.ca_crt = os.path.join(directory, "ca.crt")
        _run("req", "-x509", *_newkey("ec"), "-nodes", "-keyout", self.ca_key, "-out", self.ca_crt, "-days", "3",
             "-subj", "/CN=Holdfast Test CA", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        self._serial = 1

    def leaf(self, name, names, alg="ec", client=False):
        """Returns (cert_pem, key_pem) for a certificate naming `names`
        (DNS names, or "IP:a.b.c.d"), signed by the CA, valid for two days."""
        key = os.path.join(self.dir, name + ".key")
        csr = os.path.join(self.dir, name + ".csr")
        crt = os.path.join(self.dir, name + ".crt")
        ext = os.path.join(self.dir, name + ".ext")
        _run("req", *_newkey(alg), "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=" + (names[0] if names else name))
        with open(ext, "w") as f:
            if names:
                f.write("subjectAltName=" + ",".join(n if n.startswith("IP:") else "DNS:" + n for n in names) + "\n")
            f.write("extendedKeyUsage=" + ("clientAuth" if client else "serverAuth") + "\n")
        self._serial += 1
        args = ["x509", "-req", "-in", csr, "-CA", self.ca_crt, "-CAkey", self.ca_key, "-set_serial", str(self._serial),
                "-extfile", ext, "-days", "2", "-out", crt]
        _run(*args)
        with open(crt) as c, open(key) as k:
            return c.read(), k.read()

    def ca_pem(self):
        with open(self.ca_crt) as f:
            return f.read()



class SniConnection(http.client.HTTPConnection):
    """HTTPS with an explicit SNI (http.client takes SNI from the host it connects to)."""

    def __init__(self, port, sni, ctx):
        super().__init__("127.0.0.1", port, timeout=5)
        self._sni, self._ctx = sni, ctx

    def connect(self):
        super().connect()
        self.sock = self._ctx.wrap_socket(self.sock, server_hostname=self._sni)


def served_certificate(port, sni, ctx):
    """(the server's leaf certificate as DER, the TLS version) for a handshake naming `sni`."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname=sni) as s:
            return s.getpeercert(binary_form=True), s.version()


def https_get(port, sni, path, ctx):
    """One GET on a new connection (`Connection: close`): (status, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname=sni) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := s.recv(65536):
                data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body
