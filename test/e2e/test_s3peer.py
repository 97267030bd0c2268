"""Self-test of s3peer.py: proves the S3/STS test peer really verifies AWS
Signature V4, using boto3/botocore as the client and a small by-hand SigV4
signer (a third implementation) for the cases botocore will not produce.

Run: cd test/e2e && /usr/bin/python3 -m unittest -v test_s3peer
"""
import contextlib
import datetime
import hashlib
import hmac
import os
import socket
import sys
import time
import unittest
from urllib.parse import quote

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import boto3  # noqa: E402
from botocore.config import Config  # noqa: E402
from botocore.exceptions import ClientError, ReadTimeoutError  # noqa: E402

from s3peer import S3Peer, http_request, sign_headers, xml_field  # noqa: E402

REGION = "us-east-1"
BUCKET = "holdfast-cfg"
AK = "AKIAHOLDFASTTEST0001"
SK = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
ROLE = "arn:aws:iam::123456789012:role/holdfast-backup"
SESSION = boto3.session.Session()


def amz_now(offset=0.0):
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() + offset))


def manual_sign(method, host, key_path, query_pairs, headers, body, ak, sk, region=REGION, timestamp=None,
                payload_hash=None, canonical_path=None):
    """SigV4 for S3 by hand (independent of botocore). key_path is the decoded
    path; canonical_path overrides its canonical (encoded) form. Returns the
    request headers, Host included."""
    ts = timestamp or amz_now()
    payload_hash = payload_hash or hashlib.sha256(body).hexdigest()
    canonical_uri = canonical_path if canonical_path is not None else quote(key_path, safe="/~")
    enc = sorted((quote(k, safe="-_.~"), quote(v, safe="-_.~")) for k, v in query_pairs)
    canonical_query = "&".join(f"{k}={v}" for k, v in enc)
    hdrs = {k.lower(): " ".join(str(v).split()) for k, v in headers.items()}
    hdrs.update({"host": host, "x-amz-date": ts, "x-amz-content-sha256": payload_hash})
    names = sorted(hdrs)
    canonical = "\n".join([method, canonical_uri, canonical_query,
                           "".join(f"{n}:{hdrs[n]}\n" for n in names), ";".join(names), payload_hash])
    scope = f"{ts[:8]}/{region}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", ts, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    k = ("AWS4" + sk).encode()
    for part in (ts[:8], region, "s3", "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    sig = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
    out = [(n, hdrs[n]) for n in names]
    out.append(("Authorization", f"AWS4-HMAC-SHA256 Credential={ak}/{scope}, SignedHeaders={';'.join(names)}, "
                                 f"Signature={sig}"))
    return out


@contextlib.contextmanager
def localhost_subdomains():
    """*.localhost resolves to 127.0.0.1 in this process (glibc does not do it)."""
    real = socket.getaddrinfo

    def fake(host, *args, **kwargs):
        if isinstance(host, str) and host.endswith(".localhost"):
            host = "127.0.0.1"
        return real(host, *args, **kwargs)

    socket.getaddrinfo = fake
    try:
        yield
    finally:
        socket.getaddrinfo = real


class S3PeerTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.peer = S3Peer(quiet=True).start()
        cls.peer.create_bucket(BUCKET)
        cls.peer.add_user(AK, SK)

    @classmethod
    def tearDownClass(cls):
        cls.peer.destroy()

    def setUp(self):
        self.clients = []

    def tearDown(self):
        for client in self.clients:
            client.close()
        self.peer.clear_faults()

    # helpers --------------------------------------------------------------
    def s3(self, ak=AK, sk=SK, token=None, style="path", attempts=1, read_timeout=10, endpoint=None):
        return self.track(SESSION.client(
            "s3", endpoint_url=endpoint or self.peer.endpoint, region_name=REGION, aws_access_key_id=ak,
            aws_secret_access_key=sk, aws_session_token=token,
            config=Config(s3={"addressing_style": style}, signature_version="s3v4", read_timeout=read_timeout,
                          connect_timeout=2, retries={"total_max_attempts": attempts, "mode": "standard"})))

    def track(self, client):
        self.clients.append(client)
        return client

    def sts(self):
        return self.track(SESSION.client("sts", endpoint_url=self.peer.endpoint, region_name=REGION,
                                         aws_access_key_id="unused", aws_secret_access_key="unused",
                                         config=Config(retries={"total_max_attempts": 1})))

    def raw(self, method, key, body=b"", headers=None, ak=AK, sk=SK, **kw):
        """A request signed by botocore's S3SigV4Auth (path style)."""
        return self.peer.s3_request(method, BUCKET, key, body, headers, access_key=ak, secret_key=sk, **kw)

    def assertS3Error(self, result, status, code):
        st, _, body = result
        self.assertEqual((st, xml_field(body, "Code")), (status, code), body.decode(errors="replace"))
        self.assertIsNotNone(xml_field(body, "RequestId"))
        return body

    def client_error(self, fn, *args, **kwargs):
        with self.assertRaises(ClientError) as cm:
            fn(*args, **kwargs)
        err = cm.exception.response
        return err["ResponseMetadata"]["HTTPStatusCode"], err["Error"]["Code"]

    # boto3 round trips -----------------------------------------------------
    def test_boto3_path_style_put_get_head_list_delete(self):
        s3 = self.s3()
        keys = ["cfg/a.json", "cfg/b.json", "cfg/sub/c.json", "other/ünï cöde+=&$@.json"]
        for i, key in enumerate(keys):
            r = s3.put_object(Bucket=BUCKET, Key=key, Body=f"body {i}".encode(), ContentType="application/json",
                              Metadata={"rev": str(i)})
            self.assertEqual(r["ETag"], '"%s"' % hashlib.md5(f"body {i}".encode()).hexdigest())
        got = s3.get_object(Bucket=BUCKET, Key=keys[3])
        self.assertEqual(got["Body"].read(), b"body 3")
        self.assertEqual(got["ContentType"], "application/json")
        self.assertEqual(got["Metadata"], {"rev": "3"})
        self.assertEqual(got["ContentLength"], 6)
        self.assertIsInstance(got["LastModified"], datetime.datetime)
        head = s3.head_object(Bucket=BUCKET, Key="cfg/a.json")
        self.assertEqual(head["ContentLength"], 6)
        self.assertEqual(s3.get_object(Bucket=BUCKET, Key="cfg/a.json", Range="bytes=5-")["Body"].read(), b"0")

        listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="cfg/", Delimiter="/")
        self.assertEqual([o["Key"] for o in listed["Contents"]], ["cfg/a.json", "cfg/b.json"])
        self.assertEqual([p["Prefix"] for p in listed["CommonPrefixes"]], ["cfg/sub/"])
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, PaginationConfig={"PageSize": 1})
        self.assertEqual(sorted(o["Key"] for page in pages for o in page.get("Contents", [])), sorted(keys))
        self.assertEqual([o["Key"] for o in s3.list_objects(Bucket=BUCKET, Prefix="other/")["Contents"]], [keys[3]])

        by_peer = {o["key"]: o for o in self.peer.objects(BUCKET)}
        self.assertEqual(by_peer[keys[3]]["sha256"], hashlib.sha256(b"body 3").hexdigest())
        self.assertEqual(self.peer.get(BUCKET, keys[3]), b"body 3")

        for key in keys:
            s3.delete_object(Bucket=BUCKET, Key=key)
        self.assertEqual(self.client_error(s3.get_object, Bucket=BUCKET, Key="cfg/a.json"), (404, "NoSuchKey"))
        self.assertEqual(self.client_error(s3.get_object, Bucket="no-such-bucket", Key="k"), (404, "NoSuchBucket"))
        self.assertIsNone(self.peer.get(BUCKET, "cfg/a.json"))

    def test_boto3_virtual_host_style(self):
        s3 = self.s3(style="virtual", endpoint=f"http://localhost:{self.peer.port}")
        before = self.peer.counters()["requests"]["by_style"].get("virtual", 0)
        with localhost_subdomains():
            s3.put_object(Bucket=BUCKET, Key="vhost/x.json", Body=b"{}")
            self.assertEqual(s3.get_object(Bucket=BUCKET, Key="vhost/x.json")["Body"].read(), b"{}")
            self.assertEqual([o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="vhost/")["Contents"]],
                             ["vhost/x.json"])
        self.assertEqual(self.peer.counters()["requests"]["by_style"]["virtual"], before + 3)
        hosts = {r["host"] for r in self.peer.requests(3)}
        self.assertEqual(hosts, {f"{BUCKET}.localhost:{self.peer.port}"})

    def test_virtual_host_aws_hostname(self):
        host = f"{BUCKET}.s3.{REGION}.amazonaws.com"
        for method, body in (("PUT", b"aws-host"), ("GET", b"")):
            hdrs = sign_headers(method, f"http://{host}/aws/host.txt", body, AK, SK, region=REGION)
            st, _, out = http_request(self.peer.port, method, "/aws/host.txt", body, hdrs)
            self.assertEqual(st, 200, out)
        self.assertEqual(out, b"aws-host")
        self.assertEqual(self.peer.requests(1)[0]["style"], "virtual")

    def test_independent_signer_special_keys_and_signed_user_agent(self):
        # signed by hand, not by botocore: user-agent is signed too (botocore never signs it itself)
        key = "dir/ünï cöde+=&$@~(1).json"
        host = f"127.0.0.1:{self.peer.port}"
        path = "/" + BUCKET + "/" + key
        hdrs = manual_sign("PUT", host, path, [], {"User-Agent": "holdfast/1.0  (c++)", "Content-Type": "text/plain"},
                           b"manual", AK, SK)
        st, _, out = http_request(self.peer.port, "PUT", quote(path, safe="/~"), b"manual", hdrs)
        self.assertEqual(st, 200, out)
        self.assertEqual(self.peer.get(BUCKET, key), b"manual")
        hdrs = manual_sign("GET", host, "/" + BUCKET, [("list-type", "2"), ("prefix", "dir/ünï c")], {}, b"", AK, SK)
        st, _, out = http_request(self.peer.port, "GET", f"/{BUCKET}?list-type=2&prefix=" + quote("dir/ünï c", safe=""),
                                  b"", hdrs)
        self.assertEqual((st, xml_field(out, "Key")), (200, key))

    def test_non_canonical_path_encoding_is_rejected_with_hint(self):
        # signing the path as sent ('=' unencoded) is what AWS rejects: it signs '%3D'
        host = f"127.0.0.1:{self.peer.port}"
        raw_path = f"/{BUCKET}/a=b.json"
        hdrs = manual_sign("PUT", host, raw_path, [], {}, b"x", AK, SK, canonical_path=raw_path)
        body = self.assertS3Error(http_request(self.peer.port, "PUT", raw_path, b"x", hdrs), 403, "SignatureDoesNotMatch")
        self.assertIn(f"/{BUCKET}/a%3Db.json", xml_field(body, "CanonicalRequest"))
        self.assertIn("canonical URI encoding", xml_field(body, "S3PeerHint"))
        hdrs = manual_sign("PUT", host, raw_path, [], {}, b"x", AK, SK)  # canonical '%3D' form, sent raw: fine
        self.assertEqual(http_request(self.peer.port, "PUT", raw_path, b"x", hdrs)[0], 200)

    # authentication failures -------------------------------------------------
    def test_wrong_secret_is_signature_does_not_match(self):
        self.assertEqual(self.client_error(self.s3(sk="not-the-secret").put_object, Bucket=BUCKET, Key="w", Body=b"x"),
                         (403, "SignatureDoesNotMatch"))
        body = self.assertS3Error(self.raw("PUT", "wrong/secret", b"x", sk="not-the-secret"), 403,
                                  "SignatureDoesNotMatch")
        canonical = xml_field(body, "CanonicalRequest")
        self.assertTrue(canonical.startswith(f"PUT\n/{BUCKET}/wrong/secret\n\n"), canonical)
        self.assertTrue(xml_field(body, "StringToSign").startswith("AWS4-HMAC-SHA256\n"))
        self.assertEqual(xml_field(body, "AWSAccessKeyId"), AK)
        self.assertIsNone(self.peer.get(BUCKET, "wrong/secret"))
        self.assertGreaterEqual(self.peer.counters()["auth"]["failures"]["SignatureDoesNotMatch"], 2)
        self.assertNotIn(SK, self.peer.log_text())

    def test_unknown_access_key(self):
        self.assertEqual(self.client_error(self.s3(ak="AKIAUNKNOWN000000000").list_objects_v2, Bucket=BUCKET),
                         (403, "InvalidAccessKeyId"))

    def test_tampered_body_with_signed_payload_hash(self):
        hdrs = sign_headers("PUT", f"http://127.0.0.1:{self.peer.port}/{BUCKET}/tamper", b"original", AK, SK)
        st = http_request(self.peer.port, "PUT", f"/{BUCKET}/tamper", b"tampered", hdrs)
        body = self.assertS3Error(st, 400, "XAmzContentSHA256Mismatch")
        self.assertEqual(xml_field(body, "S3ComputedContentSHA256"), hashlib.sha256(b"tampered").hexdigest())
        # re-hashing the new body without re-signing breaks the signature instead
        hdrs = [(k, hashlib.sha256(b"tampered").hexdigest() if k.lower() == "x-amz-content-sha256" else v)
                for k, v in hdrs]
        self.assertS3Error(http_request(self.peer.port, "PUT", f"/{BUCKET}/tamper", b"tampered", hdrs), 403,
                           "SignatureDoesNotMatch")
        self.assertIsNone(self.peer.get(BUCKET, "tamper"))

    def test_unsigned_request_is_access_denied(self):
        host = [("Host", f"127.0.0.1:{self.peer.port}")]
        self.assertS3Error(http_request(self.peer.port, "PUT", f"/{BUCKET}/anon", b"x", host), 403, "AccessDenied")
        self.assertS3Error(http_request(self.peer.port, "GET", f"/{BUCKET}?list-type=2", b"", host), 403, "AccessDenied")
        # a signed request with an x-amz-* header added after signing
        hdrs = sign_headers("PUT", f"http://127.0.0.1:{self.peer.port}/{BUCKET}/extra", b"x", AK, SK)
        body = self.assertS3Error(http_request(self.peer.port, "PUT", f"/{BUCKET}/extra", b"x",
                                               hdrs + [("x-amz-meta-sneaky", "1")]), 403, "AccessDenied")
        self.assertEqual(xml_field(body, "HeadersNotSigned"), "x-amz-meta-sneaky")

    def test_skewed_date(self):
        for offset in (-20 * 60, 16 * 60):
            body = self.assertS3Error(self.raw("GET", "skew", timestamp=amz_now(offset)), 403, "RequestTimeTooSkewed")
            self.assertEqual(xml_field(body, "MaxAllowedSkewMilliseconds"), "900000")
        # 10 minutes off is within AWS's 15
        self.assertS3Error(self.raw("GET", "skew", timestamp=amz_now(-600)), 404, "NoSuchKey")

    def test_wrong_region_in_scope(self):
        body = self.assertS3Error(self.raw("GET", "k", region="eu-west-1"), 400, "AuthorizationHeaderMalformed")
        self.assertEqual(xml_field(body, "Region"), REGION)
        self.assertIn(f"expecting '{REGION}'", xml_field(body, "Message"))

    # payload modes ----------------------------------------------------------
    def test_unsigned_payload_and_chunked_transfer(self):
        st, _, out = self.raw("PUT", "unsigned/one", b"unsigned body", unsigned_payload=True)
        self.assertEqual(st, 200, out)
        self.assertEqual(self.peer.requests(1)[0]["payload"], "UNSIGNED-PAYLOAD")
        before = self.peer.counters()["chunked_uploads"]
        for unsigned in (True, False):
            body = b"chunk-one|chunk-two|" * 100
            url = f"http://127.0.0.1:{self.peer.port}/{BUCKET}/chunked/{int(unsigned)}"
            hdrs = sign_headers("PUT", url, body, AK, SK, headers={"Transfer-Encoding": "chunked"},
                                unsigned_payload=unsigned)
            wire = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 700]), body[i:i + 700]) for i in range(0, len(body), 700))
            st, _, out = http_request(self.peer.port, "PUT", f"/{BUCKET}/chunked/{int(unsigned)}", wire + b"0\r\n\r\n",
                                      hdrs)
            self.assertEqual(st, 200, out)
            self.assertEqual(self.peer.get(BUCKET, f"chunked/{int(unsigned)}"), body)
        self.assertEqual(self.peer.counters()["chunked_uploads"], before + 2)

    # conditional requests ---------------------------------------------------
    def test_conditional_writes_and_reads(self):
        key = "cond/state.json"
        st, h1, _ = self.raw("PUT", key, b"v1", {"If-None-Match": "*"})
        self.assertEqual(st, 200)
        body = self.assertS3Error(self.raw("PUT", key, b"v2", {"If-None-Match": "*"}), 412, "PreconditionFailed")
        self.assertEqual(xml_field(body, "Condition"), "If-None-Match")
        self.assertEqual(self.peer.get(BUCKET, key), b"v1")
        self.assertS3Error(self.raw("PUT", key, b"v2", {"If-Match": '"0123456789abcdef0123456789abcdef"'}), 412,
                           "PreconditionFailed")
        st, h2, _ = self.raw("PUT", key, b"v2", {"If-Match": h1["etag"]})
        self.assertEqual(st, 200)
        self.assertEqual(h2["etag"], '"%s"' % hashlib.md5(b"v2").hexdigest())
        self.assertS3Error(self.raw("PUT", "cond/missing", b"x", {"If-Match": h1["etag"]}), 404, "NoSuchKey")
        self.assertEqual(self.raw("GET", key, headers={"If-None-Match": h2["etag"]})[0], 304)
        self.assertEqual(self.raw("GET", key, headers={"If-None-Match": h1["etag"]})[2], b"v2")
        self.assertS3Error(self.raw("GET", key, headers={"If-Match": h1["etag"]}), 412, "PreconditionFailed")

    # STS --------------------------------------------------------------------
    def test_sts_web_identity_credentials_work_then_expire(self):
        token = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJob2xkZmFzdC1ub2RlLTEiLCJpc3MiOiJodHRwczovL29pZGMuZXhhbXBsZSJ9.x"
        self.peer.register_web_identity(ROLE, token, lifetime=2)
        sts = self.sts()
        calls = self.peer.counters()["sts"]["calls"].get("AssumeRoleWithWebIdentity", 0)
        r = sts.assume_role_with_web_identity(RoleArn=ROLE, RoleSessionName="holdfast", WebIdentityToken=token,
                                              DurationSeconds=900)
        creds = r["Credentials"]
        self.assertTrue(creds["AccessKeyId"].startswith("ASIA"))
        self.assertEqual(r["SubjectFromWebIdentityToken"], "holdfast-node-1")
        self.assertEqual(r["AssumedRoleUser"]["Arn"], "arn:aws:sts::123456789012:assumed-role/holdfast-backup/holdfast")
        self.assertEqual(self.peer.counters()["sts"]["calls"]["AssumeRoleWithWebIdentity"], calls + 1)

        s3 = self.s3(ak=creds["AccessKeyId"], sk=creds["SecretAccessKey"], token=creds["SessionToken"])
        s3.put_object(Bucket=BUCKET, Key="sts/obj", Body=b"temp creds")
        self.assertEqual(s3.get_object(Bucket=BUCKET, Key="sts/obj")["Body"].read(), b"temp creds")
        self.assertEqual(self.client_error(self.s3(ak=creds["AccessKeyId"], sk=creds["SecretAccessKey"],
                                                   token="bm90IHRoZSB0b2tlbg==").list_objects_v2, Bucket=BUCKET),
                         (400, "InvalidToken"))
        self.assertEqual(self.client_error(self.s3(ak=creds["AccessKeyId"], sk=creds["SecretAccessKey"])
                                           .list_objects_v2, Bucket=BUCKET), (403, "InvalidAccessKeyId"))

        self.assertEqual(self.client_error(sts.assume_role_with_web_identity, RoleArn=ROLE, RoleSessionName="holdfast",
                                           WebIdentityToken="not-the-token"), (400, "InvalidIdentityToken"))
        self.assertEqual(self.client_error(sts.assume_role_with_web_identity,
                                           RoleArn="arn:aws:iam::123456789012:role/other", RoleSessionName="holdfast",
                                           WebIdentityToken=token), (403, "AccessDenied"))
        # the real STS XML shape over GET, too
        q = (f"Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn={quote(ROLE, safe='')}"
             f"&RoleSessionName=qs&WebIdentityToken={quote(token, safe='')}&DurationSeconds=3600")
        st, _, out = http_request(self.peer.port, "GET", "/?" + q, b"", [("Host", f"127.0.0.1:{self.peer.port}")])
        self.assertEqual(st, 200, out)
        self.assertIn(b"<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">", out)
        st, _, out = http_request(self.peer.port, "GET", "/?" + q.replace("qs&", "qs&x=1&").replace(
            quote(token, safe=""), "bad-token"), b"", [("Host", f"127.0.0.1:{self.peer.port}")])
        self.assertEqual((st, xml_field(out, "Code"), xml_field(out, "Type")), (400, "InvalidIdentityToken", "Sender"))

        remaining = creds["Expiration"].timestamp() - time.time()
        time.sleep(max(0.0, remaining) + 0.2)
        self.assertEqual(self.client_error(s3.get_object, Bucket=BUCKET, Key="sts/obj"), (400, "ExpiredToken"))
        self.assertNotIn(creds["SessionToken"], self.peer.log_text())
        self.assertNotIn(token, self.peer.log_text())

    # faults -----------------------------------------------------------------
    def test_faults(self):
        self.peer.put(BUCKET, "fault/obj", b"ok")
        s3 = self.s3()
        self.peer.fault("500", count=1)
        self.assertEqual(self.client_error(s3.get_object, Bucket=BUCKET, Key="fault/obj"), (500, "InternalError"))
        self.peer.fault("503", count=1, method="GET", key="fault/obj")
        self.assertEqual(self.client_error(s3.get_object, Bucket=BUCKET, Key="fault/obj"), (503, "SlowDown"))
        self.assertEqual(s3.get_object(Bucket=BUCKET, Key="fault/obj")["Body"].read(), b"ok")

        # a client that retries gets through one 503
        before = self.peer.counters()["requests"]["by_method_key"].get(f"GET {BUCKET}/fault/obj", 0)
        self.peer.fault("503", count=1)
        self.assertEqual(self.s3(attempts=3).get_object(Bucket=BUCKET, Key="fault/obj")["Body"].read(), b"ok")
        self.assertEqual(self.peer.counters()["requests"]["by_method_key"][f"GET {BUCKET}/fault/obj"], before + 2)

        self.peer.fault("hang", seconds=1.0)
        t0 = time.monotonic()
        with self.assertRaises(ReadTimeoutError):
            self.s3(read_timeout=0.3).get_object(Bucket=BUCKET, Key="fault/obj")
        self.assertLess(time.monotonic() - t0, 0.9)

        self.peer.fault("500", target="sts")
        self.assertEqual(self.client_error(self.sts().assume_role_with_web_identity, RoleArn=ROLE,
                                           RoleSessionName="holdfast", WebIdentityToken="whatever"),
                         (500, "InternalFailure"))
        injected = self.peer.counters()["faults_injected"]
        self.assertEqual((injected["500"], injected["503"], injected["hang"]), (2, 2, 1))


class S3PeerGcsModeTest(unittest.TestCase):
    """--gcs: generations, x-goog-if-generation-match, and bearer tokens only
    from the peer's own token endpoint (JWT checked) and metadata server."""

    @classmethod
    def setUpClass(cls):
        cls.peer = S3Peer(gcs=True, quiet=True).start()
        cls.peer.create_bucket(BUCKET)

    @classmethod
    def tearDownClass(cls):
        cls.peer.destroy()

    def request(self, method, key, body=b"", headers=(), token=None):
        h = [("Host", f"127.0.0.1:{self.peer.port}")] + list(headers)
        if token:
            h.append(("Authorization", "Bearer " + token))
        return http_request(self.peer.port, method, f"/{BUCKET}/{key}", body, h)

    def test_generations_and_generation_match(self):
        self.peer.put(BUCKET, "g", b"one")  # HMAC-signed (botocore, scope auto/s3)
        status, h, _ = self.peer.s3_request("GET", BUCKET, "g")
        self.assertEqual(status, 200)
        g1 = int(h["x-goog-generation"])
        status, h, body = self.peer.s3_request("PUT", BUCKET, "g", b"two",
                                               headers={"x-goog-if-generation-match": "0"})
        self.assertEqual((status, xml_field(body, "Code")), (412, "PreconditionFailed"), "0 = create only")
        status, h, _ = self.peer.s3_request("PUT", BUCKET, "g", b"two",
                                            headers={"x-goog-if-generation-match": str(g1)})
        self.assertEqual(status, 200)
        g2 = int(h["x-goog-generation"])
        self.assertGreater(g2, g1)
        status, _, _ = self.peer.s3_request("PUT", BUCKET, "g", b"three",
                                            headers={"x-goog-if-generation-match": str(g1)})
        self.assertEqual(status, 412, "a stale generation loses")
        self.assertEqual(self.peer.get(BUCKET, "g"), b"two")
        status, _, _ = self.peer.s3_request("PUT", BUCKET, "new", b"x", headers={"x-goog-if-generation-match": "0"})
        self.assertEqual(status, 200)

    def test_tokens(self):
        import base64
        import json
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding, rsa
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pub = key.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        email = "t@p.iam.gserviceaccount.com"
        self.peer.add_service_account(email, pub, token_lifetime=600)

        def b64(d):
            return base64.urlsafe_b64encode(d).rstrip(b"=").decode()

        def jwt(signer=key, **over):
            now = int(time.time())
            claims = {"iss": email, "scope": "https://www.googleapis.com/auth/devstorage.read_write",
                      "aud": self.peer.token_uri, "iat": now, "exp": now + 3600}
            claims.update(over)
            head = b64(json.dumps({"alg": "RS256", "typ": "JWT"}).encode()) + "." + b64(json.dumps(claims).encode())
            return head + "." + b64(signer.sign(head.encode(), padding.PKCS1v15(), hashes.SHA256()))

        def exchange(assertion):
            body = ("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=" + assertion).encode()
            status, _, out = http_request(self.peer.port, "POST", "/__gcs/token", body,
                                          [("Host", f"127.0.0.1:{self.peer.port}"),
                                           ("Content-Type", "application/x-www-form-urlencoded")])
            return status, json.loads(out)

        status, ans = exchange(jwt())
        self.assertEqual(status, 200, ans)
        self.assertEqual((ans["token_type"], ans["expires_in"]), ("Bearer", 600))
        token = ans["access_token"]
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        for bad, reason in [(jwt(signer=other), "signature does not verify"),
                            (jwt(aud="https://oauth2.googleapis.com/token"), "aud is not this token endpoint"),
                            (jwt(scope="https://www.googleapis.com/auth/cloud-platform"), "scope is not devstorage.read_write"),
                            (jwt(exp=int(time.time()) - 1), "iat/exp are not current (at most an hour)"),
                            (jwt(iss="x@y"), "iss names no known service account")]:
            status, ans = exchange(bad)
            self.assertEqual((status, ans["error_description"]), (400, reason))

        self.assertEqual(self.request("PUT", "b", b"x", token=token)[0], 200)
        self.assertEqual(self.request("GET", "b", token=token)[0], 200)
        status, _, body = self.request("GET", "b", token="ya29.made-up")
        self.assertEqual((status, xml_field(body, "Code")), (401, "AuthenticationRequired"))
        self.assertEqual(self.peer.revoke_tokens(), 1)
        self.assertEqual(self.request("GET", "b", token=token)[0], 401)

        # The metadata server: only when enabled, only with Metadata-Flavor: Google.
        path = "/computeMetadata/v1/instance/service-accounts/default/token"
        host = ("Host", f"127.0.0.1:{self.peer.port}")
        self.peer.metadata_server(token_lifetime=300)
        status, _, out = http_request(self.peer.port, "GET", path, b"", [host])
        self.assertEqual(status, 403)
        status, _, out = http_request(self.peer.port, "GET", path, b"", [host, ("Metadata-Flavor", "Google")])
        self.assertEqual(status, 200)
        self.assertEqual(self.request("GET", "b", token=json.loads(out)["access_token"])[0], 200)
        c = self.peer.counters()["gcs"]
        self.assertEqual(c["tokens_issued"], {"service-account": 1, "metadata": 1})


class S3PeerRestartTest(unittest.TestCase):
    def test_restart_keeps_objects_users_and_port(self):
        with S3Peer(quiet=True) as peer:
            peer.create_bucket("restart-bucket")
            peer.add_user(AK, SK)
            etag = peer.put("restart-bucket", "persist/me.json", b'{"v":1}', access_key=AK, secret_key=SK)
            port, pid = peer.port, peer.pid
            peer.restart()
            self.assertEqual(peer.port, port)
            self.assertNotEqual(peer.pid, pid)
            st, h, body = peer.s3_request("GET", "restart-bucket", "persist/me.json", access_key=AK, secret_key=SK)
            self.assertEqual((st, h["etag"], body), (200, etag, b'{"v":1}'))
            self.assertEqual([o["key"] for o in peer.objects("restart-bucket")], ["persist/me.json"])


if __name__ == "__main__":
    unittest.main()
