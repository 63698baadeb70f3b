"""Bridges between the log and the outside world, starting with MQTT gateways
(paho-mqtt) to Kafka. See docs/architecture.md for what lands here next.
"""
