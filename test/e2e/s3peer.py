#!/usr/bin/env python3
"""s3peer: an S3 + STS test endpoint that verifies AWS Signature V4 with botocore.

Holdfast's own S3 client (C++) is tested end to end against this peer. Every S3
request is checked with botocore's S3SigV4Auth (an implementation independent
of Holdfast's), so a request the peer accepts is one AWS would accept, as far
as SigV4 goes.

Run (always with Debian's interpreter, which has python3-botocore):

    /usr/bin/python3 s3peer.py --port P --state-dir D [--users FILE] [--region R]
                               [--reject-chunked] [--max-body-mb N] [--quiet]

It listens on 127.0.0.1:P only (P=0: any free port, written to D/port), prints
`ready` on stdout once listening, logs one line per request to stderr (never a
secret) and stops on SIGTERM/SIGINT. --users FILE: JSON, either
{"AKID": "SECRET", ...} or [{"access_key": .., "secret_key": .., "session_token": ..}, ...].

S3 (path style /bucket/key, or virtual-hosted: Host bucket.s3.<region>.amazonaws.com,
bucket.s3.amazonaws.com, bucket.localhost[:port], or any Host whose leading labels
name a known bucket):
    PUT /b/k  GET /b/k (Range, If-Match, If-None-Match, If-(Un)Modified-Since)
    HEAD /b/k  DELETE /b/k  GET /b?list-type=2 (ListObjectsV2) and GET /b (V1)
    PUT /b (CreateBucket)  HEAD /b  DELETE /b  GET /b?location  GET / (ListBuckets)
    PUT conditional writes: If-None-Match: * and If-Match: "<etag>".
STS on the same port: POST / (form) or GET /?Action=AssumeRoleWithWebIdentity&...

Control endpoints (no auth, JSON in and out) under /__peer/:
    GET    /__peer/health
    POST   /__peer/buckets            {"name": "b"}
    GET    /__peer/buckets
    DELETE /__peer/buckets/<b>        (with all its objects)
    POST   /__peer/users              {"access_key", "secret_key", ["session_token", "expires_in"]}
    GET    /__peer/users              (access keys and expiries, no secrets)
    DELETE /__peer/users/<ak>
    POST   /__peer/web-identity       {"role_arn", "token", ["lifetime", "subject", "expired", "provider", "audience"]}
    DELETE /__peer/web-identity
    POST   /__peer/credentials/expire {["access_key"]}  (temporary credentials expire now)
    POST   /__peer/faults             {"kind": "500"|"503"|"hang"|"close"|"error", "count": N,
                                       "seconds": T, "then": "process"|"close"|"500"|"503",
                                       "target": "s3"|"sts"|"any", "method", "bucket", "key",
                                       "status", "code", "message"}
    GET    /__peer/faults   DELETE /__peer/faults
    GET    /__peer/counters POST /__peer/counters/reset
    GET    /__peer/requests?limit=N   (recent requests with their verification result)
    GET    /__peer/objects/<b>?prefix=P   [{"key","size","etag","sha256","last_modified",...}]
    GET|PUT|DELETE /__peer/object/<b>/<url-encoded key>   raw body, unauthenticated, not counted
    POST   /__peer/settings           {"clock_offset": s, "reject_chunked": bool}

GCS mode (--gcs; region "auto"): the XML API of Google Cloud Storage as far as
the fallback uses it. Objects carry a generation: x-goog-generation on GET and
PUT answers, x-goog-if-generation-match on PUT (0 = create only; 412
PreconditionFailed otherwise). Requests are signed with HMAC keys as SigV4
(checked with botocore as above, credential scope <date>/auto/s3/aws4_request)
or carry `Authorization: Bearer <token>`, accepted only for tokens this peer
issued and has not revoked (else 401 AuthenticationRequired). It issues them as:
    POST /__gcs/token          Google's OAuth2 JWT-bearer grant: the assertion's
                               RS256 signature checked with the public key of the
                               service account named by iss, aud = this URL,
                               scope devstorage.read_write, iat/exp current
    GET  /computeMetadata/v1/instance/service-accounts/default/token
                               the GCE/GKE metadata server (Metadata-Flavor: Google)
and is configured with:
    POST   /__peer/gcs/service-accounts {"client_email", "public_key_pem", ["token_lifetime"]}
    POST   /__peer/gcs/metadata         {"enabled", ["token_lifetime"]}
    POST   /__peer/gcs/revoke-tokens    (every token issued so far is refused from now on)
Counters: counters()["gcs"] {"tokens_issued": {"service-account"|"metadata": n},
"token_refused": {reason: n}, "bearer_ok": n, "bearer_refused": n}.

Python API for tests: class S3Peer below (start/stop by pid, create_bucket, add_user,
register_web_identity, objects, get, put [signed with botocore], fault, counters, ...).
"""

import argparse
import base64
import calendar
import email.utils
import hashlib
import hmac
import http.client
import json
import math
import os
import re
import secrets
import select
import shutil
import signal
import socket
import string
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import zlib
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, quote, unquote, unquote_to_bytes, urlsplit
from xml.sax.saxutils import escape as _xml_escape
from xml.sax.saxutils import unescape as _xml_unescape

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.abspath(__file__)
SYSTEM_PYTHON = "/usr/bin/python3"

S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"
STS_NS = "https://sts.amazonaws.com/doc/2011-06-15/"
ACCOUNT_ID = "123456789012"
OWNER_ID = "75aa57f09aa0c8caeab4f8c24e99d10f8e7faeebf76c078efc7c6caea54ba06a"
MAX_SKEW_SECONDS = 15 * 60
SIGV4_TIMESTAMP = "%Y%m%dT%H%M%SZ"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
HEX64_RE = re.compile(r"^[0-9a-fA-F]{64}$")
IPV4_RE = re.compile(r"^\d+\.\d+\.\d+\.\d+$")
ROLE_ARN_RE = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$")
SESSION_NAME_RE = re.compile(r"^[\w+=,.@-]{2,64}$")
# sub-resources of the S3 API that this peer does not implement
UNSUPPORTED_SUBRESOURCES = {
    "accelerate", "acl", "analytics", "attributes", "cors", "delete", "encryption",
    "intelligent-tiering", "inventory", "legal-hold", "lifecycle", "logging", "metrics",
    "notification", "object-lock", "ownershipControls", "partNumber", "policy",
    "policyStatus", "publicAccessBlock", "replication", "requestPayment", "restore",
    "retention", "select", "tagging", "torrent", "uploadId", "uploads", "versioning",
    "versions", "website",
}
# query parameters whose values are never logged
SECRET_PARAMS = {"webidentitytoken", "x-amz-security-token", "x-amz-signature", "secretaccesskey"}
STORED_HEADERS = ("cache-control", "content-disposition", "content-encoding", "content-language", "expires")


# --------------------------------------------------------------------------
# small helpers


def xml_text(value):
    return _xml_escape(str(value))


def iso_seconds(ts):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def iso_millis(ts):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + ".%03dZ" % int((ts % 1) * 1000)


def http_date(ts):
    return email.utils.formatdate(ts, usegmt=True)


def new_request_id():
    return secrets.token_hex(8).upper()


def hex_bytes(text):
    return " ".join("%02x" % b for b in text.encode("utf-8"))


def random_id(prefix, n, alphabet=string.ascii_uppercase + "234567"):
    return prefix + "".join(secrets.choice(alphabet) for _ in range(n))


def redact_query(raw_query):
    if not raw_query:
        return ""
    out = []
    for part in raw_query.split("&"):
        k, sep, v = part.partition("=")
        if unquote(k).lower() in SECRET_PARAMS:
            v = "REDACTED"
        out.append(k + sep + v)
    return "&".join(out)


def header_text(value):
    """http.server decodes header bytes as latin-1; a client signs the UTF-8 text."""
    try:
        return value.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return value


def etag_values(header):
    """The entity tags of an If-Match / If-None-Match header ('*' kept as is)."""
    out = []
    for part in header.split(","):
        part = part.strip()
        if part.startswith("W/"):
            part = part[2:]
        out.append(part.strip('"'))
    return [p for p in out if p]


_CRC32C_TABLE = []


def crc32c(data):
    if not _CRC32C_TABLE:
        for i in range(256):
            c = i
            for _ in range(8):
                c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
            _CRC32C_TABLE.append(c)
    crc = 0xFFFFFFFF
    for b in data:
        crc = _CRC32C_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return (crc ^ 0xFFFFFFFF).to_bytes(4, "big")


CHECKSUMS = {
    "x-amz-checksum-crc32": ("CRC32", lambda b: zlib.crc32(b).to_bytes(4, "big")),
    "x-amz-checksum-crc32c": ("CRC32C", crc32c),
    "x-amz-checksum-sha1": ("SHA1", lambda b: hashlib.sha1(b).digest()),
    "x-amz-checksum-sha256": ("SHA256", lambda b: hashlib.sha256(b).digest()),
}


class S3Error(Exception):
    """An AWS-style S3 error; extra keyword arguments become XML elements, in order."""

    def __init__(self, status, code, message, **extra):
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra
        self.headers = {}
        self.close = False
        self.hint = None


class STSError(Exception):
    def __init__(self, status, code, message, kind="Sender"):
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.kind = kind


def no_such_bucket(bucket):
    return S3Error(404, "NoSuchBucket", "The specified bucket does not exist", BucketName=bucket)


def no_such_key(key):
    return S3Error(404, "NoSuchKey", "The specified key does not exist.", Key=key)


def malformed_auth(message, **extra):
    return S3Error(400, "AuthorizationHeaderMalformed", "The authorization header is malformed; " + message, **extra)


# --------------------------------------------------------------------------
# state: buckets, objects, users, web identities (persisted), faults and counters (not)


