"""Secrets: AES-GCM sealing and the key file; private keys and passphrases encrypted at rest,
never returned by the service, never in a log line, a repr, an error or a diff."""

from __future__ import annotations

import base64
import logging
import os
import re
import stat

import pytest

from lbcore.control.errors import ControlError, Invalid
from lbcore.control.model import TlsCertificate
from lbcore.control.secrets import SecretError, Secrets
from tests import tlsgen
from tests.unit.test_control_service import build_site, make_world

PASSPHRASE = "correct horse battery staple 7f3a"


# -- sealing ---------------------------------------------------------------------------------------------

def test_seal_and_open():
    secrets = Secrets.generate()
    sealed = secrets.seal(b"key material", "t.c:1")
    assert sealed.startswith("v1:") and "key material" not in sealed
    assert secrets.open(sealed, "t.c:1") == b"key material"
    assert secrets.seal(b"key material", "t.c:1") != sealed  # a fresh nonce each time
    with pytest.raises(SecretError, match="does not decrypt"):
        secrets.open(sealed, "t.c:2")  # copied to another row
    prefix, key_id, body = sealed.split(":")
    tampered = base64.b64decode(body)
    tampered = tampered[:-1] + bytes([tampered[-1] ^ 1])
    with pytest.raises(SecretError, match="does not decrypt"):
        secrets.open(f"{prefix}:{key_id}:{base64.b64encode(tampered).decode()}", "t.c:1")
    with pytest.raises(SecretError, match="a key this key file does not hold"):
        Secrets.generate().open(sealed, "t.c:1")
    with pytest.raises(SecretError, match="not a sealed value"):
        secrets.open("plain text", "t.c:1")


