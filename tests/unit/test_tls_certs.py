"""lbcore.tls.certs and lbcore.tls.store: parsing, key match, chain order, expiry,
host names, and that no message ever carries key material."""

from __future__ import annotations

import base64
import datetime as dt
import logging
import re
import traceback

import pytest
from cryptography import x509

from lbcore.spec import Address, Listener, TlsCertificate, TlsSettings
from lbcore.tls import (
    CertStore,
    TlsError,
    TlsIssue,
    build_cert_store,
    load_certificate_files,
    load_listener_certificates,
    normalize_hostname,
    parse_certificate,
)
from tests import tlsgen

NOW = dt.datetime.now(dt.timezone.utc)


@pytest.fixture(scope="module")
def ca() -> tlsgen.Issued:
    return tlsgen.make_ca()


@pytest.fixture(scope="module")
def intermediates(ca: tlsgen.Issued) -> tuple[tlsgen.Issued, tlsgen.Issued]:
    first = tlsgen.make_ca("lbcore intermediate 1", issuer=ca, slot=1)
    second = tlsgen.make_ca("lbcore intermediate 2", issuer=first, slot=2)
    return first, second


def parse(leaf: tlsgen.Issued, *chain: tlsgen.Issued, passphrase: str | None = None, key: bytes | None = None):
    return parse_certificate(tlsgen.chain_pem(leaf, *chain), key if key is not None else leaf.key_pem(passphrase), passphrase)


# -- what a certificate gives ------------------------------------------------------------------


def test_rsa_and_ecdsa_leaves(ca: tlsgen.Issued) -> None:
    rsa_cert, warnings = parse(tlsgen.issue(ca, ["www.example.com", "example.com"]))
    assert (rsa_cert.key_type, rsa_cert.key_bits) == ("rsa", 2048)
    assert rsa_cert.hostnames == ("www.example.com", "example.com")
    assert rsa_cert.subject == "CN=www.example.com" and rsa_cert.chain_length == 1
    assert warnings == []
    ec_cert, _ = parse(tlsgen.issue(ca, ["api.example.com"], key_type="ecdsa"))
    assert (ec_cert.key_type, ec_cert.key_bits) == ("ecdsa", 256)
    leaf = x509.load_pem_x509_certificate(ec_cert.chain_pem)
    assert ec_cert.not_after == leaf.not_valid_after_utc
    assert len(ec_cert.fingerprint_sha256) == 64
    assert b"BEGIN PRIVATE KEY" in ec_cert.key_pem  # unencrypted PKCS#8, for OpenSSL


def test_multi_san_wildcard_and_cn_merge(ca: tlsgen.Issued) -> None:
    cert, _ = parse(tlsgen.issue(ca, ["A.Example.com", "*.Example.COM", "b.example.com."], common_name="a.example.com"))
    assert cert.hostnames == ("a.example.com", "*.example.com", "b.example.com")
    assert cert.covers("x.example.com") and cert.covers("A.EXAMPLE.COM.")
    assert not cert.covers("x.y.example.com") and not cert.covers("example.com")


def test_idna_names_are_a_labels(ca: tlsgen.Issued) -> None:
    # A CN may carry a U-label (a UTF8String); DNS SANs are A-labels already.
    cert, _ = parse(tlsgen.issue(ca, ["xn--bcher-kva.example"], common_name="Bücher.Example."))
    assert cert.hostnames == ("xn--bcher-kva.example",)
    assert normalize_hostname("BÜCHER.example.") == "xn--bcher-kva.example"
    assert normalize_hostname("*.Bücher.example") == "*.xn--bcher-kva.example"


@pytest.mark.parametrize("name", ["", ".", "a..b", "w*.example.com", "*.com", "10.0.0.1", "-a.example.com",
                                  "a b.example.com", "x" * 64 + ".example.com", "*.*.example.com"])
def test_not_host_names(name: str) -> None:
    with pytest.raises(ValueError):
        normalize_hostname(name)


def test_cn_that_is_not_a_host_name_is_skipped(ca: tlsgen.Issued) -> None:
    cert, warnings = parse(tlsgen.issue(ca, ["www.example.com"], common_name="Example Ltd web server"))
    assert cert.hostnames == ("www.example.com",) and warnings == []
    nameless, warnings = parse(tlsgen.issue(ca, [], common_name="Example Ltd"))
    assert nameless.hostnames == () and warnings == ["the certificate names no host: it can only serve as the default"]


