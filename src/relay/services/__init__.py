"""Business operations. Each owns its transaction, emits domain events and knows nothing of HTTP."""
