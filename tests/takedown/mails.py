"""Generators of realistic and hostile removal-request e-mails (bytes), for the takedown tests."""
from __future__ import annotations

import base64
import email.policy
import hashlib
from email.message import EmailMessage
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText


def image_id(n: int | str) -> str:
    return "sa_" + hashlib.sha256(f"image-{n}".encode()).hexdigest()[:32]


def plain(ids: list[str], *, sender: str = "alice@example.org", message_id: str | None = "<req-1@example.org>",
          subject: str = "Please remove my photos", extra: str = "") -> bytes:
    msg = EmailMessage()
    msg["From"] = f"Alice Example <{sender}>"
    msg["To"] = "takedown@veilset.example"
    msg["Subject"] = subject
    msg["Date"] = "Wed, 25 Nov 2026 10:00:00 +0000"
    if message_id:
        msg["Message-ID"] = message_id
    msg.set_content("Hello,\nplease remove these images of me:\n" + "\n".join(ids) + "\n" + extra)
    return msg.as_bytes()


def html_only(ids: list[str], **kw) -> bytes:
    msg = EmailMessage()
    _headers(msg, **kw)
    body = "<html><body><p>Remove:</p><ul>" + "".join(
        f"<li><a href=\"https://data.example/view?id={i}\">photo</a> <b>{i[:10]}</b>{i[10:]}</li>" for i in ids)
    msg.set_content(body + "</ul></body></html>", subtype="html")
    return msg.as_bytes()


def _headers(msg, *, sender: str = "bob@example.net", message_id: str = "<req-2@example.net>",
             subject: str = "takedown") -> None:
    msg["From"] = sender
    msg["To"] = "takedown@veilset.example"
    msg["Subject"] = subject
    msg["Message-ID"] = message_id


def alternative_with_csv(text_ids: list[str], csv_ids: list[str], **kw) -> bytes:
    outer = MIMEMultipart("mixed")
    _headers(outer, **kw)
    alt = MIMEMultipart("alternative")
    alt.attach(MIMEText("See list:\n" + "\n".join(text_ids), "plain", "utf-8"))  # base64 (utf-8 default)
    alt.attach(MIMEText("<p>" + "<br>".join(text_ids) + "</p>", "html", "iso-8859-1"))  # quoted-printable
    outer.attach(alt)
    csv = MIMEBase("text", "csv")
    csv.set_payload(("image_id,reason\n" + "".join(f"{i},me\n" for i in csv_ids)).encode())
    csv.add_header("Content-Disposition", "attachment", filename="ids.csv")
    from email import encoders

    encoders.encode_base64(csv)
    outer.attach(csv)
    return outer.as_bytes()


def forwarded(inner: bytes, depth: int = 1, **kw) -> bytes:
    """``inner`` wrapped ``depth`` times as a message/rfc822 attachment (a forward of a forward ...)."""
    data = inner
    for k in range(depth):
        outer = MIMEMultipart("mixed")
        _headers(outer, message_id=f"<fwd-{k}-{hashlib.sha1(data).hexdigest()[:8]}@example.com>",
                 **{k2: v for k2, v in kw.items() if k2 != "message_id"})
        outer.attach(MIMEText("Forwarding this request.\n", "plain"))
        part = MIMEBase("message", "rfc822")
        part.set_payload([email.message_from_bytes(data)])
        outer.attach(part)
        data = outer.as_bytes()
    return data


def quoted_reply(old_ids: list[str], new_ids: list[str], **kw) -> bytes:
    msg = EmailMessage()
    _headers(msg, **kw)
    msg["In-Reply-To"] = "<receipt-1@veilset.example>"
    quoted = "\n".join(f"> {i}" for i in old_ids)
    msg.set_content("Also this one: " + " ".join(new_ids) + "\n\nOn Tue, someone wrote:\n> remove\n" + quoted + "\n")
    return msg.as_bytes()


