"""esms-zns-callbacks: Zalo ZNS delivery statuses from eSMS, under its limits, as status events.

The code lives in the repository's top-level folders (tasks/, workers/, ...); this package
names them for installation, so nothing generic lands in site-packages.
"""
