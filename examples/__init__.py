"""Runnable examples: a Django app, a Flask app, a producer by task name, an event consumer."""