def raw_message(headers: dict[str, str], body: bytes, content_type: str = "text/plain; charset=utf-8",
                cte: str | None = None) -> bytes:
    lines = [f"{k}: {v}" for k, v in headers.items()]
    lines.append(f"Content-Type: {content_type}")
    if cte:
        lines.append(f"Content-Transfer-Encoding: {cte}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def broken_base64(ids: list[str]) -> bytes:
    good = base64.b64encode(("remove " + " ".join(ids)).encode()).decode()
    return raw_message({"From": "carol@example.com", "Message-ID": "<b64@example.com>", "Subject": "x"},
                       (good[:-3] + "!!*\r\n====\r\n").encode(), cte="base64")


def wrong_charset(ids: list[str]) -> bytes:
    body = ("Bitte l\xf6schen (Gr\xfc\xdfe): " + " ".join(ids)).encode("latin-1")
    return raw_message({"From": "dora@example.de", "Message-ID": "<cs@example.de>", "Subject": "=?utf-8?q?L=C3=B6schen?="},
                       body, content_type="text/plain; charset=utf-8")


def unknown_charset(ids: list[str]) -> bytes:
    return raw_message({"From": "erin@example.com", "Message-ID": "<ucs@example.com>"},
                       (" ".join(ids)).encode(), content_type='text/plain; charset="x-no-such-charset"')


def many_ids(n: int, **kw) -> bytes:
    return plain([image_id(f"many-{k}") for k in range(n)], **kw)


def with_attachment(ids: list[str], size: int) -> bytes:
    outer = MIMEMultipart("mixed")
    _headers(outer, sender="frank@example.com", message_id="<big@example.com>")
    outer.attach(MIMEText("remove " + " ".join(ids), "plain"))
    att = MIMEBase("application", "octet-stream")
    att.set_payload(b"\0" * size)
    from email import encoders

    encoders.encode_base64(att)
    att.add_header("Content-Disposition", "attachment", filename="video.bin")
    outer.attach(att)
    return outer.as_bytes()


def write_with_big_attachment(path: str, ids: list[str], size: int) -> None:
    """Like ``with_attachment`` but streamed to a file (a 50 MB attachment without 70 MB in memory twice)."""
    head = (
        "From: frank@example.com\r\nTo: takedown@veilset.example\r\nSubject: takedown\r\n"
        "Message-ID: <big@example.com>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="BOUNDARY"\r\n\r\n'
        "--BOUNDARY\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nremove " + " ".join(ids) + "\r\n"
        "--BOUNDARY\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
        'Content-Disposition: attachment; filename="video.bin"\r\n\r\n'
    ).encode()
    line = b"A" * 76 + b"\r\n"  # base64 of zero bytes, 57 bytes per line
    with open(path, "wb") as fh:
        fh.write(head)
        block = line * 1000
        for _ in range(size // (57 * 1000) + 1):
            fh.write(block)
        fh.write(b"--BOUNDARY--\r\n")


def deep_nesting(depth: int, ids: list[str]) -> bytes:
    inner: MIMEMultipart | MIMEText = MIMEText(" ".join(ids), "plain")
    for _ in range(depth):
        m = MIMEMultipart("mixed")
        m.attach(inner)
        inner = m
    _headers(inner, sender="gina@example.com", message_id="<deep@example.com>")
    return inner.as_bytes()


def many_parts(n: int, ids: list[str]) -> bytes:
    outer = MIMEMultipart("mixed")
    _headers(outer, sender="hank@example.com", message_id="<parts@example.com>")
    outer.attach(MIMEText(" ".join(ids), "plain"))
    for k in range(n):
        outer.attach(MIMEText(f"part {k}", "plain"))
    return outer.as_bytes()


def hostile_id_text() -> str:
    """Strings that look like IDs or attacks; none of them is a valid ID by itself."""
    return "\n".join([
        "../../etc/passwd", "sa_../../../etc/passwd", "sa_'; DROP TABLE requests; --",
        "sa_" + "0" * 31 + "' OR '1'='1", "sa_" + "g" * 32, "sa_" + "0" * 33, "sa_" + "0" * 31,
        "xsa_" + "1" * 32, "sa_" + "2" * 32 + "_suffix", "images/00001/sa_.jpg", "%2e%2e%2fsa_abc",
    ])


def signed(raw: bytes, key_pem: bytes, *, domain: str = "example.org", selector: str = "s1") -> bytes:
    import dkim

    sig = dkim.sign(raw, selector.encode(), domain.encode(), key_pem,
                    include_headers=[b"from", b"to", b"subject", b"message-id"])
    return sig + raw


def rsa_keypair() -> tuple[bytes, bytes]:
    """(private PEM, DNS TXT record value) for a throwaway 1024-bit DKIM key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    pub = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return pem, b"v=DKIM1; k=rsa; p=" + base64.b64encode(pub)


def as_policy_default(raw: bytes):
    return email.message_from_bytes(raw, policy=email.policy.default)
