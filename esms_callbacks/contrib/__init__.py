"""Integrations with frameworks, each an optional extra: `django` (pip install
'esms-zns-callbacks[django]'). Nothing here is imported by the workers or the producers."""
