"""Alerts: the pure rules (which conditions hold, when an alert starts, reminds and is resolved,
what each message says, which deliveries are still owed) and the Apprise adapter that sends
them. The sensors that run them live in `defs/alerts/`."""
