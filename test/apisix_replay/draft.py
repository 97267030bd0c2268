"""Drafts replay cases from APISIX .t files (dev aid; output reviewed by hand)."""
import ast, json, re, subprocess, sys
REPO = "/work/.mirror/apache+apisix/repo"

def show(path):
    return subprocess.run(["git", "-C", REPO, "show", "HEAD:" + path], capture_output=True, text=True, check=True).stdout

SKIP_SECTIONS = {
    "http_config": "custom nginx config", "main_config": "custom nginx config", "stream_config": "stream proxy",
    "stream_server_config": "stream proxy", "stream_request": "stream proxy", "stream_enable": "stream proxy",
    "apisix_yaml": "standalone config in block", "yaml_config": "custom config.yaml",
    "extra_yaml_config": "custom config.yaml", "upstream_server_config": "custom nginx config",
    "extra_init_by_lua": "Lua code", "init_by_lua_block": "Lua code", "extra_init_worker_by_lua": "Lua code",
    "exec": "shell command", "raw_request": "raw request", "extra_stream_config": "stream proxy",
    "stream_response": "stream proxy", "http2": "HTTP/2 client", "use_http2": "HTTP/2 client",
    "stream_upstream_code": "stream proxy", "extra_init_by_lua_start": "Lua code",
    "grep_error_log": None, "grep_error_log_out": None, "error_log": None, "no_error_log": None,
    "wait": None, "timeout": None, "ONLY": None, "LAST": None, "skip_eval": None, "log_level": None,
    "response_body_unlike": None, "abort": None, "ignore_error_log": None,
    "response_args": None,  # no harness reads it: APISIX's tests do not check it either
}

def real_ip_config(http_config):
    """nginx's real-ip directives in a block's http_config, as config.yaml's
    nginx_config.http keys; None when the block configures anything else."""
    out = {}
    for line in http_config.strip().split("\n"):
        m = re.match(r"^\s*(set_real_ip_from|real_ip_header|real_ip_recursive)\s+(\S+);\s*$", line)
        if not m:
            return None
        if m.group(1) == "set_real_ip_from":
            out.setdefault("real_ip_from", []).append(m.group(2))
        elif m.group(1) == "real_ip_header":
            out["real_ip_header"] = m.group(2)
        else:
            out["real_ip_recursive"] = m.group(2)
    return {"nginx_config": {"http": out}} if out else None


def parse_blocks(text):
    data = text.split("\n__DATA__\n", 1)[1]
    parts = re.split(r"^=== TEST (\d+)[:.]?\s*(.*)$", data, flags=re.M)
    blocks = []
    for i in range(1, len(parts), 3):
        num, title, body = int(parts[i]), parts[i + 1].strip(), parts[i + 2]
        body = body.rstrip("\n") + "\n"  # Test::Base drops a block's trailing blank lines
        secs = {}
        for m in re.finditer(r"^--- (\w+)(?:(?: |:)[ \t]*(.*))?\n((?:(?!--- \w).*\n)*)", body, flags=re.M):
            name, inline, content = m.group(1), m.group(2), m.group(3)
            secs[name] = (inline or "").strip(), content
        blocks.append((num, title, secs))
    return blocks

ADMIN_CALL = re.compile(r"""t\(\s*['"](/apisix/admin/[^'"]*)['"]\s*,\s*ngx\.HTTP_(\w+)\s*(?:,\s*\[(=*)\[(.*?)\]\3\]\s*)?(?:,\s*\[(=*)\[.*?\]\5\]\s*)?\)""", re.S)
ALLOWED_LUA = re.compile(r"""^\s*(local t = require\("lib.test_admin"\)\.test|local code, body(, res)? = t\(.*|local code, body|code, body = t\(.*|if code >= 300 then|ngx\.status = code|end|ngx\.say\(body\)|ngx\.print\(body\)|content_by_lua_block \{|location /t \{|\}|return|ngx\.sleep\([\d.]+\)|ngx\.say\("passed"\)|ngx\.say\(code\)|local code, message = t\(.*|if code ~= 200 then|)\s*(--.*)?$""")

