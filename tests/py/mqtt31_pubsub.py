#!/usr/bin/env python3
"""An MQTT 3.1 client (paho-mqtt, protocol MQIsdp level 3) subscribes and publishes through moat.

Driven by tests/mqtt31.rs: usage mqtt31_pubsub.py HOST PORT CAFILE USER PASSWORD.
Exits 0 when the subscriber received the message it published (QoS 1, then QoS 2), non-zero with
a reason on stderr otherwise. Every wait is bounded.
"""
import sys
import threading

import paho.mqtt.client as mqtt

WAIT = 10.0


def fail(msg):
    print(f"mqtt31_pubsub: {msg}", file=sys.stderr)
    sys.exit(1)


def client(client_id, cafile, user, password):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv31)
    c.tls_set(ca_certs=cafile)
    c.username_pw_set(user, password)
    return c


def main():
    host, port, cafile, user, password = sys.argv[1:6]
    port = int(port)
    connected = threading.Event()
    subscribed = threading.Event()
    received = []
    got = threading.Event()
    codes = {}

    sub = client("py31-sub", cafile, user, password)

    def on_connect(c, userdata, flags, reason, props):
        codes["sub"] = reason
        connected.set()

    def on_subscribe(c, userdata, mid, reasons, props):
        codes["suback"] = reasons
        subscribed.set()

    def on_message(c, userdata, msg):
        # rumqttd delivers at the subscription's QoS rather than min(publish, subscription): the
        # QoS is the broker's business, the content is what this test checks.
        received.append((msg.topic, msg.payload))
        if len(received) == 2:
            got.set()

    sub.on_connect = on_connect
    sub.on_subscribe = on_subscribe
    sub.on_message = on_message
    sub.connect(host, port, keepalive=30)
    sub.loop_start()
    if not connected.wait(WAIT):
        fail("subscriber: no CONNACK")
    if codes["sub"] != 0:
        fail(f"subscriber refused: {codes['sub']}")
    sub.subscribe("py31/#", qos=2)
    if not subscribed.wait(WAIT):
        fail("no SUBACK")

    pub = client("py31-pub", cafile, user, password)
    pub_connected = threading.Event()
    pub.on_connect = lambda c, u, f, r, p: pub_connected.set()
    pub.connect(host, port, keepalive=30)
    pub.loop_start()
    if not pub_connected.wait(WAIT):
        fail("publisher: no CONNACK")
    for qos, payload in ((1, b"hello 3.1 qos1"), (2, b"hello 3.1 qos2")):
        info = pub.publish("py31/hello", payload, qos=qos)
        info.wait_for_publish(WAIT)
        if not info.is_published():
            fail(f"QoS {qos} publish not acknowledged")
    if not got.wait(WAIT):
        fail(f"subscriber received {received!r}")
    pub.disconnect()
    sub.disconnect()
    pub.loop_stop()
    sub.loop_stop()
    expected = [("py31/hello", b"hello 3.1 qos1"), ("py31/hello", b"hello 3.1 qos2")]
    if sorted(received) != sorted(expected):
        fail(f"received {received!r}")
    print("mqtt31_pubsub: ok")


if __name__ == "__main__":
    main()
