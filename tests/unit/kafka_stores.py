"""Certificates and Java stores made in process for the consumerProperties tests (cryptography, pyjks)."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

import jks
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class Pki:
    ca: x509.Certificate
    cert: x509.Certificate  # the client's, signed by ca
    key: ec.EllipticCurvePrivateKey

    def ca_pem(self) -> str:
        return self.ca.public_bytes(serialization.Encoding.PEM).decode()

    def cert_pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()

    def key_pem(self, password: str | None = None) -> str:
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(password.encode())
            if password
            else serialization.NoEncryption()
        )
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        ).decode()

    def jks_truststore(self, password: str) -> bytes:
        der = self.ca.public_bytes(serialization.Encoding.DER)
        entry = jks.TrustedCertEntry.new("ca", der)
        return bytes(jks.KeyStore.new("jks", [entry]).saves(password))

    def jks_keystore(self, store_password: str, key_password: str | None = None) -> bytes:
        pkcs8 = self.key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        chain = [c.public_bytes(serialization.Encoding.DER) for c in (self.cert, self.ca)]
        entry = jks.PrivateKeyEntry.new("client", chain, pkcs8, "pkcs8")
        entry.encrypt(key_password or store_password)
        return bytes(jks.KeyStore.new("jks", [entry]).saves(store_password))

    def pkcs12_keystore(self, password: str) -> bytes:
        return pkcs12.serialize_key_and_certificates(
            b"client",
            self.key,
            self.cert,
            [self.ca],
            serialization.BestAvailableEncryption(password.encode()),
        )

    def pkcs12_truststore(self, password: str) -> bytes:
        return pkcs12.serialize_java_truststore(
            [pkcs12.PKCS12Certificate(self.ca, b"ca")],
            serialization.BestAvailableEncryption(password.encode()),
        )


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_pki() -> Pki:
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("test-ca"))
        .issuer_name(_name("test-ca"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("client"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(ca_key, hashes.SHA256())
    )
    return Pki(ca, cert, key)