def lua_is_admin_only(lua):
    # strip the t(...) calls with their bodies, then check what is left
    stripped = ADMIN_CALL.sub("t()", lua)
    for line in stripped.split("\n"):
        s = line.strip()
        if s.startswith("--"):
            continue
        if not ALLOWED_LUA.match(line) and not re.match(r"^\s*(ngx\.HTTP_\w+,?|\)|t\(\)|local code, body = t\(\)|code, body = t\(\))\s*$", line):
            return False, s
    return True, None

def pl(v):
    """A Perl literal: list of strings/ints, or a scalar."""
    v = v.strip()
    v = re.sub(r'"([^"\\]*(?:\\.[^"\\]*)*)"\s*x\s*(\d+)', lambda m: repr(m.group(1)) + "*" + m.group(2), v)
    if re.search(r"\bx\s*\d|\$|qr|sub\s*\{|\bmap\b|join|\.\.", v):
        raise ValueError("perl expr")
    # "a" x 3 inside lists: expand
    v2 = re.sub(r"('(?:[^'\\]|\\.)*')\*(\d+)", lambda m: ",".join([m.group(1)] * int(m.group(2))), v)
    return ast.literal_eval(v2)

def headers_lines(s):
    out = []
    for line in s.split("\n"):
        if not line.strip():
            continue
        k, _, val = line.partition(":")
        out.append([k.strip(), val.strip()])
    return out

def request_of(reqline):
    reqline = reqline.rstrip("\n")
    first, _, body = reqline.partition("\n")
    m = re.match(r"^(\w+) (\S+)(?: HTTP/[\d.]+)?\s*$", first.strip())
    if not m:
        raise ValueError("request line " + first)
    r = {"method": m.group(1), "path": m.group(2)}
    if body:
        r["body"] = body
    return r

