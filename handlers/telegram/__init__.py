"""The Telegram channel (aiogram 3): polling or webhook, routers, rendering."""
