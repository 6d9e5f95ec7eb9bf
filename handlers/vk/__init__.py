"""VK adapter: vk-api session, long poll and message delivery."""
