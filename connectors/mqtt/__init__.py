"""MQTT to Kafka bridge: IoT gateways publish readings over MQTT, the bridge turns them into events.

``mapping``  the config file (topic filters, payload formats, field sources) and its validation;
``filters``  MQTT topic filters with ``{field}`` captures;
``payload``  JSON objects and SenML (RFC 8428) packs into readings;
``convert``  one MQTT message into encoded records or a dead letter;
``bridge``   the service: paho client, manual acks after Kafka acks, batching, backpressure;
``metrics``  its counters; ``gateway`` a simulated gateway for demos, tests and benchmarks.
See docs/bridge.md.
"""
