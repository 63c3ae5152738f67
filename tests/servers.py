"""Real servers for tests, on 127.0.0.1 and free ports: a private Dovecot IMAP instance and an aiosmtpd SMTP sink.

Dovecot runs from its own config/base_dir in a temp folder with a dedicated system mail user (``vmail``; with
root as the mail user Dovecot accepts connections but never greets). Every client gets a socket timeout so a
misconfigured server fails a test instead of hanging CI. Skips (with the reason) only when a server cannot run.
"""
from __future__ import annotations

import imaplib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Iterator

import pytest

CLIENT_TIMEOUT_S = 10.0
MAIL_USER = "vmail"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout_s} s")


def _ensure_mail_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(MAIL_USER)
    except KeyError:
        pass
    if os.geteuid() != 0:
        pytest.skip(f"Dovecot test server needs the system user {MAIL_USER!r} (create it as root: "
                    f"useradd -r -M -s /usr/sbin/nologin {MAIL_USER})")
    subprocess.run(["useradd", "-r", "-M", "-s", "/usr/sbin/nologin", MAIL_USER], check=False,
                   capture_output=True)
    return pwd.getpwnam(MAIL_USER)


@dataclass
class DovecotServer:
    root: str
    port: int
    user: str
    password: str
    config: str
    _uid: int = field(repr=False, default=0)

    def url(self, mailbox: str = "INBOX") -> str:
        return f"imap://{self.user}@127.0.0.1:{self.port}/{mailbox}"

    def client(self) -> imaplib.IMAP4:
        conn = imaplib.IMAP4("127.0.0.1", self.port, timeout=CLIENT_TIMEOUT_S)
        conn.login(self.user, self.password)
        return conn

    def append(self, raw: bytes, mailbox: str = "INBOX", flags: str = "") -> None:
        conn = self.client()
        try:
            typ, data = conn.append(mailbox, flags or None, None, raw)
            assert typ == "OK", data
        finally:
            conn.logout()

    def flags(self, mailbox: str = "INBOX") -> list[str]:
        """FLAGS of every message in the mailbox, in sequence order (decoded)."""
        conn = self.client()
        try:
            conn.select(mailbox, readonly=True)
            typ, data = conn.fetch("1:*", "(FLAGS)")
            return [d.decode() for d in data if isinstance(d, bytes)]
        finally:
            conn.logout()

    def stop(self) -> None:
        subprocess.run(["doveadm", "-c", self.config, "stop"], stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)


_CONF = """\
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
info_log_path = {root}/dovecot.log
instance_name = veilset-test-{port}
listen = 127.0.0.1
protocols = imap
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{root}/mail/%u
mail_uid = {uid}
mail_gid = {gid}
first_valid_uid = {uid}
last_valid_uid = {uid}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = 0
  }}
}}
"""


def start_dovecot(user: str = "takedown", password: str = "s3cret-test") -> DovecotServer:
    if shutil.which("dovecot") is None or shutil.which("doveadm") is None:
        pytest.skip("Dovecot is not installed (apt-get install dovecot-imapd); .ci/run installs it")
    pw = _ensure_mail_user()
    root = tempfile.mkdtemp(prefix="veilset-dovecot-")
    os.chmod(root, 0o755)
    port = free_port()
    os.makedirs(os.path.join(root, "mail", user), exist_ok=True)
    for dirpath in (os.path.join(root, "mail"), os.path.join(root, "mail", user)):
        os.chown(dirpath, pw.pw_uid, pw.pw_gid)
    with open(os.path.join(root, "passwd"), "w") as fh:
        fh.write(f"{user}:{{PLAIN}}{password}\n")
    config = os.path.join(root, "dovecot.conf")
    with open(config, "w") as fh:
        fh.write(_CONF.format(root=root, port=port, uid=pw.pw_uid, gid=pw.pw_gid))
    # dovecot daemonizes and its children inherit stdio: never give it pipes (communicate() would wait forever)
    err_path = os.path.join(root, "start.err")
    with open(err_path, "w") as err:
        proc = subprocess.run(["dovecot", "-c", config], stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                              timeout=30)
    if proc.returncode != 0:
        message = open(err_path).read()
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"dovecot failed to start: {message}")
    server = DovecotServer(root=root, port=port, user=user, password=password, config=config, _uid=pw.pw_uid)
    try:
        _wait_port(port, 15)
        server.client().logout()  # greeting + login work, or fail loudly (socket timeout)
    except BaseException:
        log = open(os.path.join(root, "dovecot.log")).read() if os.path.exists(os.path.join(root, "dovecot.log")) else ""
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"dovecot did not answer on 127.0.0.1:{port}; log:\n{log[-4000:]}")
    return server


@pytest.fixture(scope="module")
def dovecot() -> Iterator[DovecotServer]:
    """One server per test module (start ~0.1 s, stop ~2.5 s); tests in a module share its INBOX."""
    server = start_dovecot()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.root, ignore_errors=True)


@dataclass
class SmtpSink:
    host: str
    port: int
    messages: list[dict] = field(default_factory=list)  # {"mail_from", "rcpt_tos", "data": bytes}
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def received(self) -> list[dict]:
        with self._lock:
            return list(self.messages)


def self_signed_cert(folder: str, host: str = "127.0.0.1") -> tuple[str, str]:
    """(cert.pem, key.pem) for ``host`` (an IP SAN), valid for a day; needs ``cryptography``."""
    import datetime
    import ipaddress

    pytest.importorskip("cryptography", reason="a throwaway TLS certificate needs cryptography")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem")
    with open(cert_path, "wb") as fh:
        fh.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as fh:
        fh.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))
    return cert_path, key_path


def _start_smtp(tls_cert: tuple[str, str] | None = None) -> tuple[SmtpSink, object]:
    try:
        from aiosmtpd.controller import Controller
    except ImportError:
        pytest.skip("aiosmtpd is not installed (pip install aiosmtpd)")

    sink = SmtpSink(host="127.0.0.1", port=free_port())

    class Handler:
        async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd hook name
            with sink._lock:
                sink.messages.append({"mail_from": envelope.mail_from, "rcpt_tos": list(envelope.rcpt_tos),
                                      "data": bytes(envelope.original_content or envelope.content),
                                      "tls": session.ssl is not None})
            return "250 OK"

    kwargs: dict = {}
    if tls_cert is not None:
        import ssl

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*tls_cert)
        kwargs = {"tls_context": ctx, "require_starttls": True}
    controller = Controller(Handler(), hostname="127.0.0.1", port=sink.port, ready_timeout=10, **kwargs)
    controller.start()
    return sink, controller


@pytest.fixture
def smtp_server() -> Iterator[SmtpSink]:
    """A real aiosmtpd server on 127.0.0.1 collecting every message it accepts."""
    sink, controller = _start_smtp()
    try:
        yield sink
    finally:
        controller.stop()


@pytest.fixture
def smtp_tls_server(tmp_path) -> Iterator[tuple[SmtpSink, str]]:
    """aiosmtpd that requires STARTTLS, with a self-signed certificate; yields (sink, path of the CA cert)."""
    cert = self_signed_cert(str(tmp_path))
    sink, controller = _start_smtp(cert)
    try:
        yield sink, cert[0]
    finally:
        controller.stop()
