"""A real DNS server for the end-to-end tests (stdlib only): UDP on
127.0.0.1, A records with a TTL the test controls, NXDOMAIN for other
names, no records (NODATA) for other types. It can delay every answer and
stop answering. Each query is answered from its own thread, so a delayed
answer does not hold up the next query."""
import socket
import struct
import threading
import time

from harness import free_port


class DnsServer:
    def __init__(self, records=None, ttl=1):
        self.records = {k.lower(): list(v) for k, v in (records or {}).items()}
        self.ttl = ttl
        self.delay = 0.0      # seconds before each answer is sent
        self.silent = False   # receive queries, never answer
        self.queries = 0      # A/AAAA queries received
        self.answered = 0     # answers sent
        self._lock = threading.Lock()
        for _ in range(50):
            self.port = free_port()
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                self.sock.bind(("127.0.0.1", self.port))
                break
            except OSError:
                self.sock.close()
        self.sock.settimeout(0.2)
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def addr(self):
        return f"127.0.0.1:{self.port}"

    def set(self, name, ips, ttl=None):
        with self._lock:
            self.records[name.lower()] = list(ips)
            if ttl is not None:
                self.ttl = ttl

    def stats(self):
        with self._lock:
            return self.queries, self.answered

    def wait_queries(self, count, timeout=10.0):
        """Polls until at least `count` queries have been received."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.stats()[0] >= count:
                return
            time.sleep(0.02)
        raise AssertionError(f"the DNS server got {self.stats()[0]} queries, wanted {count}")

    def stop(self):
        self._stop = True
        self._thread.join(2)
        self.sock.close()

    def _serve(self):
        while not self._stop:
            try:
                data, peer = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._answer, args=(data, peer), daemon=True).start()

    def _answer(self, data, peer):
        if len(data) < 12:
            return
        qid, flags, qdcount = struct.unpack("!HHH", data[:6])
        pos, labels = 12, []
        while pos < len(data) and data[pos]:
            n = data[pos]
            labels.append(data[pos + 1:pos + 1 + n].decode("ascii", "replace"))
            pos += 1 + n
        pos += 1
        if pos + 4 > len(data):
            return
        qtype, qclass = struct.unpack("!HH", data[pos:pos + 4])
        question = data[12:pos + 4]
        name = ".".join(labels).lower()
        with self._lock:
            self.queries += 1
            silent, delay, ips, ttl = self.silent, self.delay, self.records.get(name), self.ttl
        if silent:
            return
        if delay:
            time.sleep(delay)
        answers = b""
        rcode = 0
        if ips is None:
            rcode = 3  # NXDOMAIN
        elif qtype == 1:
            for ip in ips:
                answers += struct.pack("!HHHIH", 0xC00C, 1, 1, ttl, 4) + socket.inet_aton(ip)
        count = len(answers) // 16
        header = struct.pack("!HHHHHH", qid, 0x8180 | (flags & 0x0100) | rcode, 1, count, 0, 0)
        try:
            self.sock.sendto(header + question + answers, peer)
        except OSError:
            return
        with self._lock:
            self.answered += 1
