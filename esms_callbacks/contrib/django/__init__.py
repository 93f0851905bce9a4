"""Message statuses in a Django app: INSTALLED_APPS += ["esms_callbacks.contrib.django"].

    models.MessageStatus    the latest (furthest) state of each message, one row per
                            (account, ref_id); in the admin
    signals.status_changed  sent once per new event_id, after its row is committed
    applying.apply_event    how one event changes the table (the command calls it)
    python manage.py esms_consume   reads the status events into the table

See docs/django.md ("In your Django app").
"""
