"""Telling the lab when a run goes wrong: the alert rules, the alert thread that evaluates them
beside the service and keeps the alert history, and the notifications sent through Apprise."""
