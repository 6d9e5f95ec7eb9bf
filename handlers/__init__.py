"""Messenger-facing handlers (Telegram, VK, console)."""
