"""Entry point and wiring: settings, the command line, and assembling the bot's parts."""
