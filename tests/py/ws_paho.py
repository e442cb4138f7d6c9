"""paho-mqtt over WSS against moat, driven by tests/ws_clients.rs.

    python3 ws_paho.py pubsub  PORT CA_FILE USER PASSWORD  -> prints "received TOPIC: PAYLOAD"
    python3 ws_paho.py refused PORT CA_FILE USER PASSWORD  -> prints "refused CODE"

Exits non-zero on anything else; every wait is bounded.
"""

import sys
import threading

import paho.mqtt.client as mqtt

mode, port, ca_file, user, password = sys.argv[1:6]
result = {}
finished = threading.Event()


def on_connect(client, userdata, flags, reason_code, properties):
    if reason_code.is_failure:
        result["line"] = f"refused {reason_code.value}"
        result["ok"] = mode == "refused"
        finished.set()
        return
    if mode != "pubsub":
        result["line"], result["ok"] = "connected, expected a refusal", False
        finished.set()
        return
    client.subscribe("paho/echo", qos=1)


def on_subscribe(client, userdata, mid, reason_codes, properties):
    client.publish("paho/echo", "hello from paho", qos=1)


def on_message(client, userdata, message):
    result["line"] = f"received {message.topic}: {message.payload.decode()}"
    result["ok"] = True
    finished.set()


client = mqtt.Client(
    mqtt.CallbackAPIVersion.VERSION2,
    client_id=f"paho-{mode}",
    transport="websockets",
    protocol=mqtt.MQTTv311,
)
client.ws_set_options(path="/mqtt")
client.tls_set(ca_certs=ca_file)
client.username_pw_set(user, password)
client.on_connect = on_connect
client.on_subscribe = on_subscribe
client.on_message = on_message
client.connect("localhost", int(port), keepalive=30)
client.loop_start()
if not finished.wait(15):
    result["line"], result["ok"] = "timeout", False
client.loop_stop()
client.disconnect()
print(result["line"])
sys.exit(0 if result["ok"] else 1)