def draft(path):
    text = show(path)
    blocks = parse_blocks(text)
    cases, skipped = [], {}
    state = {"tainted": False, "secs": {}}
    def skip(num, why):
        if num in HAND.get(path, {}):
            return  # written by hand: neither skipped nor a reason to skip what follows
        cfg = state["secs"].get("config", ("", ""))[1]
        if why in ("Lua-driven test", "non-JSON admin body") and "serverless-" in cfg:
            why = "other plugin (serverless functions)"
        elif why == "Lua-driven test" and "resty.http" in cfg:
            why = "Lua-driven test (requests sent from Lua)"
        skipped.setdefault(why, []).append(num)
        if why != "depends on a skipped setup block" and writes(state["secs"]):
            state["tainted"] = True
    tainted = False
    def writes(secs):
        cfg = secs.get("config", ("", ""))[1]
        return bool(re.search(r"t\(\s*['\"]/apisix/admin|etcd\.set|etcd\.delete", cfg)) or "apisix_yaml" in secs
    for num, title, secs in blocks:
        state["secs"] = secs
        why = None
        case_config = None
        if "http_config" in secs:
            case_config = real_ip_config(secs["http_config"][1])
            if case_config is not None:
                secs = {k: v for k, v in secs.items() if k != "http_config"}
        for s in secs:
            if s in SKIP_SECTIONS:
                if SKIP_SECTIONS[s]:
                    why = SKIP_SECTIONS[s]
                    break
            elif s not in ("config", "request", "more_headers", "error_code", "response_body", "response_headers",
                           "response_body_like", "response_headers_like", "pipelined_requests", "response_body_eval",
                           "error_code_like"):
                why = "unsupported section " + s
                break
        if why:
            skip(num, why)
            continue
        steps = []
        nskipped = sum(len(v) for v in skipped.values())
        try:
            cfg = secs.get("config", ("", ""))[1]
            if cfg.strip():
                ok, bad = lua_is_admin_only(cfg)
                if not ok:
                    if "check_schema" in cfg:
                        try:
                            cases.append(schema_case(path, num, title, secs))
                        except (ValueError, AssertionError, IndexError):
                            skip(num, "check_schema called from Lua (not one plugin configuration)")
                        continue
                    skip(num, "Lua-driven test"); continue
                calls = ADMIN_CALL.findall(cfg)
                if not calls:
                    skip(num, "Lua-driven test"); continue
                for p, meth, _, body, _x in calls:
                    st = {"admin": {"method": meth, "path": p}}
                    if body:
                        try:
                            st["admin"]["body"] = json.loads(body)
                        except json.JSONDecodeError:
                            if "serverless" in body or "function" in body:
                                raise
                            st["admin"]["raw_body"] = body  # invalid on purpose: the test wants it refused
                    steps.append(st)
                if "request" in secs and not re.match(r"^GET /t\s*$", secs["request"][1].strip() or secs["request"][0]):
                    skip(num, "Lua-driven test"); continue
                if "pipelined_requests" in secs:
                    skip(num, "Lua-driven test"); continue
                code = secs.get("error_code", ("", ""))
                code = (code[0] or code[1]).strip()
                body = secs.get("response_body", (None, None))[1]
                exp = {}
                last = steps[-1]
                for st in steps[:-1]:
                    st["expect"] = {"status": "2xx"}
                rb = secs.get("response_body", ("", ""))
                mq = rb[0] == "eval" and re.match(r"^qr/(.*)/[ms]*\s*$", rb[1].strip(), re.S)
                if code and code != "200" and mq:
                    exp["status"] = int(code)
                    exp["body_like"] = mq.group(1)
                elif code and code != "200":
                    exp["status"] = int(code)
                    if body and body.strip().startswith("{"):
                        exp["json_body"] = json.loads(body)
                    elif body:
                        exp["body"] = body
                elif not code and secs.get("response_body_like", (None, None))[1] is not None:
                    # The block prints the Admin API's body and leaves /t at
                    # 200: only the body is asserted, not the write's status.
                    like = secs["response_body_like"][1].strip()
                    ml = re.match(r"^qr/(.*)/[ms]*\s*$", like, re.S)
                    exp["status"] = "any"
                    exp["body_like"] = ml.group(1) if ml else like
                else:
                    if body is not None and body.strip() not in ("passed", ""):
                        skip(num, "Lua-driven test"); continue
                    exp["status"] = "2xx"
                last["expect"] = exp
                if 'ngx.say("passed")' in cfg and "ngx.status = code" not in cfg:
                    for st in steps:
                        st["expect"] = {"status": "any"}  # the test ignores what the Admin API answers
            else:
                if "pipelined_requests" in secs:
                    reqs = pl(secs["pipelined_requests"][1] or secs["pipelined_requests"][0])
                elif "request" in secs and secs["request"][0] == "eval":
                    reqs = pl(secs["request"][1])
                    if isinstance(reqs, str):
                        reqs = [reqs]
                elif "request" in secs:
                    reqs = [secs["request"][1] or secs["request"][0] + "\n"]
                else:
                    skip(num, "no request"); continue
                n = len(reqs)
                def per(name, conv=lambda x: x, default=None):
                    if name not in secs:
                        return [default] * n
                    inline, content = secs[name]
                    if inline == "eval":
                        v = pl(content)
                        if isinstance(v, list):
                            return [conv(x) for x in v]
                        return [conv(v)] * n
                    v = inline if inline and not content.strip() else content
                    if inline == "chomp":
                        v = content[:-1] if content.endswith("\n") else content
                    return [conv(v)] * n
                rb = secs.get("response_body")
                if rb and rb[0] == "eval" and re.match(r"^qr/(.*)/[ms]*\s*$", rb[1].strip(), re.S):
                    secs = dict(secs)
                    secs["response_body_like"] = ("", re.match(r"^qr/(.*)/[ms]*\s*$", rb[1].strip(), re.S).group(1) + "\n")
                    del secs["response_body"]
                for sec in ("response_body_like", "response_body_unlike"):
                    rl = secs.get(sec)
                    m = rl and rl[0] == "eval" and re.match(r"^qr/(.*)/[ms]*\s*$", rl[1].strip(), re.S)
                    if m:
                        secs = dict(secs)
                        secs[sec] = ("", m.group(1) + "\n")
                unlike = secs.get("response_body_unlike")
                codes = per("error_code", lambda x: int(str(x).strip()), 200)
                bodies = per("response_body")
                likes = per("response_body_like")
                hdrs = per("response_headers", headers_lines)
                hlikes = per("response_headers_like", headers_lines)
                more = secs.get("more_headers", ("", ""))
                if more[0] == "eval":
                    skip(num, "perl expression"); continue
                mh = headers_lines(more[1] or more[0])
                if any(len(x) != n for x in (codes, bodies, likes, hdrs, hlikes)):
                    skip(num, "perl expression"); continue
                ecl = secs.get("error_code_like")
                for i, rq in enumerate(reqs):
                    exp = {"status": codes[i]}
                    if ecl:
                        exp = {"status_like": (ecl[0] or ecl[1]).strip()}
                    if bodies[i] is not None:
                        exp["body"] = bodies[i]
                    if likes[i] is not None:
                        exp["body_like"] = likes[i].rstrip("\n")
                    if unlike and unlike[0] != "eval":
                        exp["body_unlike"] = unlike[1].rstrip("\n")
                    if hdrs[i]:
                        exp["headers"] = hdrs[i]
                    if hlikes[i]:
                        exp["headers_like"] = hlikes[i]
                    r = request_of(rq)
                    if mh:
                        r["headers"] = mh
                    steps.append({"request": r, "expect": exp})
        except (ValueError, SyntaxError, json.JSONDecodeError) as e:
            skip(num, "perl expression" if "perl" in str(e) or isinstance(e, (SyntaxError, ValueError)) and not isinstance(e, json.JSONDecodeError) else "non-JSON admin body")
            continue
        if any("admin" in st for st in steps):
            state["tainted"] = False
        elif state["tainted"]:
            skip(num, "depends on a skipped setup block")
            continue
        case = {"id": f"{path.split('/')[-1][:-2]}#{num}", "source": f"{path} TEST {num}", "title": title, "steps": steps}
        if case_config:
            case["config"] = case_config
        cases.append(case)
    return cases, skipped

