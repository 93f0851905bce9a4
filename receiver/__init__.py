"""The push receiver: eSMS's CallbackUrl pushes in, the same status events out."""
