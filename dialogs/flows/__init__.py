"""One module per conversation; the user-facing Russian texts live here."""