if __name__ == "__main__":
    for p in sys.argv[1:]:
        cases, skipped = draft(p)
        print(p, len(cases), {k: len(v) for k, v in skipped.items()})

FILE_CONFIG = {
    "radixtree-host-uri.t": {"apisix": {"router": {"http": "radixtree_host_uri"}}},
    "radixtree-host-uri3.t": {"apisix": {"router": {"http": "radixtree_host_uri"}}},
    "radixtree-uri-keep-end-slash.t": {"apisix": {"router": {"http": "radixtree_uri"}, "delete_uri_tail_slash": True}},
    "radixtree-uri-with-parameter-encoded-slash.t": {"apisix": {"router": {"http": "radixtree_uri_with_parameter"}, "match_uri_encoded_slash": True}},
    "radixtree-uri-with-parameter.t": {"apisix": {"router": {"http": "radixtree_uri_with_parameter"}}},
    "radixtree-uri-with-parameter2.t": {"apisix": {"router": {"http": "radixtree_uri_with_parameter"}}},
}
for n in ("radixtree-method.t", "radixtree-uri-host.t", "radixtree-uri-multiple.t", "radixtree-uri-priority.t",
          "radixtree-uri-sanity.t", "radixtree-uri-vars.t"):
    FILE_CONFIG[n] = {"apisix": {"router": {"http": "radixtree_uri"}}}

