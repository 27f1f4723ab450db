"""A minimal AMQP 0-9-1 client over a raw socket, for tests that need to
send frames pika would never send (or send them at awkward moments).

Only what the tests need: the handshake (PLAIN), a few methods, content
frames and heartbeats, plus a frame reader that tells EOF/reset apart.
"""

import socket
import struct
import time

FRAME_METHOD = 1
FRAME_HEADER = 2
FRAME_BODY = 3
FRAME_HEARTBEAT = 8
FRAME_END = 0xCE

PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"


# --- field encoding --------------------------------------------------------

def shortstr(s):
    if isinstance(s, str):
        s = s.encode()
    assert len(s) < 256
    return struct.pack("!B", len(s)) + s


def longstr(s):
    if isinstance(s, str):
        s = s.encode()
    return struct.pack("!I", len(s)) + s


def table(d=None):
    """Encode a field table whose values are str (longstr), bool or int (signed 32)."""
    out = b""
    for k, v in (d or {}).items():
        out += shortstr(k)
        if isinstance(v, bool):
            out += b"t" + struct.pack("!B", 1 if v else 0)
        elif isinstance(v, int):
            out += b"I" + struct.pack("!i", v)
        elif isinstance(v, dict):
            out += b"F" + table(v)
        else:
            out += b"S" + longstr(v)
    return struct.pack("!I", len(out)) + out


def frame(ftype, channel, payload):
    return struct.pack("!BHI", ftype, channel, len(payload)) + payload + bytes([FRAME_END])


def method_frame(channel, class_id, method_id, args=b""):
    return frame(FRAME_METHOD, channel, struct.pack("!HH", class_id, method_id) + args)


def heartbeat_frame():
    return frame(FRAME_HEARTBEAT, 0, b"")


# --- methods ---------------------------------------------------------------

def start_ok(user="guest", password="guest"):
    props = table({"product": "amqp_raw", "capabilities": {"basic.nack": True}})
    resp = b"\x00" + user.encode() + b"\x00" + password.encode()
    return method_frame(0, 10, 11, props + shortstr("PLAIN") + longstr(resp) + shortstr("en_US"))


def tune_ok(channel_max=2047, frame_max=131072, heartbeat=0):
    return method_frame(0, 10, 31, struct.pack("!HIH", channel_max, frame_max, heartbeat))


def connection_open(vhost="/"):
    return method_frame(0, 10, 40, shortstr(vhost) + shortstr("") + b"\x00")


def connection_close(code=200, text="bye", class_id=0, method_id=0):
    return method_frame(0, 10, 50, struct.pack("!H", code) + shortstr(text)
                        + struct.pack("!HH", class_id, method_id))


def connection_close_ok():
    return method_frame(0, 10, 51)


def update_secret(secret, reason):
    return method_frame(0, 10, 70, longstr(secret) + shortstr(reason))


def channel_open(channel):
    return method_frame(channel, 20, 10, shortstr(""))


def channel_close(channel, code=200, text="bye"):
    return method_frame(channel, 20, 40, struct.pack("!H", code) + shortstr(text)
                        + struct.pack("!HH", 0, 0))


def queue_declare(channel, queue, exclusive=False, auto_delete=False):
    bits = (4 if exclusive else 0) | (8 if auto_delete else 0)
    return method_frame(channel, 50, 10, struct.pack("!H", 0) + shortstr(queue)
                        + struct.pack("!B", bits) + table())


def basic_get(channel, queue, no_ack=True):
    return method_frame(channel, 60, 70, struct.pack("!H", 0) + shortstr(queue)
                        + struct.pack("!B", 1 if no_ack else 0))


def basic_publish(channel, exchange, routing_key, body, mandatory=False):
    """method + content header (no properties) + one body frame."""
    m = method_frame(channel, 60, 40, struct.pack("!H", 0) + shortstr(exchange)
                     + shortstr(routing_key) + struct.pack("!B", 1 if mandatory else 0))
    h = frame(FRAME_HEADER, channel, struct.pack("!HHQH", 60, 0, len(body), 0))
    b = frame(FRAME_BODY, channel, body) if body else b""
    return m + h + b


# --- decoding --------------------------------------------------------------

