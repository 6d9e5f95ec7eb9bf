"""Channel-neutral conversations: the engine, the screen model and the flows with their texts."""