def emit(path, commit, outdir):
    import os
    cases, skipped = draft(path)
    name = path.split("/")[-1]
    keep = []
    for c in cases:
        blob = json.dumps(c)
        if "127.0.0.1:1983" in blob or "https" in json.dumps([s.get("admin", {}).get("body", {}).get("upstream", {}).get("scheme") for s in c["steps"]]):
            skipped.setdefault("TLS test upstream (1983)", []).append(int(c["id"].split("#")[1]))
            continue
        keep.append(c)
    doc = {"source": path, "apisix_commit": commit, "config": FILE_CONFIG.get(name, {}),
           "skipped": {k: sorted(v) for k, v in sorted(skipped.items())}, "cases": keep}
    os.makedirs(outdir, exist_ok=True)
    with open(os.path.join(outdir, name[:-2] + ".json"), "w") as f:
        json.dump(doc, f, indent=1, ensure_ascii=False)
        f.write("\n")
    return len(keep), sum(len(v) for v in skipped.values())

# Decided by reading each case: outside Holdfast's scope or the replay's environment.
OUT_OF_SCOPE = {
    "global-rule#7": "other plugin (uri-blocker)", "global-rule#8": "other plugin (uri-blocker)",
    "radixtree-uri-sanity#17": "other plugin (uri-blocker)",
    "radixtree-uri-host#12": "Lua code (filter_func)", "radixtree-uri-host#14": "Lua code (filter_func)",
    "upstream#12": "test host names (test.com) from APISIX CI's /etc/hosts",
    "merge-route#12": "test host names (test.com) from APISIX CI's /etc/hosts",
    "proxy-rewrite#8": "TLS test upstream (1983)",
}
_emit = emit
def emit(path, commit, outdir):
    global draft
    inner = draft
    def curated(p):
        cases, skipped = inner(p)
        keep = []
        for c in cases:
            why = OUT_OF_SCOPE.get(c["id"])
            if why:
                skipped.setdefault(why, []).append(int(c["id"].split("#")[1]))
            else:
                keep.append(c)
        return keep, skipped
    draft = curated
    try:
        return _emit(path, commit, outdir)
    finally:
        draft = inner

# --- check_schema blocks: the plugin configuration as an Admin API write ----
def lua_table(src, i=0):
    """Parses a Lua table constructor at src[i:]; returns (value, end)."""
    def ws(i):
        while i < len(src):
            if src[i].isspace():
                i += 1
            elif src.startswith("--", i):
                while i < len(src) and src[i] != "\n":
                    i += 1
            else:
                break
        return i
    def value(i):
        i = ws(i)
        c = src[i]
        if c == "{":
            return table(i)
        if c in "'\"":
            j = i + 1
            out = ""
            while src[j] != c:
                if src[j] == "\\":
                    out += {"n": "\n", "t": "\t", "\\": "\\", "'": "'", '"': '"'}.get(src[j + 1], src[j + 1])
                    j += 2
                else:
                    out += src[j]
                    j += 1
            return out, j + 1
        m = re.match(r"-?\d+(\.\d+)?", src[i:])
        if m:
            t = m.group(0)
            return (float(t) if "." in t else int(t)), i + len(t)
        for word, v in (("true", True), ("false", False), ("nil", None)):
            if src.startswith(word, i):
                return v, i + len(word)
        raise ValueError("lua value at " + src[i:i + 30])
    def table(i):
        i += 1
        items, keyed = [], {}
        while True:
            i = ws(i)
            if src[i] == "}":
                i += 1
                break
            m = re.match(r"([A-Za-z_]\w*)\s*=(?!=)", src[i:])
            if m:
                k = m.group(1)
                v, i = value(i + m.end())
                if v == {} and k not in ("headers", "set", "add", "conf"):
                    v = []  # an empty Lua table: a list, save where the schema wants an object
                keyed[k] = v
            elif src[i] == "[":
                k, j = value(i + 1)
                j = ws(j)
                assert src[j] == "]"
                j = ws(j + 1)
                assert src[j] == "="
                v, i = value(j + 1)
                keyed[k] = v
            else:
                v, i = value(i)
                items.append([] if v == {} else v)  # an empty Lua table in a list is an empty list
            i = ws(i)
            if src[i] in ",;":
                i += 1
        if keyed and items:
            raise ValueError("mixed table")
        return (keyed if keyed or not items else items), i
    return value(i)