def test_chain_is_ordered_from_a_shuffled_file(ca: tlsgen.Issued, intermediates) -> None:
    first, second = intermediates
    leaf = tlsgen.issue(second, ["www.example.com"])
    shuffled = tlsgen.chain_pem(first, leaf, ca, second)
    cert, warnings = parse_certificate(shuffled, leaf.key_pem())
    subjects = [c.subject.rfc4514_string() for c in x509.load_pem_x509_certificates(cert.chain_pem)]
    assert subjects == ["CN=www.example.com", "CN=lbcore intermediate 2,O=lbcore tests",
                        "CN=lbcore intermediate 1,O=lbcore tests", "CN=lbcore test CA,O=lbcore tests"]
    assert cert.chain_length == 4 and warnings == []


def test_unrelated_certificates_are_dropped_with_a_warning(ca: tlsgen.Issued, intermediates) -> None:
    first, _ = intermediates
    other_ca = tlsgen.make_ca("someone else", slot=9)
    leaf = tlsgen.issue(first, ["www.example.com"])
    cert, warnings = parse_certificate(tlsgen.chain_pem(other_ca, leaf, first), leaf.key_pem())
    assert cert.chain_length == 2
    assert warnings == ["1 certificate(s) in the file are not in the leaf's chain, ignored: 'CN=someone else,O=lbcore tests'"]


def test_combined_file_and_traditional_key(ca: tlsgen.Issued) -> None:
    leaf = tlsgen.issue(ca, ["www.example.com"], key_type="ecdsa")
    combined = leaf.pem + tlsgen.key_pem(leaf.key, traditional=True) + b"-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"
    cert, warnings = parse_certificate(combined)
    assert cert.key_type == "ecdsa" and warnings == []


def test_encrypted_key(ca: tlsgen.Issued) -> None:
    leaf = tlsgen.issue(ca, ["www.example.com"])
    cert, _ = parse(leaf, passphrase="s3cret pass")
    assert cert.key_type == "rsa" and b"ENCRYPTED" not in cert.key_pem
    with pytest.raises(TlsError, match=r"^the key is encrypted: a passphrase is needed$"):
        parse_certificate(leaf.pem, leaf.key_pem("s3cret pass"))
    with pytest.raises(TlsError, match=r"^cannot decrypt the key \(wrong passphrase\?\)$"):
        parse_certificate(leaf.pem, leaf.key_pem("s3cret pass"), "wrong")
    cert, warnings = parse_certificate(leaf.pem, leaf.key_pem(), "unneeded")
    assert warnings == ["a passphrase was given but the key is not encrypted"]


def test_expiry(ca: tlsgen.Issued) -> None:
    expired = tlsgen.issue(ca, ["old.example.com"], not_before=NOW - dt.timedelta(days=400), not_after=NOW - dt.timedelta(days=2))
    with pytest.raises(TlsError, match=r"^certificate expired on \d{4}-\d\d-\d\d \d\d:\d\d UTC$"):
        parse(expired)
    soon = tlsgen.issue(ca, ["soon.example.com"], not_after=NOW + dt.timedelta(days=10, hours=1))
    cert, warnings = parse(soon)
    assert len(warnings) == 1 and re.fullmatch(r"certificate expires in 10 days \(.* UTC\)", warnings[0])
    future = tlsgen.issue(ca, ["new.example.com"], not_before=NOW + dt.timedelta(days=3))
    with pytest.raises(TlsError, match="certificate is not valid before"):
        parse(future)
    # The check is against the clock given: the expired one was fine a year ago.
    cert, _ = parse_certificate(expired.pem, expired.key_pem(), now=NOW - dt.timedelta(days=100))
    assert cert.hostnames == ("old.example.com",)


def test_expired_intermediate(ca: tlsgen.Issued) -> None:
    old = tlsgen.make_ca("old intermediate", issuer=ca, slot=5, not_after=NOW - dt.timedelta(hours=1))
    leaf = tlsgen.issue(old, ["www.example.com"])
    with pytest.raises(TlsError) as caught:
        parse(leaf, old)
    assert str(caught.value).startswith("intermediate certificate 'CN=old intermediate,O=lbcore tests' expired on")


