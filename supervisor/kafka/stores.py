"""Java trust and key stores (JKS, PKCS12, PEM) read into the PEM text librdkafka takes.

Where a store comes from: a spec's ``ssl.truststore.location`` / ``ssl.keystore.location`` names a
path on the Druid machine it was written for. Here such a path is read only inside the one
directory the process's settings name for Kafka stores (``MIDDLEMANAGER_KAFKA_STORES_DIR`` on a
worker, ``OVERLORD_KAFKA_STORES_DIR`` in the Overlord): a relative location is taken inside it, an
absolute one must lie inside it (after symbolic links are followed). A store can also come inline:
Kafka's own PEM properties (``ssl.truststore.certificates``, ``ssl.keystore.key`` with
``ssl.keystore.certificate.chain``, type PEM) or our extension ``ssl.truststore.base64`` /
``ssl.keystore.base64`` (the store file's bytes). Anything else is refused, naming the property.

A store is read by its content, as Java's own ``JKS`` KeyStore reads PKCS12 files too (JDK 9+):
JKS and JCEKS by their magic number (pyjks), PKCS12 otherwise (cryptography); PEM as text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import pkcs12

from supervisor.kafka.properties import PropertyProblem, StoreSpec

MAX_STORE_BYTES = 1 << 20
_JKS_MAGIC = (b"\xfe\xed\xfe\xed", b"\xce\xce\xce\xce")
_KEY_BLOCK = re.compile(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S)


@dataclass(frozen=True)
class TrustMaterial:
    ca_pem: str


@dataclass(frozen=True)
class KeyMaterial:
    certificate_pem: str  # the client certificate, then the rest of its chain
    key_pem: str  # PKCS#8, unencrypted


def store_path(spec: StoreSpec, stores_dir: Path | None, setting: str) -> Path:
    """The file a store location names, inside ``stores_dir`` only."""
    assert spec.location is not None
    if stores_dir is None:
        raise PropertyProblem(
            (spec.property,),
            f"store files are read only from the directory {setting} names, and it is not set here; "
            "put the store there, or give it inline (see the docs)",
        )
    root = stores_dir.resolve()
    given = Path(spec.location)
    candidate = given if given.is_absolute() else root / given
    resolved = candidate.resolve()
    if not resolved.is_relative_to(root):
        raise PropertyProblem(
            (spec.property,), f"must name a file inside the Kafka stores directory {root} ({setting})"
        )
    if not resolved.is_file():
        raise PropertyProblem(
            (spec.property,), f"no such file in the Kafka stores directory {root} ({setting})"
        )
    return resolved


def _read(spec: StoreSpec, stores_dir: Path | None, setting: str) -> bytes:
    if spec.data is not None:
        data = spec.data
    else:
        path = store_path(spec, stores_dir, setting)
        if path.stat().st_size > MAX_STORE_BYTES:
            raise PropertyProblem((spec.property,), f"the store is larger than {MAX_STORE_BYTES} bytes")
        data = path.read_bytes()
    if not data:
        raise PropertyProblem((spec.property,), "the store is empty")
    return data


def _pem_certs(certs: Sequence[x509.Certificate]) -> str:
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certs)


def _pem_key(key: PrivateKeyTypes) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _is_jks(data: bytes) -> bool:
    return data[:4] in _JKS_MAGIC


def _jks(data: bytes, spec: StoreSpec) -> object:
    import jks  # pyjks

    try:
        return jks.KeyStore.loads(data, spec.password, try_decrypt_keys=True)
    except jks.util.KeystoreSignatureException:
        raise PropertyProblem(
            (spec.property,), "the JKS store's integrity check failed: wrong password?"
        ) from None
    except Exception as e:  # pyjks raises many kinds on a malformed file
        raise PropertyProblem((spec.property,), f"is not a readable JKS store ({type(e).__name__})") from None


def _pkcs12(data: bytes, spec: StoreSpec) -> pkcs12.PKCS12KeyAndCertificates:
    password = spec.password.encode() if spec.password else None
    try:
        return pkcs12.load_pkcs12(data, password)
    except ValueError:
        raise PropertyProblem(
            (spec.property,), "is not a readable PKCS12 store, or the password is wrong"
        ) from None


def _pem_parts(text: bytes, spec: StoreSpec) -> tuple[list[x509.Certificate], PrivateKeyTypes | None]:
    certs: list[x509.Certificate] = []
    if b"-----BEGIN CERTIFICATE-----" in text:
        try:
            certs = x509.load_pem_x509_certificates(text)
        except ValueError:
            raise PropertyProblem((spec.property,), "holds a certificate that is not valid PEM") from None
    key = None
    block = _KEY_BLOCK.search(text)
    if block is not None:
        password = spec.key_password.encode() if spec.key_password else None
        try:
            key = serialization.load_pem_private_key(block.group(0), password)
        except (ValueError, TypeError):
            raise PropertyProblem(
                (spec.property,),
                "holds a private key that cannot be read (not PEM, or wrong ssl.key.password)",
            ) from None
    return certs, key


def load_truststore(spec: StoreSpec, stores_dir: Path | None, setting: str) -> TrustMaterial:
    data = _read(spec, stores_dir, setting)
    if spec.store_type == "PEM" and not _is_jks(data):
        certs, _ = _pem_parts(data, spec)
    elif _is_jks(data):
        store = _jks(data, spec)
        certs = [x509.load_der_x509_certificate(e.cert) for e in store.certs.values()]  # type: ignore[attr-defined]
    else:
        loaded = _pkcs12(data, spec)
        certs = [c.certificate for c in loaded.additional_certs]
        if loaded.cert is not None:
            certs.insert(0, loaded.cert.certificate)
    if not certs:
        raise PropertyProblem((spec.property,), "the trust store holds no certificate")
    return TrustMaterial(_pem_certs(certs))


def load_keystore(spec: StoreSpec, stores_dir: Path | None, setting: str) -> KeyMaterial:
    if spec.certificate_chain is not None:  # Kafka's inline PEM key store
        assert spec.data is not None
        _, key = _pem_parts(spec.data, spec)
        chain, _ = _pem_parts(
            spec.certificate_chain.encode(), StoreSpec("ssl.keystore.certificate.chain", "PEM")
        )
        if key is None:
            raise PropertyProblem((spec.property,), "holds no private key")
        if not chain:
            raise PropertyProblem(("ssl.keystore.certificate.chain",), "holds no certificate")
        return KeyMaterial(_pem_certs(chain), _pem_key(key))
    data = _read(spec, stores_dir, setting)
    if spec.store_type == "PEM" and not _is_jks(data):
        chain, key = _pem_parts(data, spec)
    elif _is_jks(data):
        chain, key = _jks_key(_jks(data, spec), spec)
    else:
        loaded = _pkcs12(data, spec)
        key = loaded.key
        chain = ([loaded.cert.certificate] if loaded.cert is not None else []) + [
            c.certificate for c in loaded.additional_certs
        ]
    if key is None:
        raise PropertyProblem((spec.property,), "the key store holds no private key")
    if not chain:
        raise PropertyProblem((spec.property,), "the key store holds no certificate for its private key")
    return KeyMaterial(_pem_certs(chain), _pem_key(key))


def _jks_key(store: object, spec: StoreSpec) -> tuple[list[x509.Certificate], PrivateKeyTypes]:
    entries = list(store.private_keys.values())  # type: ignore[attr-defined]
    if len(entries) != 1:
        raise PropertyProblem(
            (spec.property,),
            f"the key store must hold exactly one private key entry, it holds {len(entries)}",
        )
    entry = entries[0]
    if not entry.is_decrypted():
        try:
            entry.decrypt(spec.key_password or spec.password or "")
        except Exception:
            raise PropertyProblem(
                (spec.property,), "the private key cannot be decrypted: wrong ssl.key.password?"
            ) from None
    key = serialization.load_der_private_key(entry.pkey_pkcs8, None)
    chain = [x509.load_der_x509_certificate(der) for _, der in entry.cert_chain]
    return chain, key