def schema_case(path, num, title, secs):
    cfg = secs.get("config", ("", ""))[1]
    m = re.search(r'require\("apisix\.plugins\.([\w-]+)"\)', cfg)
    calls = [c.start() for c in re.finditer(r"\.check_schema\(", cfg)]
    if not m or len(calls) != 1:
        raise ValueError("not one check_schema call")
    plugin = m.group(1)
    conf, end = lua_table(cfg, calls[0] + len(".check_schema("))
    consumer = "TYPE_CONSUMER" in cfg[end:end + 60]
    body = secs.get("response_body", (None, None))[1]
    like = secs.get("response_body_like", (None, None))
    if secs.get("response_body", ("", ""))[0] == "eval" and body.strip().startswith("qr"):
        like, body = ("eval", body), None
    lines = [l for l in (body or "").split("\n") if l and l != "done"]
    if body is None and like[1] is None:
        raise ValueError("no expectation")
    if any(l.startswith("{") or l.startswith("[") for l in lines) or len(lines) > 1:
        raise ValueError("prints more than the error")
    up = {"type": "roundrobin", "nodes": {"127.0.0.1:1980": 1}}
    if consumer:
        put = {"method": "PUT", "path": "/apisix/admin/consumers",
               "body": {"username": "replay_schema_check", "plugins": {plugin: conf}}}
        undo = {"method": "DELETE", "path": "/apisix/admin/consumers/replay_schema_check"}
    else:
        put = {"method": "PUT", "path": "/apisix/admin/routes/replay-schema-check",
               "body": {"uri": "/replay-schema-check", "upstream": up, "plugins": {plugin: conf}}}
        undo = {"method": "DELETE", "path": "/apisix/admin/routes/replay-schema-check"}
    if like[1] is not None:
        mm = re.match(r"^qr/(.*)/\s*$", like[1].strip(), re.S)
        pat = mm.group(1) if mm else like[1].strip()
        exp = {"status": 400, "error_msg_like": "err: .*" + pat.replace('\\"', '"')}
    elif lines:
        exp = {"status": 400, "error_msg_suffix": "err: " + lines[0]}
    else:
        exp = {"status": "2xx"}
    return {"id": f"{path.split('/')[-1][:-2]}#{num}", "source": f"{path} TEST {num}", "title": title,
            "kind": "check_schema as an Admin API write",
            "steps": [{"admin": put, "expect": exp}, {"admin": undo, "expect": {"status": "any"}}]}

# Blocks whose Lua the tool cannot read, written out by hand from the .t file.
def _route(uri, rid):
    return {"admin": {"method": "PUT", "path": f"/apisix/admin/routes/{rid}",
                      "body": {"uri": uri, "upstream": {"nodes": {"127.0.0.1:1980": 1}, "type": "roundrobin"}}},
            "expect": {"status": "2xx"}}
def _get(path, status, like=None, body=None):
    exp = {"status": status}
    if like:
        exp["body_like"] = like
    if body is not None:
        exp["body"] = body
    return {"request": {"method": "GET", "path": path}, "expect": exp}
ORIGIN_404 = "404 Not Found"  # the origin's own 404: the route matched
def _get_host(host, status, body=None):
    st = _get("/hello", status, body=body)
    st["request"]["headers"] = [["Host", host]]
    return st