def test_the_key_file(tmp_path):
    path = tmp_path / "etc" / "control.key"
    created = Secrets.load(path, create=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    sealed = created.seal("x", "c")
    assert Secrets.load(path).open_text(sealed, "c") == "x"  # the same key read back
    assert str(path) in repr(created) and path.read_text().strip() not in repr(created)
    # Rotation: a new key on top encrypts; the old one still decrypts.
    old_line = path.read_text()
    path.write_text(base64.b64encode(os.urandom(32)).decode() + "\n" + old_line)
    rotated = Secrets.load(path)
    assert rotated.open_text(sealed, "c") == "x"
    assert rotated.seal("y", "c").split(":")[1] != sealed.split(":")[1]
    # Refused: readable by others, not base64, the wrong length, empty, missing.
    os.chmod(path, 0o644)
    with pytest.raises(SecretError, match="readable by others"):
        Secrets.load(path)
    bad = tmp_path / "bad.key"
    for content, message in (("!!!\n", "not base64"), (base64.b64encode(b"short").decode(), "not a 32-byte key"),
                             ("# only a comment\n", "holds no key")):
        bad.write_text(content)
        os.chmod(bad, 0o600)
        with pytest.raises(SecretError, match=message):
            Secrets.load(bad)
    with pytest.raises(SecretError, match="cannot read"):
        Secrets.load(tmp_path / "missing.key")


# -- at rest and on the way out ----------------------------------------------------------------------------

@pytest.fixture
def world(tmp_path):
    w = make_world(tmp_path)
    yield w
    w.store.close()


@pytest.fixture(scope="module")
def material():
    ca = tlsgen.make_ca()
    leaf = tlsgen.issue(ca, ["www.example.com"], fresh=True)
    plain = leaf.key_pem().decode()
    encrypted = leaf.key_pem(PASSPHRASE).decode()
    return {"cert": leaf.pem.decode(), "key": plain, "encrypted": encrypted,
            "fragments": _fragments(plain) + _fragments(encrypted)}


def _fragments(pem: str) -> list[str]:
    """Base64 lines of a key (any one of them appearing somewhere is a leak)."""
    return [line for line in pem.splitlines() if line and not line.startswith("-----") and len(line) > 20]


def leaks(text: str, material: dict) -> list[str]:
    found = [marker for marker in ("PRIVATE KEY", PASSPHRASE) if marker in text]
    found += [fragment for fragment in material["fragments"] if fragment in text]
    return found


def add_certificates(world, material):
    ids = build_site(world)
    svc, who = world.service, world.alice
    listener = svc.create(who, "listener", {"instance_id": ids["instance"], "port": 8443, "protocol": "HTTPS"}).obj
    plain = svc.create(who, "tls_certificate", {"listener_id": listener["id"], "certificate": material["cert"],
                                                "private_key": material["key"]})
    protected = svc.create(who, "tls_certificate", {"listener_id": listener["id"], "certificate": material["cert"],
                                                    "private_key": material["encrypted"], "passphrase": PASSPHRASE})
    svc.create(who, "acl", {"listener_id": listener["id"], "pool_id": ids["pool"]})
    return ids, listener, plain, protected


def test_keys_and_passphrases_are_encrypted_in_the_database_file(world, material):
    add_certificates(world, material)
    world.store.close()  # checkpoint the WAL into the file
    data = b""
    for name in os.listdir(world.path):
        if name.startswith("control.db"):
            data += (world.path / name).read_bytes()
    assert b"BEGIN CERTIFICATE" in data  # the public chain is stored as it is
    text = data.decode("latin-1")
    assert leaks(text, material) == []
    assert not re.search(r"-----BEGIN [A-Z ]*PRIVATE KEY", text)


def test_secrets_are_never_returned(world, material):
    ids, listener, plain, protected = add_certificates(world, material)
    svc, who = world.service, world.alice
    results = [plain.obj, protected.obj, svc.get(who, "tls_certificate", plain.obj["id"])[0],
               svc.update(who, "tls_certificate", protected.obj["id"], {"name": "renamed"}).obj,
               svc.create(who, "tls_certificate", {"listener_id": listener["id"], "certificate": material["cert"],
                                                   "private_key": material["key"]}, dry_run=True).obj]
    results += svc.list(who, "tls_certificate")[0]
    for obj in results:
        assert "private_key" not in obj and "passphrase" not in obj
        assert obj["has_private_key"] is True
        assert leaks(repr(obj), material) == []
    assert protected.obj["has_passphrase"] is True and plain.obj["has_passphrase"] is False
    tree = svc.status_tree(who, ids["cluster"])
    assert leaks(repr(tree), material) == []
    with world.store.unit_of_work(readonly=True) as uow:
        row = uow.get(TlsCertificate, protected.obj["id"])
        assert leaks(repr(row), material) == [] and row.private_key.startswith("v1:")
        assert world.secrets.open_text(row.passphrase, f"tls_certificates.passphrase:{row.id}") == PASSPHRASE


def test_secrets_never_reach_logs_errors_or_diffs(world, material, caplog):
    caplog.set_level(logging.DEBUG)
    logging.getLogger("sqlalchemy.engine").setLevel(logging.DEBUG)
    try:
        ids, listener, plain, protected = add_certificates(world, material)
        svc, who = world.service, world.alice
        texts = [repr(plain), repr(protected), str(plain.diffs), str(protected.diffs), repr(world.secrets)]
        # Failures along the way: a node that refuses, a wrong passphrase, a mismatched key.
        world.applier.fail["127.0.0.1:9440"] = "refused"
        failed = svc.update(who, "tls_certificate", plain.obj["id"], {"private_key": material["key"]})
        texts += [repr(failed), str(failed.applied)]
        other = tlsgen.issue(tlsgen.make_ca(), ["other.example.com"], fresh=True)
        for data in ({"private_key": material["encrypted"], "passphrase": PASSPHRASE + "x"},
                     {"private_key": other.key_pem().decode()},
                     {"private_key": "-----BEGIN PRIVATE KEY-----\n" + material["fragments"][0] + "\n"}):
            with pytest.raises(ControlError) as caught:
                svc.update(who, "tls_certificate", protected.obj["id"], data)
            assert isinstance(caught.value, Invalid)
            texts += [str(caught.value), repr(caught.value), repr(caught.value.to_dict())]
        dry = svc.update(who, "tls_certificate", protected.obj["id"], {"private_key": material["encrypted"],
                                                                      "passphrase": PASSPHRASE}, dry_run=True)
        texts.append(str(dry.diffs))
        for call in world.applier.calls:
            texts.append(repr(call["spec"]) + str(call["spec"].to_dict()))
        texts += [record.getMessage() for record in caplog.records]
        texts += [repr(record.args) for record in caplog.records]
    finally:
        logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)
    assert any("sqlalchemy" in record.name for record in caplog.records)  # statements were logged
    for text in texts:
        assert leaks(text, material) == [], text[:200]
    # The engines do get the key, as a file: that is the one way out.
    files = world.applier.calls[-1]["files"]
    assert any(content.startswith(b"-----BEGIN PRIVATE KEY-----") for content in files.values())