@pytest.mark.parametrize("case, message", [
    ("mismatch", "key does not match certificate"),
    ("mismatch-chain", "key matches none of the 2 certificates in the file"),
    ("no-cert", "no PEM certificate found (the file is empty, DER or not a certificate)"),
    ("der", "no PEM certificate found (the file is empty, DER or not a certificate)"),
    ("no-key", "no PEM private key found in the key file"),
    ("two-keys", "2 private keys found where one is expected"),
    ("bad-key", "the private key is not valid (corrupt or unsupported PEM)"),
    ("bad-cert", "certificate 1 in the file is not a valid X.509 certificate"),
    ("small-rsa", "RSA key of 1024 bits is too small (at least 2048)"),
    ("ed25519", "unsupported key type ed25519 (RSA or ECDSA)"),
    ("missing-key", "no private key: give a key file or put the key in the certificate file"),
])
def test_refusals(ca: tlsgen.Issued, case: str, message: str) -> None:
    leaf = tlsgen.issue(ca, ["www.example.com"])
    other = tlsgen.new_key("rsa", fresh=True)
    key = leaf.key_pem()
    chain = leaf.pem
    if case == "mismatch":
        key = tlsgen.key_pem(other)
    elif case == "mismatch-chain":
        chain, key = tlsgen.chain_pem(leaf, ca), tlsgen.key_pem(other)
    elif case == "no-cert":
        chain = b""
    elif case == "der":
        chain = leaf.der
    elif case == "no-key":
        key = leaf.pem
    elif case == "two-keys":
        key = key + key
    elif case == "bad-key":
        lines = key.splitlines()
        key = b"\n".join(lines[:3] + lines[5:]) + b"\n"
    elif case == "bad-cert":
        lines = chain.splitlines()
        chain = b"\n".join(lines[:2] + [b"AAAA"] + lines[3:]) + b"\n"
    elif case == "small-rsa":
        small = tlsgen.issue(ca, ["www.example.com"], bits=1024)
        chain, key = small.pem, small.key_pem()
    elif case == "ed25519":
        odd = tlsgen.issue(ca, ["www.example.com"], key_type="ed25519")
        chain, key = odd.pem, odd.key_pem()
    with pytest.raises(TlsError) as caught:
        parse_certificate(chain, None if case == "missing-key" else key)
    assert str(caught.value) == message
    assert caught.value.__cause__ is None and caught.value.__context__ is None


def test_client_usage(ca: tlsgen.Issued) -> None:
    client = tlsgen.issue(ca, [], common_name="lb client", client=True)
    cert, warnings = parse(client)
    assert "lacks serverAuth" in warnings[0]
    cert, warnings = parse_certificate(client.pem, client.key_pem(), usage="client")
    assert warnings == [] and cert.hostnames == ()


# -- no key material anywhere ----------------------------------------------------------------------


def _fragments(pem: bytes) -> list[str]:
    """Every PEM line of the key, every 12-character run of its base64 body and of
    the raw key's base64 in other alignments, and every 8-byte run of it in hex."""
    lines = [line.decode() for line in pem.splitlines() if line and not line.startswith(b"-----")]
    body = "".join(lines)
    raw = base64.b64decode(body)
    runs = {body[i:i + 12] for i in range(0, len(body) - 12, 4)}
    for shift in (1, 2):
        shifted = base64.b64encode(raw[shift:]).decode()
        runs |= {shifted[i:i + 12] for i in range(0, len(shifted) - 12, 4)}
    for i in range(len(raw) - 8):
        runs |= {raw[i:i + 8].hex(), raw[i:i + 8].hex().upper()}
    return lines + sorted(runs)


def test_no_key_material_in_messages(ca: tlsgen.Issued, tmp_path, caplog) -> None:
    leaf = tlsgen.issue(ca, ["www.example.com"], key_type="rsa", fresh=True)
    plain, encrypted = leaf.key_pem(), leaf.key_pem("pass phrase")
    wrong = tlsgen.issue(ca, ["www.example.com"], fresh=True)
    secrets = _fragments(plain) + _fragments(encrypted) + ["PRIVATE KEY", "pass phrase"]
    corrupt = b"\n".join(plain.splitlines()[:4] + plain.splitlines()[6:]) + b"\n"
    attempts = [
        (wrong.pem, plain, None),  # mismatch
        (leaf.pem, encrypted, None),  # no passphrase
        (leaf.pem, encrypted, "wrong"),  # wrong passphrase
        (leaf.pem, corrupt, None),  # corrupt key
        (plain, plain, None),  # the key given as the certificate
        (plain + leaf.pem, plain + plain, None),  # two keys
        (leaf.pem + plain, None, "pass phrase"),  # combined, passphrase not needed: fine
    ]
    texts: list[str] = []
    logger = logging.getLogger("lbcore.test")
    with caplog.at_level(logging.DEBUG):
        for chain, key, passphrase in attempts:
            try:
                cert, warnings = parse_certificate(chain, key, passphrase)
            except TlsError as exc:
                texts += [str(exc), repr(exc), *map(repr, exc.issues), "".join(traceback.format_exception(exc))]
                logger.exception("refused: %s", exc)
            else:
                texts += [repr(cert), str(cert), *warnings]
                logger.info("loaded %r", cert)
        # And through the Spec path: files, passphrases, the listener-level error.
        cert_path, key_path = tlsgen.write_pair(tmp_path, "leaf", leaf, passphrase="pass phrase")
        copy_path, _ = tlsgen.write_pair(tmp_path, "copy", leaf)
        listener = _listener([TlsCertificate(cert_path, key_path, default=True, passphrase="not it"),
                              TlsCertificate(copy_path, str(tmp_path / "missing.key"))])
        with pytest.raises(TlsError) as caught:
            load_listener_certificates(listener)
        texts += [str(caught.value), "".join(traceback.format_exception(caught.value))]
        logger.error("revision refused", exc_info=caught.value)
        texts += [repr(listener), repr(listener.tls)]
    texts.append(caplog.text)
    assert len(texts) > 20
    for text in texts:
        for secret in secrets:
            assert secret not in text, f"key material {secret[:20]!r}... in {text[:200]!r}"