class Store:
    def __init__(self, state_dir):
        self.dir = os.path.abspath(state_dir)
        self.objdir = os.path.join(self.dir, "objects")
        self.lock = threading.RLock()
        self.buckets = {}         # name -> creation time
        self.objects = {}         # bucket -> {key: meta}
        self.users = {}           # access key -> {"secret", "token", "expires", "role_arn", "session"}
        self.web_identities = {}  # token -> {"role_arn", "lifetime", "subject", "expired", ...}
        os.makedirs(self.objdir, exist_ok=True)
        self._load()

    # persistence -------------------------------------------------------
    def _state_path(self):
        return os.path.join(self.dir, "state.json")

    def _load(self):
        try:
            with open(self._state_path()) as f:
                state = json.load(f)
        except FileNotFoundError:
            state = {}
        self.buckets = dict(state.get("buckets", {}))
        self.users = dict(state.get("users", {}))
        self.web_identities = dict(state.get("web_identities", {}))
        for bucket in self.buckets:
            self.objects[bucket] = {}
            bdir = os.path.join(self.objdir, bucket)
            os.makedirs(bdir, exist_ok=True)
            for name in os.listdir(bdir):
                if not name.endswith(".json"):
                    continue
                try:
                    with open(os.path.join(bdir, name)) as f:
                        meta = json.load(f)
                except (OSError, ValueError):
                    continue
                if os.path.exists(os.path.join(bdir, name[:-5] + ".bin")):
                    self.objects[bucket][meta["key"]] = meta

    def save(self):
        with self.lock:
            state = {"buckets": self.buckets, "users": self.users, "web_identities": self.web_identities}
            tmp = self._state_path() + ".tmp"
            with open(tmp, "w") as f:
                json.dump(state, f, indent=1, sort_keys=True)
            os.replace(tmp, self._state_path())

    def _paths(self, bucket, key):
        h = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
        base = os.path.join(self.objdir, bucket, h)
        return base + ".bin", base + ".json"

    # buckets -----------------------------------------------------------
    def create_bucket(self, name, now):
        with self.lock:
            if name in self.buckets:
                return False
            self.buckets[name] = now
            self.objects[name] = {}
            os.makedirs(os.path.join(self.objdir, name), exist_ok=True)
            self.save()
            return True

    def delete_bucket(self, name, force=False):
        with self.lock:
            if name not in self.buckets:
                return False
            if self.objects.get(name) and not force:
                raise S3Error(409, "BucketNotEmpty", "The bucket you tried to delete is not empty", BucketName=name)
            del self.buckets[name]
            self.objects.pop(name, None)
            shutil.rmtree(os.path.join(self.objdir, name), ignore_errors=True)
            self.save()
            return True

    def has_bucket(self, name):
        with self.lock:
            return name in self.buckets

    # objects -----------------------------------------------------------
    def head(self, bucket, key):
        with self.lock:
            return self.objects.get(bucket, {}).get(key)

    def read(self, bucket, key):
        """(meta, body) or (None, None); consistent with each other."""
        with self.lock:
            meta = self.objects.get(bucket, {}).get(key)
            if meta is None:
                return None, None
            with open(self._paths(bucket, key)[0], "rb") as f:
                return meta, f.read()

    def write(self, bucket, key, body, now, content_type=None, headers=None):
        with self.lock:
            data_path, meta_path = self._paths(bucket, key)
            previous = self.objects.get(bucket, {}).get(key)
            # GCS mode's generation: increasing per object, like GCS's microsecond stamps.
            generation = max(int(now * 1e6), (previous or {}).get("generation", 0) + 1)
            meta = {
                "key": key,
                "generation": generation,
                "size": len(body),
                "etag": '"%s"' % hashlib.md5(body).hexdigest(),
                "sha256": hashlib.sha256(body).hexdigest(),
                "last_modified": now,
                "content_type": content_type or "binary/octet-stream",
                "headers": dict(headers or {}),
            }
            for path, data in ((data_path, body), (meta_path, json.dumps(meta).encode())):
                tmp = path + ".tmp"
                with open(tmp, "wb") as f:
                    f.write(data)
                os.replace(tmp, path)
            self.objects.setdefault(bucket, {})[key] = meta
            return meta

    def delete(self, bucket, key):
        with self.lock:
            meta = self.objects.get(bucket, {}).pop(key, None)
            for path in self._paths(bucket, key):
                try:
                    os.remove(path)
                except FileNotFoundError:
                    pass
            return meta is not None

    def keys(self, bucket):
        with self.lock:
            return dict(self.objects.get(bucket, {}))


class Faults:
    def __init__(self):
        self.lock = threading.Lock()
        self.items = []

    def add(self, spec):
        kind = str(spec.get("kind", "500"))
        if kind not in ("500", "503", "hang", "close", "error"):
            raise ValueError("kind must be 500, 503, hang, close or error")
        fault = {
            "kind": kind,
            "count": int(spec.get("count", 1)),
            "seconds": float(spec.get("seconds", 0)),
            "then": str(spec.get("then", "process")),
            "target": spec.get("target", "s3"),
            "method": (spec.get("method") or "").upper() or None,
            "bucket": spec.get("bucket"),
            "key": spec.get("key"),
            "status": int(spec.get("status", 500)),
            "code": spec.get("code", "InternalError"),
            "message": spec.get("message", "Injected by s3peer."),
        }
        if fault["target"] not in ("s3", "sts", "any"):
            raise ValueError("target must be s3, sts or any")
        if fault["then"] not in ("process", "close", "500", "503"):
            raise ValueError("then must be process, close, 500 or 503")
        with self.lock:
            self.items.append(fault)
        return fault

    def take(self, kind, method, bucket, key):
        with self.lock:
            for fault in self.items:
                if fault["count"] <= 0:
                    continue
                if fault["target"] != "any" and fault["target"] != kind:
                    continue
                if fault["method"] and fault["method"] != method:
                    continue
                if fault["bucket"] is not None and fault["bucket"] != bucket:
                    continue
                if fault["key"] is not None and fault["key"] != key:
                    continue
                fault["count"] -= 1
                return dict(fault)
            return None

    def snapshot(self):
        with self.lock:
            return [dict(f) for f in self.items if f["count"] > 0]

    def clear(self):
        with self.lock:
            self.items = []


class Counters:
    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        with self.lock:
            self.data = {
                "requests": {"total": 0, "by_method": {}, "by_op": {}, "by_bucket": {}, "by_key": {},
                             "by_method_key": {}, "by_access_key": {}, "by_style": {}},
                "status": {},
                "errors": {},
                "auth": {"ok": 0, "failures": {}},
                "sts": {"calls": {}, "ok": {}, "failures": {}},
                "faults_injected": {},
                "chunked_uploads": 0,
                "unsigned_payload": 0,
            }

    def inc(self, *path):
        with self.lock:
            node = self.data
            for p in path[:-1]:
                node = node.setdefault(p, {})
            node[path[-1]] = node.get(path[-1], 0) + 1

    def snapshot(self):
        with self.lock:
            return json.loads(json.dumps(self.data))


class Peer:
    def __init__(self, state_dir, region="us-east-1", reject_chunked=False, max_body=256 << 20, quiet=False, gcs=False):
        self.region = region
        self.gcs = gcs
        self.gcs_accounts = {}   # client_email -> {"public_key_pem", "token_lifetime"}
        self.gcs_metadata = None  # {"token_lifetime"} when the metadata server answers
        self.gcs_tokens = {}     # token -> {"expires", "source", "subject"}
        self.store = Store(state_dir)
        self.faults = Faults()
        self.counters = Counters()
        self.clock_offset = 0.0
        self.reject_chunked = reject_chunked
        self.max_body = max_body
        self.quiet = quiet
        self.requests = deque(maxlen=2000)
        self.log_lock = threading.Lock()
        self.port = None

    def now(self):
        return time.time() + self.clock_offset

    def log(self, line):
        with self.log_lock:
            try:
                sys.stderr.write("s3peer: " + line + "\n")
                sys.stderr.flush()
            except (OSError, ValueError):
                pass

    def add_user(self, access_key, secret_key, session_token=None, expires=None, **extra):
        if not access_key or not secret_key:
            raise ValueError("access_key and secret_key are required")
        if "/" in access_key:
            raise ValueError("an access key cannot contain '/'")
        with self.store.lock:
            self.store.users[access_key] = dict(secret=secret_key, token=session_token, expires=expires, **extra)
            self.store.save()

    def load_users_file(self, path):
        with open(path) as f:
            data = json.load(f)
        if isinstance(data, dict) and "users" in data:
            data = data["users"]
        if isinstance(data, dict):
            entries = [{"access_key": k, "secret_key": v} for k, v in data.items()]
        else:
            entries = data
        for e in entries:
            expires = self.now() + float(e["expires_in"]) if e.get("expires_in") is not None else None
            self.add_user(e["access_key"], e["secret_key"], e.get("session_token"), expires)
        return len(entries)

    def vhost_bucket(self, host):
        """The bucket a Host header names (virtual-hosted style), or None for path style."""
        hostname = host.strip().lower()
        if hostname.startswith("["):
            return None
        hostname = hostname.rsplit(":", 1)[0] if ":" in hostname else hostname
        hostname = hostname.rstrip(".")
        if not hostname or hostname == "localhost" or IPV4_RE.match(hostname):
            return None
        m = re.match(r"^(.+)\.s3(?:[.-][a-z0-9-]+)?\.amazonaws\.com$", hostname)
        if m:
            return m.group(1)
        if hostname.endswith(".localhost"):
            return hostname[: -len(".localhost")]
        labels = hostname.split(".")
        with self.store.lock:
            for i in range(len(labels) - 1, 0, -1):
                candidate = ".".join(labels[:i])
                if candidate in self.store.buckets:
                    return candidate
        return None


# --------------------------------------------------------------------------
# SigV4 verification with botocore


def _botocore():
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.compat import HTTPHeaders
    from botocore.credentials import Credentials
    return S3SigV4Auth, AWSRequest, HTTPHeaders, Credentials


_VERIFIER_CLASS = None


def verifier_class():
    """botocore's S3SigV4Auth with a single override: the canonical headers are
    exactly the headers the client listed in SignedHeaders. botocore's own
    headers_to_sign() leaves out user-agent, expect and x-amzn-trace-id (it never
    signs them itself), but a client may sign them and AWS accepts that."""
    global _VERIFIER_CLASS
    if _VERIFIER_CLASS is None:
        S3SigV4Auth, _, HTTPHeaders, _ = _botocore()

        class S3SigV4Verifier(S3SigV4Auth):
            def headers_to_sign(self, request):
                header_map = HTTPHeaders()
                for name, value in request.headers.items():
                    header_map[name.lower()] = value
                return header_map

        _VERIFIER_CLASS = S3SigV4Verifier
    return _VERIFIER_CLASS


def expected_signature(method, path, query_pairs, raw_query, headers, timestamp, region, access_key, secret_key,
                       token=None):
    """(canonical_request, string_to_sign, signature) computed by botocore.

    path: the canonical URI; query_pairs: decoded (key, value) pairs, which
    botocore URI-encodes and sorts (None: use raw_query as it is); headers:
    list of (lowercase name, value) of the signed headers."""
    _, AWSRequest, HTTPHeaders, Credentials = _botocore()
    hdrs = HTTPHeaders()
    for name, value in headers:
        hdrs[name] = value
    url = "http://s3peer.invalid" + path + ("?" + raw_query if raw_query and query_pairs is None else "")
    request = AWSRequest(method=method, url=url, headers=hdrs, params=query_pairs or None)
    request.context["timestamp"] = timestamp
    signer = verifier_class()(Credentials(access_key, secret_key, token), "s3", region)
    canonical = signer.canonical_request(request)
    string_to_sign = signer.string_to_sign(request, canonical)
    return canonical, string_to_sign, signer.signature(string_to_sign, request)


def canonical_uri(raw_path):
    """AWS's canonical URI for S3: the decoded path, every byte outside
    A-Za-z0-9-_.~ percent-encoded once, '/' kept (no dot-segment removal)."""
    return quote(unquote_to_bytes(raw_path), safe="/~")


def parse_query(raw_query):
    pairs = []
    for part in raw_query.split("&") if raw_query else []:
        if not part:
            continue
        k, _, v = part.partition("=")
        pairs.append((unquote(k), unquote(v)))
    return pairs


# --------------------------------------------------------------------------
# HTTP handler