def _ot(headers_like=None, absent=None, send=None):
    st = _get("/opentracing", 200)
    if headers_like:
        st["expect"]["headers_like"] = headers_like
    if absent:
        st["expect"]["headers"] = [["!" + absent, ""]]
    if send:
        st["request"]["headers"] = send
    return st
def _rid_route(conf):
    return {"admin": {"method": "PUT", "path": "/apisix/admin/routes/1",
                      "body": {"plugins": {"request-id": conf}, "uri": "/opentracing",
                               "upstream": {"nodes": {"127.0.0.1:1982": 1}, "type": "roundrobin"}}},
            "expect": {"status": "any"}}  # the test ignores the answer
HEX = "[0-9a-fA-F]"
UUID7 = f"{HEX}{{8}}-{HEX}{{4}}-7{HEX}{{3}}-[89abAB]{HEX}{{3}}-{HEX}{{12}}"
def _lc_route(count, tw):
    return {"admin": {"method": "PUT", "path": "/apisix/admin/routes/1",
                      "body": {"methods": ["GET"], "uri": "/hello",
                               "plugins": {"limit-count": {"count": count, "time_window": tw, "key": "remote_addr"}},
                               "upstream": {"nodes": {"127.0.0.1:1980": 1}, "type": "roundrobin"}}},
            "expect": {"status": "2xx"}}
def _hellos(*codes):
    return [_get("/hello", c) for c in codes]
def _patch_status0():
    return {"admin": {"method": "PATCH", "path": "/apisix/admin/routes/1", "body": {"status": 0}},
            "expect": {"status": "2xx"}}