# -- a listener's certificates --------------------------------------------------------------------


def _listener(certs: list[TlsCertificate], name: str = "web-tls") -> Listener:
    return Listener(name, Address("127.0.0.1", 8443), protocol="https", default_pool="www", tls=TlsSettings(tuple(certs)))


def test_load_listener_certificates_reports_every_bad_one(ca: tlsgen.Issued, tmp_path) -> None:
    good = tlsgen.issue(ca, ["www.example.com"])
    expired = tlsgen.issue(ca, ["old.example.com"], not_before=NOW - dt.timedelta(days=90), not_after=NOW - dt.timedelta(days=1))
    soon = tlsgen.issue(ca, ["soon.example.com"], key_type="ecdsa", not_after=NOW + dt.timedelta(days=5))
    other_key = tlsgen.new_key("rsa", fresh=True)
    tlsgen.write_pair(tmp_path / "certs", "www", good)
    tlsgen.write_pair(tmp_path / "certs", "old", expired)
    tlsgen.write_pair(tmp_path / "certs", "soon", soon)
    (tmp_path / "certs" / "wrong.key").write_bytes(tlsgen.key_pem(other_key))
    listener = _listener([
        TlsCertificate("certs/www.pem", "certs/www.key", default=True),
        TlsCertificate("certs/soon.pem", "certs/wrong.key"),
        TlsCertificate("certs/old.pem", "certs/old.key"),
        TlsCertificate("certs/nothere.pem", "certs/www.key"),
    ])
    with pytest.raises(TlsError) as caught:
        load_listener_certificates(listener, tmp_path)
    lines = str(caught.value).splitlines()
    assert lines[0] == "listeners[web-tls].tls.certificates[1]: key does not match certificate"
    assert lines[1].startswith("listeners[web-tls].tls.certificates[2]: certificate expired on ")
    assert lines[2] == (f"listeners[web-tls].tls.certificates[3]: cannot read certificate file "
                        f"{tmp_path}/certs/nothere.pem: No such file or directory")
    assert len(lines) == 3
    fixed = _listener([
        TlsCertificate("certs/www.pem", "certs/www.key", default=True),
        TlsCertificate(str(tmp_path / "certs/soon.pem"), str(tmp_path / "certs/soon.key")),  # absolute paths
    ])
    store, warnings = load_listener_certificates(fixed, tmp_path)
    assert isinstance(store, CertStore) and store.default.hostnames == ("www.example.com",)
    assert [str(w) for w in warnings] == [
        f"listeners[web-tls].tls.certificates[1]: certificate expires in 4 days ({store.certificates[1].not_after:%Y-%m-%d %H:%M} UTC)"
    ]
    assert store.explain("soon.example.com") == (
        "listeners[web-tls].tls.certificates[1] 'CN=soon.example.com': exact name soon.example.com")


def test_key_in_cert_file_and_passphrase_from_spec(ca: tlsgen.Issued, tmp_path) -> None:
    leaf = tlsgen.issue(ca, ["www.example.com"], key_type="ecdsa")
    cert_path, _ = tlsgen.write_pair(tmp_path, "all", leaf, combined=True, passphrase="pw")
    store, warnings = load_listener_certificates(_listener([TlsCertificate(cert_path, passphrase="pw")]))
    assert store.default.key_type == "ecdsa" and warnings == []


def test_shadowed_names_warn(ca: tlsgen.Issued) -> None:
    first, _ = parse(tlsgen.issue(ca, ["www.example.com", "a.example.com"]))
    second, _ = parse(tlsgen.issue(ca, ["www.example.com"], slot=1))
    store, warnings = build_cert_store([first, second], 0)
    assert warnings == [TlsIssue("certificates[1]", "host name www.example.com is also on certificates[0], which is used for it")]
    assert store.sni.select("www.example.com") is first


def test_load_certificate_files_reads_both(ca: tlsgen.Issued, tmp_path) -> None:
    leaf = tlsgen.issue(ca, ["www.example.com"])
    cert_path, key_path = tlsgen.write_pair(tmp_path, "w", leaf)
    cert, _ = load_certificate_files(cert_path, key_path)
    assert cert.hostnames == ("www.example.com",)
    (tmp_path / "big.pem").write_bytes(b"x" * (1 << 20 + 1))
    with pytest.raises(TlsError, match="is larger than"):
        load_certificate_files(str(tmp_path / "big.pem"), key_path)
