"""Background work: scheduled jobs, the broadcaster and its senders."""