class Ctx:
    def __init__(self, method):
        self.rid = new_request_id()
        self.host_id = base64.b64encode(secrets.token_bytes(24)).decode()
        self.t0 = time.monotonic()
        self.method = method
        self.kind = "s3"
        self.style = None
        self.bucket = None
        self.key = None
        self.op = None
        self.raw_path = "/"
        self.raw_query = ""
        self.query = []
        self.qdict = {}
        self.access_key = None
        self.auth = None
        self.auth_reason = None
        self.payload = None
        self.chunked = False
        self.has_length = False
        self.status = None
        self.code = None
        self.fault = None
        self.hint = None
        self.canonical_request = None
        self.signed_headers = None
        self.entry = None  # the request-log entry, once recorded


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "AmazonS3"
    disable_nagle_algorithm = True

    def version_string(self):
        return self.server_version

    def date_time_string(self, timestamp=None):
        return http_date(self.server.peer.now() if timestamp is None else timestamp)

    def log_message(self, fmt, *args):
        pass

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = lambda self: self._dispatch()

    @property
    def peer(self):
        return self.server.peer

    # -- plumbing -------------------------------------------------------
    def _dispatch(self):
        ctx = Ctx(self.command)
        try:
            target = self.path
            if target.startswith(("http://", "https://")):
                parts = urlsplit(target)
                target = (parts.path or "/") + ("?" + parts.query if parts.query else "")
            ctx.raw_path, _, ctx.raw_query = target.partition("?")
            if ctx.raw_path == "/__peer" or ctx.raw_path.startswith("/__peer/"):
                ctx.kind = ctx.style = "control"
                body = self._read_body(ctx)
                self._control(ctx, body)
                return
            if self.peer.gcs and (ctx.raw_path == "/__gcs/token" or ctx.raw_path.startswith("/computeMetadata/")):
                ctx.kind = ctx.style = "gcs-token"
                self._gcs_token(ctx, self._read_body(ctx))
                return
            self._route(ctx)
            body = self._read_body(ctx)
            fault = self.peer.faults.take(ctx.kind, ctx.method, ctx.bucket, ctx.key)
            if fault and self._apply_fault(ctx, fault):
                return
            if ctx.kind == "sts":
                self._sts(ctx, body)
            else:
                self._s3(ctx, body)
        except S3Error as e:
            if ctx.kind == "sts":
                self._send_sts_error(ctx, STSError(e.status, e.code, e.message))
            else:
                self._send_s3_error(ctx, e)
        except STSError as e:
            self._send_sts_error(ctx, e)
        except (ConnectionError, TimeoutError):
            self.close_connection = True
            ctx.status = ctx.status or "disconnected"
        except Exception:
            self.peer.log(f"{ctx.rid} internal error:\n{traceback.format_exc()}")
            self.close_connection = True
            try:
                self._send_s3_error(ctx, S3Error(500, "InternalError", "We encountered an internal error. Please try again."))
            except OSError:
                pass
        finally:
            self._finish(ctx)

    def _finish(self, ctx):
        # Requests that ended without an answer (client gone) are recorded here.
        if ctx.entry is None:
            self._record(ctx)

    def _record(self, ctx):
        """Logs and counts the request once. Called before the first byte of the
        answer is written, so a client that has its response can rely on
        /__peer/requests, /__peer/counters and the log already showing it."""
        if ctx.kind == "control" or ctx.entry is not None:
            return
        ms = (time.monotonic() - ctx.t0) * 1000
        host = self.headers.get("Host", "")
        query = redact_query(ctx.raw_query)
        entry = {
            "id": ctx.rid, "time": iso_millis(self.peer.now()), "method": ctx.method, "host": host,
            "path": ctx.raw_path, "query": query, "kind": ctx.kind, "style": ctx.style, "op": ctx.op,
            "bucket": ctx.bucket, "key": ctx.key, "access_key": ctx.access_key, "auth": ctx.auth,
            "auth_reason": ctx.auth_reason, "payload": ctx.payload, "chunked": ctx.chunked,
            "signed_headers": ctx.signed_headers, "status": ctx.status, "code": ctx.code,
            "fault": ctx.fault, "hint": ctx.hint, "ms": round(ms, 1),
        }
        ctx.entry = entry
        self.peer.requests.append(entry)
        if ctx.status is not None and ctx.status != "disconnected":
            self.peer.counters.inc("status", str(ctx.status))
        if ctx.code:
            self.peer.counters.inc("errors", ctx.code)
        ok = isinstance(ctx.status, int) and ctx.status < 400
        if self.peer.quiet and ok:
            return
        auth = ""
        if ctx.kind == "sts" and ctx.auth_reason:
            auth = f" ({ctx.auth_reason})"
        if ctx.kind == "s3":
            auth = f" auth={ctx.auth or '-'}"
            if ctx.access_key:
                auth += f" ak={ctx.access_key}"
            if ctx.payload:
                auth += f" payload={ctx.payload}"
            if ctx.auth_reason:
                auth += f" ({ctx.auth_reason})"
        line = (f"{ctx.rid} {ctx.method} {host}{ctx.raw_path}{'?' + query if query else ''} "
                f"{ctx.kind}/{ctx.style or '-'} op={ctx.op or '-'}{auth} -> {ctx.status} {ctx.code or ''}"
                f"{' fault=' + ctx.fault if ctx.fault else ''} {ms:.1f}ms")
        if ctx.hint:
            line += f"\n    hint: {ctx.hint}"
        if ctx.code == "SignatureDoesNotMatch" and ctx.canonical_request is not None:
            line += "\n    canonical request (security token redacted):\n      " + \
                    ctx.canonical_request.replace("\n", "\n      ")
        self.peer.log(line)

    def _send(self, ctx, status, body=b"", headers=(), content_type="application/xml", length=None):
        ctx.status = status
        self._record(ctx)
        try:
            self._write_response(ctx, status, body, headers, content_type, length)
        except (ConnectionError, TimeoutError):
            if ctx.entry is not None:
                ctx.entry["status"] = "disconnected"
            raise

    def _write_response(self, ctx, status, body, headers, content_type, length):
        self.send_response(status)
        self.send_header("x-amz-request-id", ctx.rid)
        self.send_header("x-amz-id-2", ctx.host_id)
        items = headers.items() if isinstance(headers, dict) else headers
        for k, v in items:
            self.send_header(k, v)
        if body and content_type:
            self.send_header("Content-Type", content_type)
        if status not in (204, 304):
            self.send_header("Content-Length", str(len(body) if length is None else length))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and body and status not in (204, 304):
            self.wfile.write(body)
        self.wfile.flush()

    def _send_s3_error(self, ctx, e):
        if e.close:
            self.close_connection = True
        ctx.code = e.code
        if e.hint:
            ctx.hint = e.hint
        parts = ['<?xml version="1.0" encoding="UTF-8"?>\n<Error>',
                 f"<Code>{xml_text(e.code)}</Code><Message>{xml_text(e.message)}</Message>"]
        for k, v in e.extra.items():
            parts.append(f"<{k}>{xml_text(v)}</{k}>")
        if e.hint:
            parts.append(f"<S3PeerHint>{xml_text(e.hint)}</S3PeerHint>")
        parts.append(f"<RequestId>{ctx.rid}</RequestId><HostId>{xml_text(ctx.host_id)}</HostId></Error>")
        headers = dict(e.headers)
        self._send(ctx, e.status, "".join(parts).encode(), headers)

    def _send_sts_error(self, ctx, e):
        ctx.code = e.code
        self.peer.counters.inc("sts", "failures", e.code)
        body = (f'<ErrorResponse xmlns="{STS_NS}">\n  <Error>\n    <Type>{e.kind}</Type>\n'
                f"    <Code>{xml_text(e.code)}</Code>\n    <Message>{xml_text(e.message)}</Message>\n  </Error>\n"
                f"  <RequestId>{ctx.rid}</RequestId>\n</ErrorResponse>\n")
        self._send(ctx, e.status, body.encode(), {"x-amzn-RequestId": ctx.rid}, content_type="text/xml")

    def _send_json(self, ctx, status, obj):
        body = (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode()
        self._send(ctx, status, body, content_type="application/json")

    def _read_body(self, ctx):
        te = self.headers.get("Transfer-Encoding")
        cl = self.headers.get("Content-Length")
        limit = self.peer.max_body
        if te is not None:
            if cl is not None:
                self.close_connection = True
                raise S3Error(400, "InvalidRequest", "Content-Length and Transfer-Encoding must not both be present.")
            if te.strip().lower() != "chunked":
                self.close_connection = True
                raise S3Error(501, "NotImplemented", "A header you provided implies functionality that is not implemented",
                              Header="Transfer-Encoding")
            ctx.chunked = True
            if ctx.kind == "s3" and self.peer.reject_chunked:
                self.close_connection = True
                raise S3Error(501, "NotImplemented", "A header you provided implies functionality that is not implemented",
                              Header="Transfer-Encoding")
            parts, total = [], 0
            while True:
                line = self.rfile.readline(1024)
                try:
                    n = int(line.split(b";")[0].strip(), 16)
                except ValueError:
                    self.close_connection = True
                    raise S3Error(400, "IncompleteBody", "Bad chunked encoding.")
                if n == 0:
                    while self.rfile.readline(8192) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                total += n
                if total > limit:
                    self.close_connection = True
                    raise S3Error(400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size",
                                  MaxSizeAllowed=str(limit))
                chunk = self.rfile.read(n)
                if len(chunk) != n:
                    self.close_connection = True
                    raise S3Error(400, "IncompleteBody", "You did not provide the number of bytes specified by the chunk size")
                parts.append(chunk)
                self.rfile.readline(1024)
            if ctx.kind == "s3":
                self.peer.counters.inc("chunked_uploads")
            return b"".join(parts)
        if cl is not None:
            ctx.has_length = True
            try:
                n = int(cl.strip())
                if n < 0:
                    raise ValueError
            except ValueError:
                self.close_connection = True
                raise S3Error(400, "InvalidArgument", "Invalid Content-Length", ArgumentName="Content-Length")
            if n > limit:
                self.close_connection = True
                raise S3Error(400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size",
                              MaxSizeAllowed=str(limit), ProposedSize=str(n))
            body = self.rfile.read(n) if n else b""
            if len(body) != n:
                self.close_connection = True
                raise S3Error(400, "IncompleteBody", "You did not provide the number of bytes specified by the Content-Length HTTP header")
            return body
        return b""

    def _route(self, ctx):
        ctx.query = parse_query(ctx.raw_query)
        ctx.qdict = {}
        for k, v in ctx.query:
            ctx.qdict.setdefault(k, v)
        bucket = self.peer.vhost_bucket(self.headers.get("Host", ""))
        if bucket is not None:
            ctx.style = "virtual"
            ctx.bucket = bucket
            ctx.key = unquote(ctx.raw_path[1:]) if ctx.raw_path.startswith("/") else unquote(ctx.raw_path)
        elif ctx.raw_path == "/" and (ctx.method == "POST" or "Action" in ctx.qdict):
            ctx.kind = ctx.style = "sts"
            return
        else:
            ctx.style = "path"
            segs = ctx.raw_path.lstrip("/").split("/", 1)
            ctx.bucket = unquote(segs[0]) or None
            ctx.key = unquote(segs[1]) if len(segs) > 1 else ""
        self._s3_op(ctx)
        c = self.peer.counters
        c.inc("requests", "total")
        c.inc("requests", "by_method", ctx.method)
        c.inc("requests", "by_style", ctx.style)
        if ctx.bucket:
            c.inc("requests", "by_bucket", ctx.bucket)
            if ctx.key:
                c.inc("requests", "by_key", f"{ctx.bucket}/{ctx.key}")
                c.inc("requests", "by_method_key", f"{ctx.method} {ctx.bucket}/{ctx.key}")

    def _apply_fault(self, ctx, fault):
        """True when the fault answered (or dropped) the request."""
        kind = fault["kind"]
        ctx.fault = kind
        self.peer.counters.inc("faults_injected", kind)
        if kind == "hang":
            time.sleep(fault["seconds"])
            kind = fault["then"]
            if kind == "process":
                return False
        if kind == "close":
            self.close_connection = True
            ctx.status = "closed"
            self._record(ctx)  # before the client can see the close
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return True
        if kind == "500":
            status, code, msg = 500, "InternalError", "We encountered an internal error. Please try again."
        elif kind == "503":
            status, code, msg = 503, "SlowDown", "Please reduce your request rate."
        else:
            status, code, msg = fault["status"], fault["code"], fault["message"]
        if ctx.kind == "sts":
            sts_code = {"InternalError": "InternalFailure", "SlowDown": "Throttling"}.get(code, code)
            raise STSError(status, sts_code, msg, kind="Receiver" if status >= 500 else "Sender")
        raise S3Error(status, code, msg)

    # -- SigV4 ----------------------------------------------------------
    def _verify(self, ctx, body):
        if self.peer.gcs and (self.headers.get("Authorization") or "").startswith("Bearer "):
            return self._verify_bearer(ctx)
        try:
            self._verify_inner(ctx, body)
        except S3Error as e:
            ctx.auth = e.code
            self.peer.counters.inc("auth", "failures", e.code)
            raise
        ctx.auth = "ok"
        self.peer.counters.inc("auth", "ok")
        self.peer.counters.inc("requests", "by_access_key", ctx.access_key)

    def _verify_inner(self, ctx, body):
        peer = self.peer
        h = self.headers
        auth = h.get("Authorization")
        if auth is None:
            if any(k.lower() in ("x-amz-signature", "x-amz-credential") for k in ctx.qdict):
                ctx.auth_reason = "presigned URL"
                raise S3Error(403, "AccessDenied", "Query-string (presigned URL) authentication is not supported by s3peer.")
            ctx.auth_reason = "no Authorization header"
            raise S3Error(403, "AccessDenied", "Access Denied")
        scheme, _, rest = auth.strip().partition(" ")
        if scheme != "AWS4-HMAC-SHA256":
            ctx.auth_reason = f"scheme {scheme!r}"
            if scheme == "AWS":
                raise S3Error(400, "InvalidRequest", "The authorization mechanism you have provided is not supported. "
                                                     "Please use AWS4-HMAC-SHA256.")
            raise S3Error(400, "InvalidArgument", "Unsupported Authorization Type", ArgumentName="Authorization",
                          ArgumentValue=scheme)
        fields = {}
        for part in rest.split(","):
            k, sep, v = part.strip().partition("=")
            if sep:
                fields[k.strip()] = v.strip()
        if not all(fields.get(k) for k in ("Credential", "SignedHeaders", "Signature")):
            ctx.auth_reason = "missing Credential, SignedHeaders or Signature"
            raise malformed_auth("the authorization header requires three components: Credential, SignedHeaders, "
                                 "and Signature.")
        cred = fields["Credential"].split("/")
        if len(cred) != 5:
            ctx.auth_reason = "bad Credential"
            raise malformed_auth('the Credential is mal-formed; expecting "<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request".')
        ak, cdate, cregion, cservice, terminal = cred
        ctx.access_key = ak
        if cregion != peer.region:
            ctx.auth_reason = f"region {cregion!r} in the credential scope, expected {peer.region!r}"
            raise malformed_auth(f"the region '{cregion}' is wrong; expecting '{peer.region}'", Region=peer.region)
        if cservice != "s3":
            ctx.auth_reason = f"service {cservice!r} in the credential scope"
            raise malformed_auth(f'incorrect service "{cservice}". This endpoint belongs to "s3".')
        if terminal != "aws4_request":
            ctx.auth_reason = f"terminal {terminal!r} in the credential scope"
            raise malformed_auth(f'incorrect terminal "{terminal}". This endpoint uses "aws4_request".')
        signed = fields["SignedHeaders"].split(";")
        signed_lower = [s.strip().lower() for s in signed]
        ctx.signed_headers = signed_lower
        signature = fields["Signature"]

        # date and clock skew
        amz_date = h.get("X-Amz-Date")
        date_hdr = h.get("Date")
        try:
            if amz_date is not None:
                request_time = calendar.timegm(time.strptime(amz_date.strip(), SIGV4_TIMESTAMP))
                timestamp = amz_date.strip()
            elif date_hdr is not None:
                request_time = email.utils.parsedate_to_datetime(date_hdr).timestamp()
                timestamp = time.strftime(SIGV4_TIMESTAMP, time.gmtime(request_time))
            else:
                raise ValueError("no date")
        except (ValueError, TypeError, OverflowError):
            ctx.auth_reason = "no valid X-Amz-Date or Date header"
            raise S3Error(403, "AccessDenied", "AWS authentication requires a valid Date or x-amz-date header")
        now = peer.now()
        if abs(now - request_time) > MAX_SKEW_SECONDS:
            ctx.auth_reason = f"request time is {now - request_time:+.0f}s off the server's"
            raise S3Error(403, "RequestTimeTooSkewed",
                          "The difference between the request time and the current time is too large.",
                          RequestTime=(amz_date or date_hdr).strip(), ServerTime=iso_seconds(now),
                          MaxAllowedSkewMilliseconds=str(MAX_SKEW_SECONDS * 1000))
        if cdate != timestamp[:8]:
            ctx.auth_reason = "credential scope date differs from X-Amz-Date"
            raise malformed_auth("Invalid credential date. Date is not the same as X-Amz-Date.")
        if "host" not in signed_lower:
            ctx.auth_reason = "host is not a signed header"
            raise malformed_auth("'Host' must be a 'SignedHeader' in the AWS Authorization.")
        if amz_date is None and "date" not in signed_lower:
            ctx.auth_reason = "the Date header is not signed"
            raise S3Error(403, "AccessDenied", "There were headers present in the request which were not signed",
                          HeadersNotSigned="date")

        # the key and its session token
        with peer.store.lock:
            user = peer.store.users.get(ak)
            user = dict(user) if user else None
        if user is None:
            ctx.auth_reason = "unknown access key"
            raise S3Error(403, "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records.",
                          AWSAccessKeyId=ak)
        sent_token = h.get("X-Amz-Security-Token")
        if user.get("token"):
            if sent_token is None:
                ctx.auth_reason = "temporary access key used without X-Amz-Security-Token"
                raise S3Error(403, "InvalidAccessKeyId",
                              "The AWS Access Key Id you provided does not exist in our records.", AWSAccessKeyId=ak)
            if not hmac.compare_digest(sent_token.strip().encode(), user["token"].encode()):
                ctx.auth_reason = "X-Amz-Security-Token is not the session token issued with this key"
                raise S3Error(400, "InvalidToken", "The provided token is malformed or otherwise invalid.")
            if user.get("expires") is not None and now >= user["expires"]:
                ctx.auth_reason = f"session token expired {now - user['expires']:.1f}s ago"
                raise S3Error(400, "ExpiredToken", "The provided token has expired.")
        elif sent_token is not None:
            ctx.auth_reason = "X-Amz-Security-Token sent with a long-term access key"
            raise S3Error(400, "InvalidToken", "The provided token is malformed or otherwise invalid.")

        # every x-amz-* header must be signed
        unsigned = sorted({k.lower() for k in h.keys() if k.lower().startswith("x-amz-")} - set(signed_lower))
        if unsigned:
            ctx.auth_reason = "unsigned x-amz-* headers: " + ",".join(unsigned)
            raise S3Error(403, "AccessDenied", "There were headers present in the request which were not signed",
                          HeadersNotSigned=", ".join(unsigned))
        content_sha = h.get("X-Amz-Content-SHA256")
        if content_sha is None:
            ctx.auth_reason = "no x-amz-content-sha256 header"
            raise S3Error(400, "InvalidRequest", "Missing required header for this request: x-amz-content-sha256")
        content_sha = content_sha.strip()
        if content_sha.startswith("STREAMING-"):
            ctx.payload = content_sha
            ctx.auth_reason = "aws-chunked payload signing is not implemented by s3peer"
            raise S3Error(501, "NotImplemented", "A header you provided implies functionality that is not implemented",
                          Header="x-amz-content-sha256")
        if content_sha != UNSIGNED_PAYLOAD and not HEX64_RE.match(content_sha):
            ctx.auth_reason = "bad x-amz-content-sha256 value"
            raise S3Error(400, "InvalidArgument", "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, "
                          "STREAMING-AWS4-HMAC-SHA256-PAYLOAD, or a valid sha256 value.",
                          ArgumentName="x-amz-content-sha256", ArgumentValue=content_sha)
        ctx.payload = "UNSIGNED-PAYLOAD" if content_sha == UNSIGNED_PAYLOAD else "sha256"

        # the signature, recomputed by botocore
        headers = []
        for name in signed_lower:
            for value in h.get_all(name) or []:
                headers.append((name, header_text(value)))
        cpath = canonical_uri(ctx.raw_path)
        canonical, string_to_sign, expected = expected_signature(
            ctx.method, cpath, ctx.query, ctx.raw_query, headers, timestamp, peer.region, ak, user["secret"],
            user.get("token"))
        if not hmac.compare_digest(expected.encode(), signature.encode()):
            token = user.get("token")
            ctx.canonical_request = canonical.replace(token, "<REDACTED>") if token else canonical
            ctx.auth_reason = "signature mismatch"
            err = S3Error(403, "SignatureDoesNotMatch",
                          "The request signature we calculated does not match the signature you provided. "
                          "Check your key and signing method.",
                          AWSAccessKeyId=ak, StringToSign=string_to_sign, SignatureProvided=signature,
                          StringToSignBytes=hex_bytes(string_to_sign), CanonicalRequest=canonical,
                          CanonicalRequestBytes=hex_bytes(canonical))
            err.hint = self._signature_hint(ctx, signed_lower, headers, timestamp, user, signature, fields)
            raise err

        # the payload
        if content_sha != UNSIGNED_PAYLOAD:
            actual = hashlib.sha256(body).hexdigest()
            if actual != content_sha.lower():
                ctx.auth_reason = "body does not hash to x-amz-content-sha256"
                raise S3Error(400, "XAmzContentSHA256Mismatch",
                              "The provided 'x-amz-content-sha256' header does not match what was computed.",
                              ClientComputedContentSHA256=content_sha, S3ComputedContentSHA256=actual)
        else:
            self.peer.counters.inc("unsigned_payload")
        md5 = h.get("Content-MD5")
        if md5 is not None:
            try:
                digest = base64.b64decode(md5.strip(), validate=True)
                if len(digest) != 16:
                    raise ValueError
            except ValueError:
                raise S3Error(400, "InvalidDigest", "The Content-MD5 you specified was invalid.", **{"Content-MD5": md5})
            if digest != hashlib.md5(body).digest():
                raise S3Error(400, "BadDigest", "The Content-MD5 you specified did not match what we received.",
                              ExpectedDigest=md5.strip(), CalculatedDigest=base64.b64encode(hashlib.md5(body).digest()).decode())

    def _signature_hint(self, ctx, signed_lower, headers, timestamp, user, signature, fields):
        """Why a signature might have failed, for the engineer reading the log."""
        peer = self.peer
        try:
            def matches(path, pairs):
                return expected_signature(ctx.method, path, pairs, ctx.raw_query, headers, timestamp, peer.region,
                                          ctx.access_key, user["secret"], user.get("token"))[2] == signature
            if ctx.raw_path != canonical_uri(ctx.raw_path) or ctx.raw_query:
                if matches(ctx.raw_path, None):
                    return ("the signature matches the path and query exactly as sent, but AWS signs their canonical "
                            "URI encoding (every byte outside A-Za-z0-9-_.~ percent-encoded, '/' kept in the path, "
                            "query pairs sorted after encoding): AWS would reject this request")
            if signed_lower != sorted(signed_lower):
                return "SignedHeaders is not sorted; AWS expects the lowercase header names in sorted order"
            missing = [n for n in signed_lower if self.headers.get(n) is None]
            if missing:
                return "SignedHeaders names headers that are not in the request: " + ",".join(missing)
        except Exception as e:  # a hint must never break the error answer
            return f"(no hint: {e})"
        return None

    # -- S3 -------------------------------------------------------------
    def _s3_op(self, ctx):
        method = ctx.method
        if not ctx.bucket:
            ctx.op = "ListBuckets" if method == "GET" else None
        elif not ctx.key:
            ctx.op = {"PUT": "CreateBucket", "DELETE": "DeleteBucket", "HEAD": "HeadBucket",
                      "GET": "ListObjectsV2" if ctx.qdict.get("list-type") == "2" else "ListObjects"}.get(method)
            if method == "GET" and "location" in ctx.qdict:
                ctx.op = "GetBucketLocation"
        else:
            ctx.op = {"PUT": "PutObject", "GET": "GetObject", "HEAD": "HeadObject", "DELETE": "DeleteObject"}.get(method)
        if ctx.op:
            self.peer.counters.inc("requests", "by_op", ctx.op)

    def _s3(self, ctx, body):
        method = ctx.method
        self._verify(ctx, body)
        unsupported = sorted(set(ctx.qdict) & UNSUPPORTED_SUBRESOURCES)
        if unsupported or (ctx.op == "PutObject" and self.headers.get("x-amz-copy-source")):
            raise S3Error(501, "NotImplemented", "A header you provided implies functionality that is not implemented",
                          Header=",".join(unsupported) or "x-amz-copy-source")
        if ctx.op is None:
            raise S3Error(405, "MethodNotAllowed", "The specified method is not allowed against this resource.",
                          Method=method, ResourceType="OBJECT" if ctx.key else "BUCKET")
        if ctx.op == "ListBuckets":
            return self._list_buckets(ctx)
        if ctx.op == "CreateBucket":
            return self._create_bucket(ctx)
        if not self.peer.store.has_bucket(ctx.bucket):
            raise no_such_bucket(ctx.bucket)
        getattr(self, "_op_" + ctx.op)(ctx, body)

    def _list_buckets(self, ctx):
        with self.peer.store.lock:
            buckets = sorted(self.peer.store.buckets.items())
        items = "".join(f"<Bucket><Name>{xml_text(n)}</Name><CreationDate>{iso_millis(t)}</CreationDate></Bucket>"
                        for n, t in buckets)
        body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<ListAllMyBucketsResult xmlns="{S3_NS}">'
                f"<Owner><ID>{OWNER_ID}</ID><DisplayName>s3peer</DisplayName></Owner><Buckets>{items}</Buckets>"
                "</ListAllMyBucketsResult>")
        self._send(ctx, 200, body.encode())

    def _create_bucket(self, ctx):
        if not BUCKET_RE.match(ctx.bucket) or ".." in ctx.bucket:
            raise S3Error(400, "InvalidBucketName", "The specified bucket is not valid.", BucketName=ctx.bucket)
        if not self.peer.store.create_bucket(ctx.bucket, self.peer.now()):
            raise S3Error(409, "BucketAlreadyOwnedByYou",
                          "Your previous request to create the named bucket succeeded and you already own it.",
                          BucketName=ctx.bucket)
        self._send(ctx, 200, b"", {"Location": "/" + ctx.bucket})

    def _op_DeleteBucket(self, ctx, body):
        self.peer.store.delete_bucket(ctx.bucket)
        self._send(ctx, 204)

    def _op_HeadBucket(self, ctx, body):
        self._send(ctx, 200, b"", {"x-amz-bucket-region": self.peer.region})

    def _op_GetBucketLocation(self, ctx, body):
        region = "" if self.peer.region == "us-east-1" else self.peer.region
        body = f'<?xml version="1.0" encoding="UTF-8"?>\n<LocationConstraint xmlns="{S3_NS}">{region}</LocationConstraint>'
        self._send(ctx, 200, body.encode())

    def _op_ListObjectsV2(self, ctx, body):
        self._list_objects(ctx, v2=True)

    def _op_ListObjects(self, ctx, body):
        self._list_objects(ctx, v2=False)

    def _list_objects(self, ctx, v2):
        q = ctx.qdict
        prefix = q.get("prefix", "")
        delimiter = q.get("delimiter", "")
        encoding = q.get("encoding-type")
        if encoding is not None and encoding != "url":
            raise S3Error(400, "InvalidArgument", "Invalid Encoding Method specified in Request",
                          ArgumentName="encoding-type", ArgumentValue=encoding)
        try:
            max_keys = int(q.get("max-keys", "1000"))
            if max_keys < 0:
                raise ValueError
        except ValueError:
            raise S3Error(400, "InvalidArgument", "Provided max-keys not an integer or within integer range",
                          ArgumentName="max-keys", ArgumentValue=q.get("max-keys"))
        max_keys = min(max_keys, 1000)
        token = q.get("continuation-token")
        if v2:
            if token is not None:
                try:
                    marker = base64.urlsafe_b64decode(token.encode()).decode("utf-8")
                except ValueError:
                    raise S3Error(400, "InvalidArgument", "The continuation token provided is incorrect",
                                  ArgumentName="continuation-token")
            else:
                marker = q.get("start-after", "")
        else:
            marker = q.get("marker", "")

        enc = (lambda s: quote(s, safe="/")) if encoding == "url" else (lambda s: s)
        objects = self.peer.store.keys(ctx.bucket)
        contents, prefixes, truncated, last = [], [], False, None
        for key in sorted(k for k in objects if k.startswith(prefix) and k > marker):
            cp = None
            if delimiter:
                idx = key.find(delimiter, len(prefix))
                if idx >= 0:
                    cp = key[: idx + len(delimiter)]
            if cp is not None and (cp <= marker or (prefixes and prefixes[-1] == cp)):
                continue
            if len(contents) + len(prefixes) >= max_keys:
                truncated = True
                break
            if cp is not None:
                prefixes.append(cp)
                last = cp
            else:
                contents.append(objects[key])
                last = key

        out = [f'<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="{S3_NS}">',
               f"<Name>{xml_text(ctx.bucket)}</Name><Prefix>{xml_text(enc(prefix))}</Prefix>"]
        if v2:
            if token is not None:
                out.append(f"<ContinuationToken>{xml_text(token)}</ContinuationToken>")
            if "start-after" in q:
                out.append(f"<StartAfter>{xml_text(enc(q['start-after']))}</StartAfter>")
            out.append(f"<KeyCount>{len(contents) + len(prefixes)}</KeyCount>")
            if truncated:
                nxt = base64.urlsafe_b64encode(last.encode("utf-8")).decode()
                out.append(f"<NextContinuationToken>{nxt}</NextContinuationToken>")
        else:
            out.append(f"<Marker>{xml_text(enc(marker))}</Marker>")
            if truncated and delimiter:
                out.append(f"<NextMarker>{xml_text(enc(last))}</NextMarker>")
        out.append(f"<MaxKeys>{max_keys}</MaxKeys>")
        if delimiter:
            out.append(f"<Delimiter>{xml_text(enc(delimiter))}</Delimiter>")
        if encoding:
            out.append(f"<EncodingType>{encoding}</EncodingType>")
        out.append(f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>")
        for meta in contents:
            owner = ("" if v2 and q.get("fetch-owner") != "true" else
                     f"<Owner><ID>{OWNER_ID}</ID><DisplayName>s3peer</DisplayName></Owner>")
            out.append(f"<Contents><Key>{xml_text(enc(meta['key']))}</Key>"
                       f"<LastModified>{iso_millis(meta['last_modified'])}</LastModified>"
                       f"<ETag>{xml_text(meta['etag'])}</ETag><Size>{meta['size']}</Size>{owner}"
                       "<StorageClass>STANDARD</StorageClass></Contents>")
        for cp in prefixes:
            out.append(f"<CommonPrefixes><Prefix>{xml_text(enc(cp))}</Prefix></CommonPrefixes>")
        out.append("</ListBucketResult>")
        self._send(ctx, 200, "".join(out).encode())

    def _object_headers(self, meta):
        headers = [("ETag", meta["etag"]), ("Last-Modified", http_date(int(meta["last_modified"]))),
                   ("Accept-Ranges", "bytes"), ("Content-Type", meta["content_type"]),
                   ("x-amz-server-side-encryption", "AES256")]
        if self.peer.gcs:
            headers += [("x-goog-generation", str(meta.get("generation", 0))), ("x-goog-metageneration", "1")]
        headers += sorted(meta.get("headers", {}).items())
        return headers

    def _check_read_conditions(self, meta):
        """None, or the status (304/412) the GET/HEAD conditional headers call for."""
        h = self.headers
        etag = meta["etag"].strip('"')
        modified = int(meta["last_modified"])

        def since(name):
            value = h.get(name)
            if value is None:
                return None
            try:
                return email.utils.parsedate_to_datetime(value).timestamp()
            except (TypeError, ValueError):
                return None

        if_match = h.get("If-Match")
        if if_match is not None:
            tags = etag_values(if_match)
            if "*" not in tags and etag not in tags:
                return 412, "If-Match"
        else:
            t = since("If-Unmodified-Since")
            if t is not None and modified > t:
                return 412, "If-Unmodified-Since"
        if_none = h.get("If-None-Match")
        if if_none is not None:
            tags = etag_values(if_none)
            if "*" in tags or etag in tags:
                return 304, None
        else:
            t = since("If-Modified-Since")
            if t is not None and modified <= t:
                return 304, None
        return None

    def _op_GetObject(self, ctx, body):
        self._get_or_head(ctx, with_body=True)

    def _op_HeadObject(self, ctx, body):
        self._get_or_head(ctx, with_body=False)

    def _get_or_head(self, ctx, with_body):
        meta, data = self.peer.store.read(ctx.bucket, ctx.key)
        if meta is None:
            raise no_such_key(ctx.key)
        headers = self._object_headers(meta)
        cond = self._check_read_conditions(meta)
        if cond is not None:
            status, condition = cond
            if status == 304:
                self._send(ctx, 304, b"", [h for h in headers if h[0] in ("ETag", "Last-Modified")])
                return
            raise S3Error(412, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold",
                          Condition=condition)
        for k, v in ctx.query:
            if k.startswith("response-") and k[9:] in ("content-type", "content-language", "expires", "cache-control",
                                                       "content-disposition", "content-encoding"):
                name = "-".join(w.capitalize() for w in k[9:].split("-"))
                headers = [hv for hv in headers if hv[0].lower() != name.lower()] + [(name, v)]
        size = meta["size"]
        rng = self.headers.get("Range")
        status, start, end = 200, 0, size - 1
        if rng:
            m = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", rng)
            if m and (m.group(1) or m.group(2)):
                if m.group(1):
                    start = int(m.group(1))
                    end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
                    if m.group(2) and int(m.group(2)) < start:
                        start, end = 0, size - 1  # syntactically invalid: ignored, as RFC 9110 says
                    elif start >= size:
                        raise S3Error(416, "InvalidRange", "The requested range is not satisfiable",
                                      RangeRequested=rng.strip(), ActualObjectSize=str(size))
                    else:
                        status = 206
                else:
                    n = int(m.group(2))
                    if n == 0:
                        raise S3Error(416, "InvalidRange", "The requested range is not satisfiable",
                                      RangeRequested=rng.strip(), ActualObjectSize=str(size))
                    start, end, status = max(0, size - n), size - 1, 206
        if status == 206:
            headers.append(("Content-Range", f"bytes {start}-{end}/{size}"))
        payload = data[start:end + 1] if size else b""
        ctype = None  # Content-Type is already in headers
        if with_body:
            self._send(ctx, status, payload, headers, content_type=ctype)
        else:
            self._send(ctx, status, b"", headers, content_type=ctype, length=len(payload))

    def _op_DeleteObject(self, ctx, body):
        self.peer.store.delete(ctx.bucket, ctx.key)
        self._send(ctx, 204)

    def _op_PutObject(self, ctx, body):
        h = self.headers
        if not ctx.has_length and not ctx.chunked:
            raise S3Error(411, "MissingContentLength", "You must provide the Content-Length HTTP header.")
        if len(ctx.key.encode("utf-8", "surrogatepass")) > 1024:
            raise S3Error(400, "KeyTooLongError", "Your key is too long", Size=str(len(ctx.key)), MaxSizeAllowed="1024")
        checksum_headers = []
        for name, (alg, fn) in CHECKSUMS.items():
            value = h.get(name)
            if value is None:
                continue
            computed = base64.b64encode(fn(body)).decode()
            if value.strip() != computed:
                raise S3Error(400, "BadDigest", f"The {alg} you specified did not match the calculated checksum.")
            checksum_headers.append((name, computed))
        stored = {}
        for name, value in h.items():
            lname = name.lower()
            if lname.startswith("x-amz-meta-") or lname in STORED_HEADERS:
                stored[lname] = value
        if_none = h.get("If-None-Match")
        if_match = h.get("If-Match")
        store = self.peer.store
        with store.lock:
            current = store.head(ctx.bucket, ctx.key)
            if if_none is not None:
                if if_none.strip() != "*":
                    raise S3Error(501, "NotImplemented", "A header you provided implies functionality that is not "
                                  "implemented", Header="If-None-Match")
                if current is not None:
                    raise S3Error(412, "PreconditionFailed",
                                  "At least one of the pre-conditions you specified did not hold",
                                  Condition="If-None-Match")
            if if_match is not None:
                if current is None:
                    raise no_such_key(ctx.key)
                tags = etag_values(if_match)
                if current["etag"].strip('"') not in tags and "*" not in tags:
                    raise S3Error(412, "PreconditionFailed",
                                  "At least one of the pre-conditions you specified did not hold",
                                  Condition="If-Match")
            match = h.get("x-goog-if-generation-match") if self.peer.gcs else None
            if match is not None:
                have = current.get("generation", 0) if current is not None else 0
                if not match.strip().isdigit() or int(match) != have:
                    raise S3Error(412, "PreconditionFailed",
                                  "At least one of the pre-conditions you specified did not hold.",
                                  Details=f"x-goog-if-generation-match {match.strip()[:40]}, generation {have}")
            meta = store.write(ctx.bucket, ctx.key, body, self.peer.now(), h.get("Content-Type"), stored)
        gcs_headers = [("x-goog-generation", str(meta["generation"])), ("x-goog-metageneration", "1")] \
            if self.peer.gcs else []
        self._send(ctx, 200, b"", [("ETag", meta["etag"]), ("x-amz-server-side-encryption", "AES256")]
                   + checksum_headers + gcs_headers)

    # -- GCS mode: bearer tokens and where they come from ----------------
    def _verify_bearer(self, ctx):
        token = self.headers.get("Authorization")[len("Bearer "):].strip()
        peer = self.peer
        with peer.store.lock:
            t = peer.gcs_tokens.get(token)
        if t is None or t["expires"] <= peer.now():
            ctx.auth = "AuthenticationRequired"
            ctx.auth_reason = "bearer token expired" if t else "bearer token not issued here (or revoked)"
            peer.counters.inc("gcs", "bearer_refused")
            raise S3Error(401, "AuthenticationRequired", "Invalid Credentials")
        ctx.auth = "ok"
        ctx.access_key = "bearer:" + t["subject"]
        ctx.payload = "bearer"
        peer.counters.inc("gcs", "bearer_ok")
        peer.counters.inc("requests", "by_access_key", ctx.access_key)

    def _issue_token(self, ctx, source, subject, lifetime):
        token = "ya29.s3peer-" + secrets.token_urlsafe(32)
        with self.peer.store.lock:
            self.peer.gcs_tokens[token] = {"expires": self.peer.now() + lifetime, "source": source,
                                           "subject": subject}
        self.peer.counters.inc("gcs", "tokens_issued", source)
        ctx.auth = "ok"
        ctx.auth_reason = f"issued a {source} token for {subject}, valid {lifetime}s"
        self._send_json(ctx, 200, {"access_token": token, "expires_in": int(lifetime), "token_type": "Bearer"})

    def _token_refused(self, ctx, status, error, reason):
        ctx.auth = error
        ctx.auth_reason = reason
        self.peer.counters.inc("gcs", "token_refused", reason)
        self._send_json(ctx, status, {"error": error, "error_description": reason})

    def _gcs_token(self, ctx, body):
        peer = self.peer
        if ctx.raw_path.startswith("/computeMetadata/"):
            ctx.op = "MetadataToken"
            if ctx.raw_path != "/computeMetadata/v1/instance/service-accounts/default/token" or ctx.method != "GET":
                return self._send_json(ctx, 404, {"error": "not_found"})
            if self.headers.get("Metadata-Flavor") != "Google":
                return self._token_refused(ctx, 403, "forbidden", "no Metadata-Flavor: Google header")
            if peer.gcs_metadata is None:
                return self._token_refused(ctx, 404, "not_found", "metadata server not enabled")
            return self._issue_token(ctx, "metadata", "default", peer.gcs_metadata["token_lifetime"])
        ctx.op = "OAuth2Token"
        if ctx.method != "POST":
            return self._send_json(ctx, 405, {"error": "invalid_request"})
        if not (self.headers.get("Content-Type") or "").startswith("application/x-www-form-urlencoded"):
            return self._token_refused(ctx, 400, "invalid_request", "not a form")
        form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return self._token_refused(ctx, 400, "unsupported_grant_type", "grant_type is not jwt-bearer")
        parts = form.get("assertion", "").split(".")
        if len(parts) != 3:
            return self._token_refused(ctx, 400, "invalid_grant", "assertion is not a JWT")
        try:
            header, claims = (json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4))) for p in parts[:2])
            sig = base64.urlsafe_b64decode(parts[2] + "=" * (-len(parts[2]) % 4))
        except ValueError:
            return self._token_refused(ctx, 400, "invalid_grant", "assertion does not decode")
        if header.get("alg") != "RS256" or header.get("typ", "JWT") != "JWT":
            return self._token_refused(ctx, 400, "invalid_grant", "alg is not RS256")
        account = peer.gcs_accounts.get(claims.get("iss"))
        if account is None:
            return self._token_refused(ctx, 400, "invalid_grant", "iss names no known service account")
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding
        key = serialization.load_pem_public_key(account["public_key_pem"].encode())
        try:
            key.verify(sig, (parts[0] + "." + parts[1]).encode(), padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            return self._token_refused(ctx, 400, "invalid_grant", "signature does not verify")
        expected_aud = f"http://{self.headers.get('Host', '')}/__gcs/token"
        if claims.get("aud") != expected_aud:
            return self._token_refused(ctx, 400, "invalid_grant", "aud is not this token endpoint")
        if "https://www.googleapis.com/auth/devstorage.read_write" not in str(claims.get("scope", "")).split(" "):
            return self._token_refused(ctx, 400, "invalid_scope", "scope is not devstorage.read_write")
        now = peer.now()
        iat, exp = claims.get("iat"), claims.get("exp")
        if not isinstance(iat, int) or not isinstance(exp, int) or iat > now + 60 or exp <= now or exp - iat > 3600:
            return self._token_refused(ctx, 400, "invalid_grant", "iat/exp are not current (at most an hour)")
        return self._issue_token(ctx, "service-account", claims["iss"], account["token_lifetime"])

    # -- STS ------------------------------------------------------------
    def _sts(self, ctx, body):
        params = {}
        for k, v in parse_qsl(ctx.raw_query, keep_blank_values=True):
            params.setdefault(k, v)
        if ctx.method == "POST" and body:
            for k, v in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True):
                params.setdefault(k, v)
        action = params.get("Action", "")
        ctx.op = action or None
        self.peer.counters.inc("sts", "calls", action or "(none)")
        if action != "AssumeRoleWithWebIdentity":
            if not action:
                raise STSError(400, "MissingAction", "Missing Action")
            raise STSError(400, "InvalidAction", f"Could not find operation {action} for version "
                                                 f"{params.get('Version', 'NO_VERSION_SPECIFIED')}")
        if params.get("Version") != "2011-06-15":
            raise STSError(400, "InvalidAction", f"Could not find operation {action} for version "
                                                 f"{params.get('Version', 'NO_VERSION_SPECIFIED')}")
        errors = []
        role_arn = params.get("RoleArn")
        session = params.get("RoleSessionName")
        token = params.get("WebIdentityToken")
        if role_arn is None:
            errors.append("Value null at 'roleArn' failed to satisfy constraint: Member must not be null")
        elif not (20 <= len(role_arn) <= 2048) or not ROLE_ARN_RE.match(role_arn):
            errors.append(f"Value '{role_arn}' at 'roleArn' failed to satisfy constraint: "
                          "Member must be a valid IAM role ARN")
        if session is None:
            errors.append("Value null at 'roleSessionName' failed to satisfy constraint: Member must not be null")
        elif not SESSION_NAME_RE.match(session):
            errors.append(f"Value '{session}' at 'roleSessionName' failed to satisfy constraint: Member must "
                          r"satisfy regular expression pattern: [\w+=,.@-]*")
        if token is None:
            errors.append("Value null at 'webIdentityToken' failed to satisfy constraint: Member must not be null")
        elif not (4 <= len(token) <= 20000):
            errors.append("Value at 'webIdentityToken' failed to satisfy constraint: Member must have length "
                          "between 4 and 20000")
        duration = 3600
        if "DurationSeconds" in params:
            try:
                duration = int(params["DurationSeconds"])
            except ValueError:
                duration = -1
            if duration < 900:
                errors.append(f"Value '{params['DurationSeconds']}' at 'durationSeconds' failed to satisfy "
                              "constraint: Member must have value greater than or equal to 900")
            elif duration > 43200:
                errors.append(f"Value '{params['DurationSeconds']}' at 'durationSeconds' failed to satisfy "
                              "constraint: Member must have value less than or equal to 43200")
        if errors:
            raise STSError(400, "ValidationError", f"{len(errors)} validation error{'s' if len(errors) > 1 else ''} "
                           "detected: " + "; ".join(errors))
        peer = self.peer
        with peer.store.lock:
            reg = peer.store.web_identities.get(token)
            reg = dict(reg) if reg else None
        if reg is None:
            ctx.auth_reason = "web identity token not registered"
            raise STSError(400, "InvalidIdentityToken", "The web identity token that was passed could not be "
                           "validated by AWS. Get a new identity token from the identity provider and then retry "
                           "the request.")
        if reg.get("expired"):
            ctx.auth_reason = "web identity token registered as expired"
            raise STSError(400, "ExpiredTokenException", "Token expired: current date/time must be before the "
                           "expiration date/time.")
        if reg["role_arn"] != role_arn:
            ctx.auth_reason = "web identity token registered for another role"
            raise STSError(403, "AccessDenied", "Not authorized to perform sts:AssumeRoleWithWebIdentity")
        lifetime = reg.get("lifetime") or duration
        now = peer.now()
        expires = math.ceil(now + float(lifetime))
        ak = random_id("ASIA", 16)
        sk = base64.b64encode(secrets.token_bytes(30)).decode()
        session_token = base64.b64encode(secrets.token_bytes(300)).decode()
        peer.add_user(ak, sk, session_token, expires, role_arn=role_arn, session=session)
        ctx.access_key = ak
        claims = _jwt_claims(token)
        subject = reg.get("subject") or claims.get("sub") or "s3peer-subject"
        provider = reg.get("provider") or claims.get("iss") or "s3peer.local"
        audience = reg.get("audience") or claims.get("aud") or "sts.amazonaws.com"
        if isinstance(audience, list):
            audience = audience[0] if audience else ""
        role_path = role_arn.split(":role/", 1)[1]
        role_name = role_path.rsplit("/", 1)[-1]
        role_id = "AROA" + hashlib.sha256(role_arn.encode()).hexdigest().upper()[:17]
        xml = f"""<AssumeRoleWithWebIdentityResponse xmlns="{STS_NS}">
  <AssumeRoleWithWebIdentityResult>
    <SubjectFromWebIdentityToken>{xml_text(subject)}</SubjectFromWebIdentityToken>
    <Audience>{xml_text(audience)}</Audience>
    <AssumedRoleUser>
      <Arn>arn:aws:sts::{ACCOUNT_ID}:assumed-role/{xml_text(role_name)}/{xml_text(session)}</Arn>
      <AssumedRoleId>{role_id}:{xml_text(session)}</AssumedRoleId>
    </AssumedRoleUser>
    <Credentials>
      <AccessKeyId>{ak}</AccessKeyId>
      <SecretAccessKey>{sk}</SecretAccessKey>
      <SessionToken>{session_token}</SessionToken>
      <Expiration>{iso_seconds(expires)}</Expiration>
    </Credentials>
    <Provider>{xml_text(provider)}</Provider>
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata>
    <RequestId>{ctx.rid}</RequestId>
  </ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>
"""
        peer.counters.inc("sts", "ok", action)
        ctx.auth = "ok"
        ctx.auth_reason = f"issued {ak} for {role_arn}, valid {lifetime}s"
        self._send(ctx, 200, xml.encode(), {"x-amzn-RequestId": ctx.rid}, content_type="text/xml")

    # -- control ----------------------------------------------------------
    def _control(self, ctx, body):
        peer = self.peer
        store = peer.store
        path = ctx.raw_path[len("/__peer"):] or "/"
        query = dict(parse_qsl(ctx.raw_query, keep_blank_values=True))
        method = ctx.method
        try:
            data = json.loads(body) if body and method in ("POST",) else {}
            if not isinstance(data, dict):
                raise ValueError("the body must be a JSON object")
        except ValueError as e:
            return self._send_json(ctx, 400, {"error": f"bad JSON: {e}"})
        try:
            if path == "/gcs/service-accounts" and method == "POST":
                serialization = __import__("cryptography.hazmat.primitives.serialization", fromlist=["x"])
                serialization.load_pem_public_key(data["public_key_pem"].encode())  # refuse a bad key now
                with store.lock:
                    peer.gcs_accounts[data["client_email"]] = {"public_key_pem": data["public_key_pem"],
                                                               "token_lifetime": float(data.get("token_lifetime") or 3600)}
                return self._send_json(ctx, 200, {"client_email": data["client_email"]})
            if path == "/gcs/metadata" and method == "POST":
                with store.lock:
                    peer.gcs_metadata = {"token_lifetime": float(data.get("token_lifetime") or 3600)} \
                        if data.get("enabled", True) else None
                return self._send_json(ctx, 200, {"enabled": peer.gcs_metadata is not None})
            if path == "/gcs/revoke-tokens" and method == "POST":
                with store.lock:
                    n = len(peer.gcs_tokens)
                    peer.gcs_tokens.clear()
                return self._send_json(ctx, 200, {"revoked": n})
            if path == "/health" and method == "GET":
                return self._send_json(ctx, 200, {"ok": True, "port": peer.port, "region": peer.region,
                                                  "state_dir": store.dir})
            if path == "/buckets" and method == "POST":
                name = data.get("name", "")
                if not BUCKET_RE.match(name) or ".." in name:
                    return self._send_json(ctx, 400, {"error": f"invalid bucket name {name!r}"})
                created = store.create_bucket(name, peer.now())
                return self._send_json(ctx, 201 if created else 200, {"name": name, "created": created})
            if path == "/buckets" and method == "GET":
                with store.lock:
                    return self._send_json(ctx, 200, {"buckets": sorted(store.buckets)})
            if path.startswith("/buckets/") and method == "DELETE":
                name = unquote(path[len("/buckets/"):])
                return self._send_json(ctx, 200, {"deleted": store.delete_bucket(name, force=True)})
            if path == "/users" and method == "POST":
                expires = peer.now() + float(data["expires_in"]) if data.get("expires_in") is not None else None
                peer.add_user(data.get("access_key"), data.get("secret_key"), data.get("session_token"), expires)
                return self._send_json(ctx, 200, {"access_key": data["access_key"]})
            if path == "/users" and method == "GET":
                with store.lock:
                    users = [{"access_key": ak, "temporary": bool(u.get("token")), "expires": u.get("expires"),
                              "role_arn": u.get("role_arn")} for ak, u in sorted(store.users.items())]
                return self._send_json(ctx, 200, {"users": users})
            if path.startswith("/users/") and method == "DELETE":
                ak = unquote(path[len("/users/"):])
                with store.lock:
                    found = store.users.pop(ak, None) is not None
                    store.save()
                return self._send_json(ctx, 200, {"deleted": found})
            if path == "/web-identity" and method == "POST":
                if not data.get("role_arn") or not data.get("token"):
                    return self._send_json(ctx, 400, {"error": "role_arn and token are required"})
                reg = {"role_arn": data["role_arn"], "lifetime": data.get("lifetime"), "subject": data.get("subject"),
                       "expired": bool(data.get("expired")), "provider": data.get("provider"),
                       "audience": data.get("audience")}
                with store.lock:
                    store.web_identities[data["token"]] = reg
                    store.save()
                return self._send_json(ctx, 200, {"role_arn": data["role_arn"]})
            if path == "/web-identity" and method == "DELETE":
                with store.lock:
                    store.web_identities.clear()
                    store.save()
                return self._send_json(ctx, 200, {"cleared": True})
            if path == "/credentials/expire" and method == "POST":
                ak = data.get("access_key")
                n = 0
                with store.lock:
                    for key, u in store.users.items():
                        if u.get("token") and (ak is None or ak == key):
                            u["expires"] = peer.now() - 1
                            n += 1
                    store.save()
                return self._send_json(ctx, 200, {"expired": n})
            if path == "/faults" and method == "POST":
                return self._send_json(ctx, 200, {"fault": peer.faults.add(data)})
            if path == "/faults" and method == "GET":
                return self._send_json(ctx, 200, {"faults": peer.faults.snapshot()})
            if path == "/faults" and method == "DELETE":
                peer.faults.clear()
                return self._send_json(ctx, 200, {"cleared": True})
            if path == "/counters" and method == "GET":
                return self._send_json(ctx, 200, peer.counters.snapshot())
            if path in ("/counters/reset", "/counters") and method in ("POST", "DELETE"):
                peer.counters.reset()
                return self._send_json(ctx, 200, {"reset": True})
            if path == "/requests" and method == "GET":
                limit = int(query.get("limit", "200"))
                return self._send_json(ctx, 200, {"requests": list(peer.requests)[-limit:] if limit else []})
            if path == "/settings" and method == "POST":
                if "clock_offset" in data:
                    peer.clock_offset = float(data["clock_offset"])
                if "reject_chunked" in data:
                    peer.reject_chunked = bool(data["reject_chunked"])
                return self._send_json(ctx, 200, {"clock_offset": peer.clock_offset,
                                                  "reject_chunked": peer.reject_chunked})
            if path.startswith("/objects/") and method == "GET":
                bucket = unquote(path[len("/objects/"):])
                if not store.has_bucket(bucket):
                    return self._send_json(ctx, 404, {"error": f"no bucket {bucket!r}"})
                prefix = query.get("prefix", "")
                objs = [{"key": m["key"], "size": m["size"], "etag": m["etag"], "sha256": m["sha256"],
                         "generation": m.get("generation", 0),
                         "last_modified": iso_millis(m["last_modified"]), "content_type": m["content_type"],
                         "metadata": m.get("headers", {})}
                        for k, m in sorted(store.keys(bucket).items()) if k.startswith(prefix)]
                return self._send_json(ctx, 200, {"bucket": bucket, "objects": objs})
            if path.startswith("/object/"):
                bucket, _, key = path[len("/object/"):].partition("/")
                bucket, key = unquote(bucket), unquote(key)
                if not store.has_bucket(bucket):
                    return self._send_json(ctx, 404, {"error": f"no bucket {bucket!r}"})
                if method == "GET":
                    meta, data_ = store.read(bucket, key)
                    if meta is None:
                        return self._send_json(ctx, 404, {"error": f"no key {key!r}"})
                    return self._send(ctx, 200, data_, [("ETag", meta["etag"])], content_type="application/octet-stream")
                if method == "PUT":
                    meta = store.write(bucket, key, body, peer.now(), self.headers.get("Content-Type"))
                    return self._send_json(ctx, 200, {"etag": meta["etag"]})
                if method == "DELETE":
                    return self._send_json(ctx, 200, {"deleted": store.delete(bucket, key)})
            return self._send_json(ctx, 404, {"error": f"no control endpoint {method} /__peer{path}"})
        except (ValueError, KeyError, TypeError) as e:
            return self._send_json(ctx, 400, {"error": f"{type(e).__name__}: {e}"})
        except S3Error as e:
            return self._send_json(ctx, e.status, {"error": e.code, "message": e.message})