HAND = {
    "t/node/service-empty.t": {
        1: ("set an empty service", [{"admin": {"method": "PUT", "path": "/apisix/admin/services/1", "body": {}},
                                      "expect": {"status": "2xx"}}]),
    },
    "t/node/route-status.t": {
        3: ("disable route", [_patch_status0()]),
        7: ("disable route", [_patch_status0()]),
        10: ("old route data in etcd without status (written to etcd directly)",
             [{"etcd_put": {"key": "/routes/1", "value": {
                 "uri": "/hello", "priority": 0, "id": "1",
                 "upstream": {"hash_on": "vars", "pass_host": "pass", "nodes": {"127.0.0.1:1980": 1},
                              "type": "roundrobin"}}}}]),
    },
    "t/node/not-exist-service.t": {
        1: ("invalid service id (written to etcd directly)",
            [{"etcd_put": {"key": "/routes/1", "value": {"service_id": "999999999", "uri": "/hello"}}}]),
        2: ("hit routes", [_get("/hello", 404, "404 Not Found")]),
    },
    "t/plugin/limit-count.t": {
        21: ("count changed: the limit follows", _hellos(200, 200, 503) + [_lc_route(1, 80)] + _hellos(200, 503)),
        22: ("count changed from 1 to 2", [_lc_route(1, 82)] + _hellos(200, 503) + [_lc_route(2, 82)]
             + _hellos(200, 200, 503)),
        23: ("same count written again: the counter stays", [_lc_route(2, 83)] + _hellos(200, 200, 503)
             + [_lc_route(2, 83)] + _hellos(503, 503, 503)),
    },
    "t/plugin/request-id.t": {
        4: ("request id in the response (default header name)", [_ot([["X-Request-Id", ".+"]])]),
        7: ("request id in the response (custom header name)", [_ot([["Custom-Header-Name", ".+"]])]),
        9: ("include_in_response false: no request id", [_ot(absent="X-Request-Id")]),
        16: ("an empty X-Request-Id from the client is replaced",
             [_ot([["X-Request-Id", ".+"]], send=[["X-Request-Id", ""]])]),
        20: ("uuidv7 format (version 7, variant 8-b)", [_ot([["X-Request-Id", UUID7]])]),
        23: ("algorithm uuid gives a v4 uuid", [_rid_route({"algorithm": "uuid"}), _ot([["X-Request-Id", ".{14}4.*"]])]),
        25: ("uuidv7 with a custom header name",
             [_rid_route({"algorithm": "uuidv7", "header_name": "X-Trace-Id"}), _ot([["X-Trace-Id", ".{14}7.*"]])]),
    },
    "t/router/radixtree-host-uri3.t": {
        1: ("change hosts in services", [
            {"admin": {"method": "PUT", "path": "/apisix/admin/services/1", "body": {"hosts": ["foo.com"]}},
             "expect": {"status": "2xx"}},
            {"admin": {"method": "PUT", "path": "/apisix/admin/routes/1",
                       "body": {"methods": ["GET"], "service_id": "1", "uri": "/hello",
                                "upstream": {"nodes": {"127.0.0.1:1980": 1}, "type": "roundrobin"}}},
             "expect": {"status": "2xx"}},
            _get_host("foo.com", 200, "hello world\n"), _get_host("bar.com", 404),
            {"admin": {"method": "PUT", "path": "/apisix/admin/services/1", "body": {"hosts": ["bar.com"]}},
             "expect": {"status": "2xx"}},
            _get_host("foo.com", 404), _get_host("bar.com", 200, "hello world\n")]),
    },
    "t/router/radixtree-uri-with-parameter-encoded-slash.t": {
        1: ("set routes (path parameter, trailing slash and root)",
            [_route("/v1/:id/products/:type/list", 1), _route("/trailing/:name/", 2), _route("/", 3)]),
        2: ("%2F in a path parameter matches", [_get("/v1/te%2Fst/products/electronics/list", 404, ORIGIN_404)]),
        3: ("%2f (lower case) matches", [_get("/v1/te%2fst/products/electronics/list", 404, ORIGIN_404)]),
        4: ("several %2F match", [_get("/v1/2024%2F01%2F0001/products/electronics/list", 404, ORIGIN_404)]),
        5: ("no encoded slash still matches", [_get("/v1/test/products/electronics/list", 404, ORIGIN_404)]),
        6: ("%41 decoded, matches", [_get("/v1/te%41st/products/electronics/list", 404, ORIGIN_404)]),
        7: ("trailing slash kept", [_get("/trailing/a%2Fb/", 404, ORIGIN_404)]),
        8: ("dot segments fall back to $uri", [_get("/x%2Fy/../..", 404, ORIGIN_404)]),
        9: ("%2e segments fall back to $uri", [_get("/a%2Fb/%2e%2e/%2e%2e", 404, ORIGIN_404)]),
        10: ("%2F only in the query", [_get("/?next=%2Fadmin", 404)]),
        13: ("set an echo route", [_route("/echo/:id", 20)]),
        14: ("upstream receives %2F as sent", [_get("/echo/a%2Fb", 200, body="/echo/a%2Fb\n")]),
    },
}
_emit2 = emit
def emit(path, commit, outdir):
    global draft
    inner = draft
    def with_hand(p):
        cases, skipped = inner(p)
        hand = HAND.get(p, {})
        if not hand:
            return cases, skipped
        for k in list(skipped):
            skipped[k] = [n for n in skipped[k] if n not in hand]
            if not skipped[k]:
                del skipped[k]
        cases = [c for c in cases if int(c["id"].split("#")[1]) not in hand]
        for n, (title, steps) in hand.items():
            cases.append({"id": f"{p.split('/')[-1][:-2]}#{n}", "source": f"{p} TEST {n}", "title": title,
                          "written_by_hand": True, "steps": steps})
        cases.sort(key=lambda c: int(c["id"].split("#")[1]))
        return cases, skipped
    draft = with_hand
    try:
        return _emit2(path, commit, outdir)
    finally:
        draft = inner
