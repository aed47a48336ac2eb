"""Domain events: signals with typed payloads, the isolating bus, handlers and the outbox."""