def _jwt_claims(token):
    """The claims of a JWT, unverified (only to echo sub/iss/aud like STS does)."""
    try:
        payload = token.split(".")[1]
        payload += "=" * (-len(payload) % 4)
        claims = json.loads(base64.urlsafe_b64decode(payload))
        return claims if isinstance(claims, dict) else {}
    except (IndexError, ValueError):
        return {}


class PeerServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64


def main(argv=None):
    ap = argparse.ArgumentParser(description="S3 + STS test peer verifying SigV4 with botocore")
    ap.add_argument("--port", type=int, required=True, help="port on 127.0.0.1 (0: any, written to STATE_DIR/port)")
    ap.add_argument("--state-dir", required=True, help="where buckets, objects and users persist")
    ap.add_argument("--users", help="JSON file of access keys and secrets")
    ap.add_argument("--region", default="us-east-1")
    ap.add_argument("--reject-chunked", action="store_true",
                    help="answer Transfer-Encoding: chunked uploads 501 NotImplemented, as AWS S3 does")
    ap.add_argument("--max-body-mb", type=int, default=256)
    ap.add_argument("--quiet", action="store_true", help="log only failed requests")
    ap.add_argument("--gcs", action="store_true", help="GCS mode: generations and bearer tokens (see above)")
    ap.add_argument("--exit-with-parent", action="store_true",
                    help="stop when the process that started this one dies (no orphan after a crashed test run)")
    args = ap.parse_args(argv)
    try:
        _botocore()
    except ImportError as e:
        sys.stderr.write(f"s3peer: botocore is required ({e}); run with {SYSTEM_PYTHON}\n")
        return 2
    os.makedirs(args.state_dir, exist_ok=True)
    peer = Peer(args.state_dir, args.region, args.reject_chunked, args.max_body_mb << 20, args.quiet, args.gcs)
    if args.users:
        n = peer.load_users_file(args.users)
        peer.log(f"loaded {n} user(s) from {args.users}")
    try:
        server = PeerServer(("127.0.0.1", args.port), Handler)
    except OSError as e:
        sys.stderr.write(f"s3peer: cannot listen on 127.0.0.1:{args.port}: {e}\n")
        return 3
    server.peer = peer
    peer.port = server.server_address[1]
    with open(os.path.join(args.state_dir, "port"), "w") as f:
        f.write(f"{peer.port}\n")

    def on_signal(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if args.exit_with_parent:
        parent = os.getppid()

        def watch_parent():
            while os.getppid() == parent:
                time.sleep(0.5)
            peer.log(f"parent {parent} is gone; stopping")
            os.kill(os.getpid(), signal.SIGTERM)

        threading.Thread(target=watch_parent, daemon=True).start()
    peer.log(f"listening on 127.0.0.1:{peer.port}, region {peer.region}, state in {peer.store.dir}, "
             f"{len(peer.store.buckets)} bucket(s), {len(peer.store.users)} user(s)")
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    try:
        server.serve_forever(poll_interval=0.2)
    except (SystemExit, KeyboardInterrupt):
        pass
    finally:
        server.server_close()
        peer.log("stopped")
    return 0


# --------------------------------------------------------------------------
# client side: signing with botocore, and the S3Peer process wrapper for tests


def sign_headers(method, url, body=b"", access_key=None, secret_key=None, session_token=None, region="us-east-1",
                 headers=None, unsigned_payload=False, timestamp=None):
    """Headers (including Host and Authorization) that botocore's S3SigV4Auth
    signs for this request; url is what the request's Host and path are signed
    as (http://host[:port]/path?query). timestamp: 'YYYYMMDDTHHMMSSZ' (default now)."""
    S3SigV4Auth, AWSRequest, _, Credentials = _botocore()
    parts = urlsplit(url)
    hdrs = {"Host": parts.netloc}
    hdrs.update(headers or {})
    request = AWSRequest(method=method, url=url, headers=hdrs, data=body or b"")
    if unsigned_payload:
        class _S3Config:
            s3 = {"payload_signing_enabled": False}
        request.context["client_config"] = _S3Config()
    signer = S3SigV4Auth(Credentials(access_key, secret_key, session_token), "s3", region)
    request.context["timestamp"] = timestamp or time.strftime(SIGV4_TIMESTAMP, time.gmtime())
    # what add_auth() does, with the timestamp chosen by the caller
    signer._modify_request_before_signing(request)
    canonical = signer.canonical_request(request)
    signature = signer.signature(signer.string_to_sign(request, canonical), request)
    signer._inject_signature_to_request(request, signature)
    return list(request.headers.items())


def http_request(port, method, path, body=b"", headers=(), timeout=10.0):
    """One request to 127.0.0.1:port with exactly these headers (Host included).
    Returns (status, {lowercase header: value}, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        names = set()
        for k, v in headers:
            conn.putheader(k, v)
            names.add(k.lower())
        if body and "content-length" not in names and "transfer-encoding" not in names:
            conn.putheader("Content-Length", str(len(body)))
        elif not body and method in ("PUT", "POST") and "content-length" not in names:
            conn.putheader("Content-Length", "0")
        conn.endheaders(body if body else None)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


def xml_field(body, tag):
    """The text of the first <tag> element of an XML answer, unescaped (None if absent)."""
    m = re.search(rb"<%s>(.*?)</%s>" % (tag.encode(), tag.encode()), body, re.S)
    return _xml_unescape(m.group(1).decode()) if m else None


try:
    # Beside the tests: their ports (below the ephemeral range, this test
    # file's share of it when files run side by side).
    from harness import free_port
except ImportError:
    def free_port():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]


class S3Peer:
    """The peer in its own process, for tests.

        peer = S3Peer().start()
        peer.create_bucket("holdfast-config")
        peer.add_user("AKIAHOLDFAST", "secret")
        ...                       # point the gateway at peer.endpoint
        peer.objects("holdfast-config")
        peer.stop()               # by pid; peer.start() again keeps the state

    Every S3Peer has its own admin key (peer.access_key / peer.secret_key) that
    put() signs with by default; its requests show in counters()["requests"]
    ["by_access_key"] under that key. get(), objects() and delete() use the
    control endpoints and are not counted as S3 requests."""

    def __init__(self, state_dir=None, region="us-east-1", port=None, users=None, python=None, log_path=None,
                 reject_chunked=False, quiet=False, gcs=False):
        """gcs: GCS mode (the region is then "auto", the scope GCS takes with HMAC keys)."""
        self.gcs = gcs
        if gcs and region == "us-east-1":
            region = "auto"
        self._own_dir = state_dir is None
        self.state_dir = state_dir or tempfile.mkdtemp(prefix="s3peer-")
        self.region = region
        self.port = port
        self._fixed_port = port is not None
        self.users_file = users
        self.python = python or (SYSTEM_PYTHON if os.path.exists(SYSTEM_PYTHON) else sys.executable)
        self.log_path = log_path or os.path.join(self.state_dir, "s3peer.log")
        self.reject_chunked = reject_chunked
        self.quiet = quiet
        self.proc = None
        self._log = None
        self.access_key = random_id("AKIAS3PEER", 10)
        self.secret_key = base64.b64encode(secrets.token_bytes(30)).decode()

    # -- process ----------------------------------------------------------
    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout=10.0):
        if self.proc is not None and self.proc.poll() is None:
            return self
        last_error = None
        for _ in range(1 if self._fixed_port else 5):
            port = self.port if self._fixed_port else free_port()
            args = [self.python, SCRIPT, "--port", str(port), "--state-dir", self.state_dir, "--region", self.region,
                    "--exit-with-parent"]
            if self.users_file:
                args += ["--users", self.users_file]
            if self.reject_chunked:
                args.append("--reject-chunked")
            if self.quiet:
                args.append("--quiet")
            if self.gcs:
                args.append("--gcs")
            self._log = open(self.log_path, "ab")
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._log,
                                         close_fds=True)
            if self._wait_ready(timeout):
                self.port = port
                self._fixed_port = True  # a restart keeps the port the gateway was configured with
                self.add_user(self.access_key, self.secret_key)
                return self
            last_error = f"s3peer (pid {self.proc.pid}) exited with {self.proc.poll()} before ready"
            self._reap()
        raise RuntimeError(f"{last_error}; log: {self.log_path}\n{self.log_text()[-2000:]}")

    def _wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], max(0.0, min(0.5, deadline - time.monotonic())))
            if ready:
                line = fd.readline()
                if not line:
                    return False
                if line.strip() == b"ready":
                    fd.close()
                    return True
            elif self.proc.poll() is not None:
                return False
        os.kill(self.proc.pid, signal.SIGKILL)
        return False

    def _reap(self):
        if self.proc is not None:
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
            if self.proc.stdout and not self.proc.stdout.closed:
                self.proc.stdout.close()
        if self._log:
            self._log.close()
            self._log = None

    def stop(self, timeout=5.0):
        """Stops the process by its pid (SIGTERM, then SIGKILL); the state stays."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
        self._reap()
        self.proc = None

    def restart(self, timeout=10.0):
        self.stop()
        return self.start(timeout)

    def destroy(self):
        """stop(), then remove the state directory if this S3Peer made it."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.destroy()

    def log_text(self):
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    # -- control endpoints ------------------------------------------------
    def control(self, method, path, body=None, raw=False, timeout=10.0):
        """(status, parsed JSON or raw bytes) of a /__peer/ endpoint."""
        data = b""
        headers = [("Host", f"127.0.0.1:{self.port}")]
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            headers.append(("Content-Type", "application/json"))
        status, _, out = http_request(self.port, method, "/__peer" + path, data, headers, timeout)
        if raw:
            return status, out
        return status, json.loads(out) if out else None

    def _ok(self, method, path, body=None):
        status, out = self.control(method, path, body)
        if status >= 400:
            raise RuntimeError(f"s3peer {method} /__peer{path}: {status} {out}")
        return out

    def create_bucket(self, name):
        """True if created, False if it already existed."""
        return self._ok("POST", "/buckets", {"name": name})["created"]

    def delete_bucket(self, name):
        return self._ok("DELETE", "/buckets/" + quote(name, safe=""))["deleted"]

    def add_user(self, access_key, secret_key, session_token=None, expires_in=None):
        body = {"access_key": access_key, "secret_key": secret_key}
        if session_token is not None:
            body["session_token"] = session_token
        if expires_in is not None:
            body["expires_in"] = expires_in
        self._ok("POST", "/users", body)

    def remove_user(self, access_key):
        return self._ok("DELETE", "/users/" + quote(access_key, safe=""))["deleted"]

    def register_web_identity(self, role_arn, token, lifetime=None, subject=None, expired=False):
        """AssumeRoleWithWebIdentity(role_arn, token) will succeed; credentials live
        `lifetime` seconds if given (any value, even below STS's 900), else DurationSeconds."""
        self._ok("POST", "/web-identity", {"role_arn": role_arn, "token": token, "lifetime": lifetime,
                                            "subject": subject, "expired": expired})

    def expire_credentials(self, access_key=None):
        """Makes temporary credentials (all, or that key's) expired now; returns how many."""
        return self._ok("POST", "/credentials/expire", {"access_key": access_key} if access_key else {})["expired"]

    def fault(self, kind, count=1, seconds=0.0, target="s3", method=None, bucket=None, key=None, then="process",
              status=None, code=None, message=None):
        """The next `count` matching requests fail: kind '500' (InternalError), '503'
        (SlowDown), 'hang' (sleep `seconds`, then `then`: process|close|500|503),
        'close' (connection closed, no answer) or 'error' (status/code/message)."""
        spec = {"kind": str(kind), "count": count, "seconds": seconds, "target": target, "method": method,
                "bucket": bucket, "key": key, "then": then}
        for name, value in (("status", status), ("code", code), ("message", message)):
            if value is not None:
                spec[name] = value
        return self._ok("POST", "/faults", spec)["fault"]

    def clear_faults(self):
        self._ok("DELETE", "/faults")

    def counters(self):
        return self._ok("GET", "/counters")

    def reset_counters(self):
        self._ok("POST", "/counters/reset")

    def requests(self, limit=200):
        return self._ok("GET", f"/requests?limit={int(limit)}")["requests"]

    def settings(self, clock_offset=None, reject_chunked=None):
        body = {}
        if clock_offset is not None:
            body["clock_offset"] = clock_offset
        if reject_chunked is not None:
            body["reject_chunked"] = reject_chunked
        return self._ok("POST", "/settings", body)

    def add_service_account(self, client_email, public_key_pem, token_lifetime=None):
        """GCS mode: POST /__gcs/token issues tokens for JWTs this key signed with iss = client_email."""
        self._ok("POST", "/gcs/service-accounts", {"client_email": client_email, "public_key_pem": public_key_pem,
                                                   "token_lifetime": token_lifetime})

    def metadata_server(self, enabled=True, token_lifetime=None):
        """GCS mode: the metadata server's token endpoint answers (or not)."""
        self._ok("POST", "/gcs/metadata", {"enabled": enabled, "token_lifetime": token_lifetime})

    def revoke_tokens(self):
        """GCS mode: every bearer token issued so far is refused from now on; returns how many."""
        return self._ok("POST", "/gcs/revoke-tokens")["revoked"]

    @property
    def token_uri(self):
        return self.endpoint + "/__gcs/token"

    def objects(self, bucket, prefix=""):
        """[{"key", "size", "etag", "sha256", "generation", "last_modified", "content_type", "metadata"}] sorted by key."""
        q = "?prefix=" + quote(prefix, safe="") if prefix else ""
        return self._ok("GET", "/objects/" + quote(bucket, safe="") + q)["objects"]

    def get(self, bucket, key):
        """The object's bytes, or None (control endpoint: unsigned, not counted)."""
        status, out = self.control("GET", f"/object/{quote(bucket, safe='')}/{quote(key, safe='')}", raw=True)
        if status == 404:
            return None
        if status != 200:
            raise RuntimeError(f"s3peer get {bucket}/{key}: {status} {out[:200]!r}")
        return out

    def delete(self, bucket, key):
        return self._ok("DELETE", f"/object/{quote(bucket, safe='')}/{quote(key, safe='')}")["deleted"]

    def s3_request(self, method, bucket, key="", body=b"", headers=None, query="", access_key=None,
                   secret_key=None, session_token=None, virtual_host=False, unsigned_payload=False, timestamp=None,
                   region=None, timeout=10.0):
        """A real S3 request signed with botocore; returns (status, headers, body)."""
        path = "/" + quote(key, safe="/~") if virtual_host else "/" + bucket + ("/" + quote(key, safe="/~") if key else "")
        host = f"{bucket}.localhost:{self.port}" if virtual_host else f"127.0.0.1:{self.port}"
        url = f"http://{host}{path}" + ("?" + query if query else "")
        if access_key is None:
            access_key, secret_key = self.access_key, self.secret_key
        hdrs = sign_headers(method, url, body, access_key, secret_key, session_token,
                            region or self.region, headers, unsigned_payload, timestamp)
        return http_request(self.port, method, path + ("?" + query if query else ""), body, hdrs, timeout)

    def put(self, bucket, key, data, access_key=None, secret_key=None, session_token=None, headers=None,
            virtual_host=False):
        """PutObject signed by botocore (an independent client); returns the ETag."""
        if isinstance(data, str):
            data = data.encode()
        hdrs = {"Content-Type": "application/octet-stream"}
        hdrs.update(headers or {})
        status, rh, body = self.s3_request("PUT", bucket, key, data, hdrs, access_key=access_key, secret_key=secret_key,
                                           session_token=session_token, virtual_host=virtual_host)
        if status != 200:
            raise RuntimeError(f"s3peer put {bucket}/{key}: {status} {xml_field(body, 'Code')}: "
                               f"{xml_field(body, 'Message')}")
        return rh.get("etag")


if __name__ == "__main__":
    sys.exit(main())
