"""The event log: schemas, Python event types, Confluent wire format, registry,
publishing and reading.

Everything that happens in QI Stream is an immutable Avro event on Kafka; this
package is how events get onto the log and back off it.
"""
