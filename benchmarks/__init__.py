"""The protocol every model shares: data, splits, metrics, latency, training loop, runner,
configs, records and reports."""
