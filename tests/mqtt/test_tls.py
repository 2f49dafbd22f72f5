"""The optional ssl_context: the same broker behind TLS, with paho verifying the server certificate."""

import datetime
import ipaddress
import ssl
from functools import partial

import paho.mqtt.client as mqtt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from appliance.config import HostPort
from appliance.mqtt.broker import Broker
from appliance.transport.mqtt_server import serve_mqtt

from .conftest import Paho


def self_signed(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "server.pem", tmp_path / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


async def test_mqtt_over_tls(nursery, tmp_path):
    cert_path, key_path = self_signed(tmp_path)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert_path, key_path)
    broker = Broker()
    bound = await nursery.start(partial(serve_mqtt, broker, HostPort("127.0.0.1", 0), ssl_context=ctx))
    clients = []
    try:
        for cid in ("sub", "pub"):
            c = Paho(bound.port, cid, mqtt.MQTTv5)
            c.client.tls_set(ca_certs=str(cert_path))
            clients.append(await c.connect())
        sub, pub = clients
        await sub.subscribe("secure/#", 1)
        await pub.publish("secure/x", b"over tls", 1)
        (m,) = await sub.receive(1)
        assert m.payload == b"over tls"
    finally:
        for c in clients:
            await c.disconnect()