def parse_close(args):
    """(reply_code, reply_text, class_id, method_id) of connection/channel.close."""
    code, = struct.unpack_from("!H", args, 0)
    n = args[2]
    text = args[3:3 + n].decode()
    cls, meth = struct.unpack_from("!HH", args, 3 + n)
    return code, text, cls, meth


def parse_shortstr(args, off=0):
    n = args[off]
    return args[off + 1:off + 1 + n].decode(), off + 1 + n


class Closed(Exception):
    """The peer closed the socket (EOF) while we were reading."""


class Reset(Exception):
    """The socket was reset (ECONNRESET) while we were reading."""


class Frame:
    def __init__(self, ftype, channel, payload):
        self.type = ftype
        self.channel = channel
        self.payload = payload
        if ftype == FRAME_METHOD:
            self.class_id, self.method_id = struct.unpack_from("!HH", payload, 0)
            self.args = payload[4:]
        else:
            self.class_id = self.method_id = None
            self.args = b""

    @property
    def method(self):
        return (self.class_id, self.method_id)

    def __repr__(self):
        if self.type == FRAME_METHOD:
            return "<method ch=%d %d.%d %r>" % (self.channel, self.class_id,
                                                 self.method_id, self.args[:80])
        return "<frame type=%d ch=%d len=%d>" % (self.type, self.channel, len(self.payload))


class RawConnection:
    def __init__(self, host, port, timeout=10.0, family=None):
        if family is None:
            self.sock = socket.create_connection((host, port), timeout=timeout)
        else:
            self.sock = socket.socket(family, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.timeout = timeout
        self.server_heartbeat = None
        self.frame_max = None

    # raw I/O
    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("no frame before the deadline")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError as e:
            raise Reset(str(e))
        if not chunk:
            raise Closed("EOF")
        self.buf += chunk

    def read_frame(self, timeout=None):
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while len(self.buf) < 7:
            self._fill(deadline)
        ftype, ch, size = struct.unpack_from("!BHI", self.buf, 0)
        while len(self.buf) < 8 + size:
            self._fill(deadline)
        payload = self.buf[7:7 + size]
        end = self.buf[7 + size]
        self.buf = self.buf[8 + size:]
        assert end == FRAME_END, "bad frame end %r" % end
        return Frame(ftype, ch, payload)

    def read_method(self, timeout=None, skip_heartbeats=True):
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            f = self.read_frame(timeout=max(0.001, deadline - time.monotonic()))
            if f.type == FRAME_HEARTBEAT and skip_heartbeats:
                continue
            return f

    def expect(self, class_id, method_id, timeout=None):
        f = self.read_method(timeout)
        assert f.type == FRAME_METHOD and f.method == (class_id, method_id), \
            "expected %d.%d, got %r" % (class_id, method_id, f)
        return f

    def wait_closed(self, timeout):
        """Read (and collect) frames until the peer closes the socket.

        Returns (how, seconds, frames): how is "eof" or "reset", or "timeout".
        """
        t0 = time.monotonic()
        deadline = t0 + timeout
        frames = []
        while True:
            try:
                frames.append(self.read_frame(timeout=max(0.001, deadline - time.monotonic())))
            except Closed:
                return "eof", time.monotonic() - t0, frames
            except Reset:
                return "reset", time.monotonic() - t0, frames
            except socket.timeout:
                return "timeout", time.monotonic() - t0, frames

    # handshake
    def handshake(self, user="guest", password="guest", vhost="/", heartbeat=0):
        self.send(PROTOCOL_HEADER)
        self.expect(10, 10)                       # connection.start
        self.send(start_ok(user, password))
        tune = self.expect(10, 30)                # connection.tune
        _cmax, self.frame_max, self.server_heartbeat = struct.unpack_from("!HIH", tune.args, 0)
        self.send(tune_ok(frame_max=self.frame_max, heartbeat=heartbeat))
        self.send(connection_open(vhost))
        self.expect(10, 41)                       # connection.open-ok
        return self

    def open_channel(self, channel):
        self.send(channel_open(channel))
        self.expect(20, 11)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def connect(host, port, heartbeat=0, timeout=10.0, family=None, **kw):
    c = RawConnection(host, port, timeout=timeout, family=family)
    try:
        c.handshake(heartbeat=heartbeat, **kw)
    except BaseException:
        c.close()
        raise
    return c
