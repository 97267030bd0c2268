"""Certificates for the TLS tests, made with the openssl command: a private
CA and leaf certificates (RSA or ECDSA P-256) signed by it, each with its
names in subjectAltName. Files go to a directory the caller removes."""
import os
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
        (DNS names), signed by the CA, valid for two days."""
        key = os.path.join(self.dir, name + ".key")
        csr = os.path.join(self.dir, name + ".csr")
        crt = os.path.join(self.dir, name + ".crt")
        ext = os.path.join(self.dir, name + ".ext")
        _run("req", *_newkey(alg), "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=" + (names[0] if names else name))
        with open(ext, "w") as f:
            if names:
                f.write("subjectAltName=" + ",".join("DNS:" + n for n in names) + "\n")
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

