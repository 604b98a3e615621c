"""Online anomaly detectors for the golden signals; nothing here knows about Kafka."""
